"""What an editor is asked to do: rewrite a fact to a new object, or erase it.

A :class:`Request` carries the prompt to edit and, for measuring and protecting, paraphrases
(prompts the editor never sees, for generalisation), neighbours (other subjects whose answers
must not move) and keep prompts (the subject's other facts, held close while optimising).
:func:`world_request` fills all of them from the fact world.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from workbench.core.tokens import EncodingError, encode_object, subject_span


class RequestError(ValueError):
    """A request that cannot be carried out: unknown person, same object, unencodable object."""


@dataclass(frozen=True)
class Request:
    """One edit: make ``prompt`` continue with ``new_object``, or (no new object) stop giving the true one.

    Examples:
        >>> r = Request("Ann Lee", "Ann Lee was born in", "Oslo", "Lima")
        >>> r.erase, Request("Ann Lee", "Ann Lee was born in", "Oslo").erase
        (False, True)

    Args:
        subject: The subject as it appears in the prompt.
        prompt: Text the object follows.
        true_object: What the model says now (the world's fact).
        new_object: The rewrite target; None to erase.
        relation: The relation's name, where known.
        paraphrases: Other prompts for the same fact, for measuring generalisation.
        neighbours: (prompt, object) pairs of other subjects that must keep their answers.
        keep: Prompts of the subject's other facts, whose predictions the editor holds close.
        candidates: The relation's possible objects, where the world has a closed set.
    """

    subject: str
    prompt: str
    true_object: str
    new_object: str | None = None
    relation: str | None = None
    paraphrases: tuple[str, ...] = ()
    neighbours: tuple[tuple[str, str], ...] = ()
    keep: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()

    @property
    def erase(self) -> bool:
        return self.new_object is None

    @property
    def target(self) -> str:
        """The object the edit trains on: the new one, or for an erase the true one (pushed down)."""
        return self.true_object if self.new_object is None else self.new_object

    def check(self, tokenizer) -> Request:
        """Raise :class:`RequestError` in one line if the request cannot be carried out.

        Examples:
            >>> import workbench
            >>> tok = workbench.load("world").tokenizer
            >>> f = workbench.load("world").world.facts()[0]
            >>> Request(f.subject, f.subject + " was born in", f.object, f.object).check(tok)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            edit.request.RequestError: the new object '...' is already the true object
        """
        if self.new_object is not None and self.new_object.strip() == self.true_object.strip():
            raise RequestError(f"the new object {self.new_object!r} is already the true object")
        try:
            subject_span(tokenizer, self.prompt, self.subject)
            for obj in {self.target, self.true_object}:
                encode_object(tokenizer, self.prompt, obj)
        except EncodingError as e:
            raise RequestError(str(e)) from None
        return self

    def to_dict(self) -> dict:
        """The fields as a dict (what an Edit's manifest records).

        Examples:
            >>> r = Request("Ann", "Ann was born in", "Oslo", "Lima", neighbours=(("Bo was born in", "Rome"),))
            >>> r.to_dict()["neighbours"]
            (('Bo was born in', 'Rome'),)
        """
        # The fields are strings and tuples of them, which need no copy; dataclasses.asdict's deep
        # copy took a third of a second for 1,000 requests.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Request:
        """The request :meth:`to_dict` gave, also after a trip through JSON (lists become tuples again).

        Examples:
            >>> import json
            >>> r = Request("Ann", "Ann was born in", "Oslo", "Lima", neighbours=(("Bo was born in", "Rome"),))
            >>> Request.from_dict(json.loads(json.dumps(r.to_dict()))) == r
            True

        Raises:
            TypeError: a field the request does not have, or a required one missing.
        """
        d = dict(d)
        for k in ("paraphrases", "keep", "candidates"):
            d[k] = tuple(d.get(k) or ())
        d["neighbours"] = tuple(tuple(n) for n in d.get("neighbours") or ())
        return cls(**d)


def world_request(
    world, person: str, relation: str, new_object: str | None = None, phrasing: int = 0, n_neighbours: int = 10
) -> Request:
    """A request about a fact of the world, with held-out paraphrases, neighbours and keep prompts.

    Examples:
        >>> import workbench
        >>> w = workbench.load("world").world
        >>> person = list(w.people)[0]
        >>> r = world_request(w, person, "pet", w.relation("pet").candidates[0])
        >>> len(r.paraphrases), len(r.neighbours), len(r.keep), r.relation
        (3, 10, 5, 'pet')

    Args:
        world: The fact :class:`~workbench.core.world.facts.World`.
        person, relation: The fact to edit.
        new_object: The rewrite target (any candidate but the true one); None to erase.
        phrasing: Which trained phrasing is the edit prompt.
        n_neighbours: How many other people with the same relation to protect (none of them
            has the true or the new object), drawn at random from the whole world, the same
            ones every time for a given fact and new object.

    Raises:
        RequestError: unknown person or relation, a new object outside the relation's candidates.
    """
    if person not in world.people:
        raise RequestError(f"unknown person {person!r}: not in the world")
    if relation not in world.relations:
        raise RequestError(f"unknown relation {relation!r}: choose from {', '.join(world.relations)}")
    rel = world.relation(relation)
    if new_object is not None and new_object not in rel.candidates:
        raise RequestError(f"{new_object!r} is not a {relation} of this world: choose from {', '.join(rel.candidates)}")
    fact = world.fact(person, relation)
    trained = world.phrasings(relation)
    if not 0 <= phrasing < len(trained):
        raise RequestError(f"phrasing {phrasing} out of range 0..{len(trained) - 1}")
    # Neighbours whose object is the new one could not tell "kept" from "overwritten".
    others = [f for f in world.same_relation_neighbours(fact) if f.object != new_object]
    # Drawn from everybody, one generator per fact: the first ones in world order would be the
    # same dozen people for every request, and a batch's neighbourhood score would measure them.
    others = random.Random(f"{world.seed}/{person}/{relation}").sample(others, min(n_neighbours, len(others)))
    neighbours = tuple((trained[phrasing].prompt(f.subject), f.object) for f in others)
    keep = tuple(world.phrasings(f.relation)[0].prompt(person) for f in world.same_person_neighbours(fact))
    return Request(
        person,
        trained[phrasing].prompt(person),
        fact.object,
        new_object,
        relation,
        tuple(p.prompt(person) for p in world.phrasings(relation, held_out=True)),
        neighbours,
        keep,
        rel.candidates,
    )


def random_rewrites(world, n: int, seed: int = 0) -> list[Request]:
    """``n`` rewrites of distinct random facts, each to a random other candidate: a batch to try editors on.

    The benchmarks' requests (the same ``seed`` gives the same ones).

    Examples:
        >>> import workbench
        >>> w = workbench.load("world").world
        >>> rs = random_rewrites(w, 3)
        >>> len(rs), len({(r.subject, r.relation) for r in rs}), all(r.new_object != r.true_object for r in rs)
        (3, 3, True)
    """
    facts = world.facts()
    if not 0 < n <= len(facts):
        raise RequestError(f"n={n}: the world has {len(facts)} facts")
    rng = random.Random(seed)
    out = []
    for f in rng.sample(facts, n):
        new = rng.choice([c for c in world.relation(f.relation).candidates if c != f.object])
        out.append(world_request(world, f.subject, f.relation, new))
    return out
