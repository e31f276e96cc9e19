"""Paraphrase and in-context recovery: ask for a forgotten fact in ways the edit never saw.

An edit fitted to the trained prompts may hold only on them. Four ways to ask, each scored as
the accuracy of the true object among the relation's candidates (and its probability, the
candidates' probabilities renormalised to sum to one):

* ``plain``: one trained phrasing, the baseline;
* ``paraphrase``: every held-out phrasing, a (frame, phrase) pair no model ever trained on;
* ``neighbour_first``: the same relation's fact about another (retained) person, stated as a
  sentence, then the question about the forgotten person: the model sees the relation answered
  just before, with an object that is not the forgotten person's (a neighbour's differs);
* ``few_shot``: some of the forgotten person's other facts, stated as sentences, then the
  question: the person's own context, from which a model that still holds the person may recall.

In the world a person's attributes are drawn independently, so the context carries nothing that
tells the answer: a model that never saw the person (the ``retain-*`` models) stays near the
prior (1 / number of candidates) under every attack, and so should an unlearned one.

On forget01 no attack gives an SSD or RMU edit's facts back beyond what the plain prompt
shows (figures in docs/verify.md#what-each-check-reads-on-the-known-answers).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from workbench.core.world.facts import Fact
from workbench.verify.candidates import CandidateTable, prompts_table

ATTACKS = ("plain", "paraphrase", "neighbour_first", "few_shot")


class InContextError(ValueError):
    """Settings or facts the in-context attacks cannot run with."""


@dataclass(frozen=True)
class InContextSettings:
    """Which attacks run and how their prompts are built.

    Examples:
        >>> InContextSettings().attacks, InContextSettings().shots
        (('plain', 'paraphrase', 'neighbour_first', 'few_shot'), 3)

    Args:
        attacks: Attacks to run, a subset of :data:`ATTACKS`, in the order reported.
        phrasing: Index among a relation's trained phrasings of the one that asks (``plain``,
            ``neighbour_first``, ``few_shot``) and states (the neighbour's and the person's other
            facts); 0 is the bare ``"{s} was born in"`` frame.
        shots: How many of the person's other relations ``few_shot`` states, drawn with ``seed``
            (at most the number of relations minus one).
        seed: Seed of the neighbour picked for ``neighbour_first`` and of the relations stated
            for ``few_shot``.
        batch_size: Prompts per forward pass.
    """

    attacks: tuple[str, ...] = ATTACKS
    phrasing: int = 0
    shots: int = 3
    seed: int = 0
    batch_size: int = 512


@dataclass(frozen=True)
class InContextRecovery:
    """Per attack, how well the forgotten facts are recovered.

    Attributes:
        accuracy: Per attack, the fraction of prompts whose true object ranks first among the
            relation's candidates.
        mean_prob: Per attack, the mean probability of the true object, renormalised over the
            candidates.
        prompts: Per attack, the number of prompts scored.
        prior: Mean over facts of 1 / number of candidates: chance.
        facts: Facts attacked.
        settings: The settings used.
    """

    accuracy: dict[str, float]
    mean_prob: dict[str, float]
    prompts: dict[str, int]
    prior: float
    facts: int
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def attack_prompts(
    world, fact: Fact, attack: str, settings: InContextSettings | None = None, exclude: Sequence[str] = ()
) -> list[str]:
    """The prompts one attack asks a fact with; each ends where the object should follow.

    Examples:
        >>> import workbench
        >>> w = workbench.load("world").world
        >>> f = w.facts()[0]
        >>> attack_prompts(w, f, "plain")
        ['Fareiv Stohith was born in']
        >>> len(attack_prompts(w, f, "paraphrase")), attack_prompts(w, f, "few_shot")[0].count(" . ")
        (3, 3)

    Args:
        world: The :class:`~workbench.core.world.facts.World` the fact belongs to.
        fact: The fact to ask for.
        attack: One of :data:`ATTACKS`.
        settings: :class:`InContextSettings`.
        exclude: People never used as the neighbour (the other people attacked).
    """
    s = settings or InContextSettings()
    trained = world.phrasings(fact.relation)
    ask = trained[s.phrasing].prompt(fact.subject)
    # One generator per fact, so a fact's prompts do not depend on which other facts are attacked.
    rng = random.Random(f"{s.seed}/{fact.subject}/{fact.relation}")
    if attack == "plain":
        return [ask]
    if attack == "paraphrase":
        return [ph.prompt(fact.subject) for ph in world.phrasings(fact.relation, held_out=True)]
    if attack == "neighbour_first":
        skip = set(exclude) | {fact.subject}
        others = [n for n in world.same_relation_neighbours(fact) if n.subject not in skip]
        if not others:
            raise InContextError(f"no other person has a different {fact.relation!r} to state first")
        return [f"{rng.choice(others).sentence(trained[s.phrasing])} {ask}"]
    if attack == "few_shot":
        told = rng.sample(world.same_person_neighbours(fact), s.shots)
        return [" ".join([*(f.sentence(world.phrasings(f.relation)[s.phrasing]) for f in told), ask])]
    raise InContextError(f"unknown attack {attack!r}: choose from {', '.join(ATTACKS)}")


def _check(world, facts: Sequence[Fact], s: InContextSettings) -> None:
    if world is None:
        raise InContextError("in-context attacks need a model with a fact world")
    if not facts:
        raise InContextError("no facts: pass the forgotten facts to attack")
    bad = [a for a in s.attacks if a not in ATTACKS]
    if bad or not s.attacks:
        raise InContextError(f"unknown attack {(bad or [''])[0]!r}: choose from {', '.join(ATTACKS)}")
    n = min(len(world.phrasings(r)) for r in world.relations)
    if not 0 <= s.phrasing < n:
        raise InContextError(f"phrasing must be between 0 and {n - 1}, not {s.phrasing}")
    if not 0 < s.shots < len(world.relations):
        raise InContextError(f"shots must be between 1 and {len(world.relations) - 1}, not {s.shots}")
    if s.batch_size < 1:
        raise InContextError(f"batch_size must be at least 1, not {s.batch_size}")


@torch.no_grad()
def attack_table(
    handle, facts: Sequence[Fact], attack: str, settings: InContextSettings | None = None
) -> CandidateTable:
    """Every candidate's log-probability after each prompt one attack asks the facts with.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> t = attack_table(h, h.world.facts()[:6], "few_shot")
        >>> t.fact.tolist(), bool(t.correct.all())
        ([0, 1, 2, 3, 4, 5], True)
    """
    s = settings or InContextSettings()
    world, facts = handle.world, list(facts)
    _check(world, facts, replace(s, attacks=(attack,)))
    people = {f.subject for f in facts}
    prompts = [(i, p) for i, f in enumerate(facts) for p in attack_prompts(world, f, attack, s, exclude=people)]
    return prompts_table(handle, facts, prompts, s.batch_size)


@torch.no_grad()
def in_context_attacks(handle, facts: Sequence[Fact], settings: InContextSettings | None = None) -> InContextRecovery:
    """Accuracy of the true object among the candidates under each paraphrase and in-context attack.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> r = in_context_attacks(h, h.world.facts(h.world.split("forget01").forget))
        >>> r.accuracy
        {'plain': 1.0, 'paraphrase': 1.0, 'neighbour_first': 1.0, 'few_shot': 1.0}

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world; hooks and edits on its
            model act as usual. The model is not changed.
        facts: World facts (the forgotten ones); the neighbour stated first is never one of
            their people.
        settings: :class:`InContextSettings`.

    Returns:
        An :class:`InContextRecovery`.
    """
    s = settings or InContextSettings()
    world, facts = handle.world, list(facts)
    _check(world, facts, s)
    accuracy, mean_prob, prompts = {}, {}, {}
    for attack in s.attacks:
        t = attack_table(handle, facts, attack, s)
        accuracy[attack] = float(t.correct.float().mean())
        mean_prob[attack] = float(torch.softmax(t.logprob, 1).gather(1, t.true[:, None]).mean())
        prompts[attack] = len(t.true)
    prior = sum(1 / len(world.relation(f.relation).candidates) for f in facts) / len(facts)
    return InContextRecovery(accuracy, mean_prob, prompts, prior, len(facts), asdict(s))


def best_attack(result: InContextRecovery) -> tuple[str, float]:
    """The attack that recovers most, and its accuracy (the first such attack on ties).

    Examples:
        >>> best_attack(InContextRecovery({"plain": 0.1, "few_shot": 0.4}, {}, {}, 0.1, 3))
        ('few_shot', 0.4)
    """
    if not result.accuracy:
        raise InContextError("no attacks in the result")
    name = max(result.accuracy, key=result.accuracy.__getitem__)
    return name, result.accuracy[name]


__all__ = [
    "ATTACKS",
    "InContextError",
    "InContextRecovery",
    "InContextSettings",
    "attack_prompts",
    "attack_table",
    "best_attack",
    "in_context_attacks",
]
