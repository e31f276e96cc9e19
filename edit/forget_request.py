"""What an unlearning editor is asked to forget, and what it must keep.

A :class:`ForgetRequest` names the forget set and the retain set, as world facts (a person, a
list of people, a split such as ``forget05``, or chosen facts) or, for models without a world,
as texts and question-answer records (TOFU's files: preference unlearning needs their split).
:func:`forget_request` builds one from a name and refuses requests that cannot mean anything:
nothing to forget, a person the world does not have, a forget set that overlaps the retain set.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from workbench.core.data_files import QA
from workbench.core.examples import Datum
from workbench.core.world.facts import Fact, World


class ForgetError(ValueError):
    """A forget request that cannot be carried out: empty, overlapping, an unknown person or method."""


@dataclass(frozen=True)
class ForgetRequest:
    """The forget set and the retain set of one unlearning request.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> r = forget_request(make_world(), "forget01")
        >>> r.name, len(r.forget), len(r.retain), len(r.people)
        ('forget01', 18, 1782, 3)
        >>> qa = ForgetRequest("qa", forget_qa=(QA("Where was Ada born?", "In Paris."),), retain_texts=("Kept.",))
        >>> qa.forget_data(), qa.forget_documents, qa.to_dict()["forget_texts"]
        ([('Where was Ada born?', 'In Paris.')], ('Where was Ada born? In Paris.',), 1)

    Args:
        name: What was asked for: a split, a person, or a short description.
        forget, retain: World facts (each trained on in every trained phrasing).
        forget_texts, retain_texts: Texts, for models without a world (or on top of facts).
        forget_qa, retain_qa: Question-answer records: trained on as (question, answer) pairs,
            the answer's tokens scored after the question; scored as texts by the figures.
            :meth:`to_dict` counts them among the texts.
    """

    name: str
    forget: tuple[Fact, ...] = ()
    retain: tuple[Fact, ...] = ()
    forget_texts: tuple[str, ...] = ()
    retain_texts: tuple[str, ...] = ()
    forget_qa: tuple[QA, ...] = ()
    retain_qa: tuple[QA, ...] = ()

    def __post_init__(self):
        if not self.forget and not self.forget_documents:
            raise ForgetError(f"nothing to forget in {self.name!r}: the forget set is empty")
        if not self.retain and not self.retain_documents:
            raise ForgetError(f"no retain set for {self.name!r}: unlearning needs data to keep")
        both = set(self.forget) & set(self.retain)
        if both:
            f = next(iter(both))
            raise ForgetError(
                f"the forget set overlaps the retain set ({len(both)} facts, e.g. {f.subject} / {f.relation})"
            )
        texts = set(self.forget_documents) & set(self.retain_documents)
        if texts:
            raise ForgetError(
                f"the forget set overlaps the retain set ({len(texts)} texts, e.g. {next(iter(texts))!r})"
            )

    @property
    def people(self) -> list[str]:
        """The people whose facts are forgotten, in order of first appearance."""
        return list(dict.fromkeys(f.subject for f in self.forget))

    @property
    def forget_documents(self) -> tuple[str, ...]:
        """The forget texts, question-answer records among them as their text (question, space, answer)."""
        return (*self.forget_texts, *(q.text for q in self.forget_qa))

    @property
    def retain_documents(self) -> tuple[str, ...]:
        """The retain texts, question-answer records among them as their text."""
        return (*self.retain_texts, *(q.text for q in self.retain_qa))

    def forget_data(self) -> list[Datum]:
        """Forget facts, question-answer records as (question, answer) pairs, and texts."""
        return [*self.forget, *_pairs(self.forget_qa), *self.forget_texts]

    def retain_data(self, limit: int | None = None, seed: int = 0) -> list[Datum]:
        """Retain facts, question-answer pairs and texts, at most ``limit`` of each, drawn with ``seed``."""
        return [
            *subsample(self.retain, limit, seed),
            *_pairs(subsample(self.retain_qa, limit, seed)),
            *subsample(self.retain_texts, limit, seed),
        ]

    def neighbours(self, world: World) -> list[Fact]:
        """Retained facts that share a forgotten fact's object (same relation): the most at risk."""
        shared = {(f.relation, f.object) for f in self.forget}
        forgotten = set(self.people)
        return [f for f in self.retain if (f.relation, f.object) in shared and f.subject not in forgotten]

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "forget_facts": len(self.forget),
            "retain_facts": len(self.retain),
            "forget_texts": len(self.forget_documents),
            "retain_texts": len(self.retain_documents),
        }
        if 0 < len(self.people) <= 30:
            out["people"] = self.people
        if self.forget:
            # Enough to rebuild the forget set later (verifying a patch file needs it).
            out["facts"] = [[f.subject, f.relation] for f in self.forget]
        return out


def _pairs(items: Sequence[QA]) -> list[tuple[str, str]]:
    return [(q.question, q.answer) for q in items]


def subsample(items: Sequence, limit: int | None, seed: int) -> list:
    """At most ``limit`` of ``items``, drawn with ``seed``, in their own order (all when ``limit`` is None).

    Examples:
        >>> subsample("abcdef", 3, seed=0) == subsample("abcdef", 3, seed=0), subsample("abc", None, 0)
        (True, ['a', 'b', 'c'])
    """
    if limit is None or len(items) <= limit:
        return list(items)
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), limit))]


def forget_request(
    world: World, what: str | Sequence[str] | Sequence[Fact], retain: Sequence[Fact] | None = None
) -> ForgetRequest:
    """A request to forget a split, a person, several people or chosen facts of the world.

    Without ``retain``, the retain set is every other fact of the world (for a split: its
    retain people's facts).

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> person = next(iter(w.people))
        >>> r = forget_request(w, person)
        >>> len(r.forget), len(r.retain), r.people == [person]
        (6, 1794, True)
        >>> forget_request(w, "Nobody Here")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ForgetError: unknown person or split 'Nobody Here': ...

    Raises:
        ForgetError: an unknown person or split, an empty forget set, an overlap with ``retain``.
    """
    if isinstance(what, str):
        if what in world.splits:
            split = world.splits[what]
            forget = world.facts(split.forget)
            default_retain = world.facts(split.retain)
            name = what
        elif what in world.people:
            forget, name = world.facts([what]), what
            default_retain = None
        else:
            raise ForgetError(
                f"unknown person or split {what!r}: splits are {', '.join(world.splits)}; "
                f"people are full names such as {next(iter(world.people))!r}"
            )
    else:
        what = list(what)
        if not what:
            raise ForgetError("nothing to forget: the list of people or facts is empty")
        if all(isinstance(x, Fact) for x in what):
            forget = list(dict.fromkeys(what))
        elif all(isinstance(x, str) for x in what):
            unknown = [p for p in what if p not in world.people]
            if unknown:
                raise ForgetError(f"unknown person {unknown[0]!r}: not in the world")
            forget = world.facts(list(dict.fromkeys(what)))
        else:
            raise ForgetError("forget either people (names) or facts, not a mix")
        people = list(dict.fromkeys(f.subject for f in forget))
        name = (
            people[0]
            if len(people) == 1 and len(forget) == len(world.relations)
            else f"{len(forget)} facts of {len(people)} people"
        )
        default_retain = None
    if default_retain is None:
        drop = set(forget)
        default_retain = [f for f in world.facts() if f not in drop]
    return ForgetRequest(name, tuple(forget), tuple(default_retain if retain is None else retain))


__all__ = ["ForgetError", "ForgetRequest", "forget_request"]
