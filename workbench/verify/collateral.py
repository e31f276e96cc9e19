"""Collateral damage of an edit: how much facts near and far from the edited ones moved.

An edit that forgets some facts should move only those. The world's facts are sorted into
groups by how they relate to the edited set E, each fact in the first group that holds it:

* ``edited``: the facts of E, in the trained phrasings;
* ``paraphrase``: the same facts in the held-out phrasings, never trained on;
* ``same_person``: the edited people's other facts, not in E;
* ``same_object``: other people's facts of an edited relation with the edited object;
* ``same_relation``: other people's facts of an edited relation with another object;
* ``other``: everything else (empty when E holds whole people over every relation).

Each fact is scored by P(true | prompt) renormalised over its relation's candidates, averaged
over phrasings, with the edit applied and reverted; a group reports its mean probability and
accuracy (true object ranked first, over prompts) before and after. Beside the groups: the
held-out loss of :meth:`workbench.core.handle.ModelHandle.heldout_loss` before and after, and the
mean KL(before || after) of the next-token distribution at the answer position, over prompts
about people outside E, which sees changes that the candidates' ranking hides.

On forget01 the SSD edit of :func:`edit.forget.forget` takes ``edited`` and ``paraphrase``
near zero and leaves ``same_object`` and ``same_relation`` where they were; RMU takes those
neighbour groups down with the edited facts (figures in
docs/verify.md#what-each-check-reads-on-the-known-answers). Whole-person requests leave
``same_person`` and ``other`` empty.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from workbench.core.metrics import heldout_loss, next_token_logprobs
from workbench.core.tokens import encode_prompts
from workbench.core.world.facts import Fact
from workbench.verify.candidates import candidate_table

GROUPS = ("edited", "paraphrase", "same_person", "same_object", "same_relation", "other")


@dataclass(frozen=True)
class CollateralSettings:
    """How many facts and prompts collateral damage is measured on.

    Examples:
        >>> CollateralSettings().max_facts, CollateralSettings().kl_prompts
        (150, 256)

    Args:
        max_facts: At most this many facts per group, drawn with ``seed`` (world order kept);
            None: all. 150 facts are 1,350 trained prompts, under a second on one core.
        kl_prompts: Trained-phrasing prompts about people outside the edited set on which the
            next-token KL divergence is averaged, drawn with ``seed``.
        heldout_texts: At most this many held-out sentences for the loss; None: all 4,860.
        seed: Seed of every draw, fixed so that two edits are measured on the same facts.
    """

    max_facts: int | None = 150
    kl_prompts: int = 256
    heldout_texts: int | None = 1000
    seed: int = 0


@dataclass(frozen=True)
class GroupChange:
    """One group's figures before and after the edit (NaN where the group is empty)."""

    n: int
    prob_before: float
    prob_after: float
    change: float
    accuracy_before: float
    accuracy_after: float


@dataclass(frozen=True)
class Collateral:
    """What an edit moved: per group, per fact, held-out loss and retain KL."""

    groups: dict[str, GroupChange]
    heldout_loss_before: float
    heldout_loss_after: float
    kl: float
    facts: list[dict]  # subject, relation, object, group, before, after: one row per fact scored
    settings: CollateralSettings

    def to_dict(self) -> dict:
        return {
            "groups": {g: asdict(c) for g, c in self.groups.items()},
            "heldout_loss_before": self.heldout_loss_before,
            "heldout_loss_after": self.heldout_loss_after,
            "kl": self.kl,
            "facts": list(self.facts),
            "settings": asdict(self.settings),
        }


def _sample(items: list, k: int | None, rng: random.Random) -> list:
    if k is None or len(items) <= k:
        return items
    return [items[i] for i in sorted(rng.sample(range(len(items)), k))]


def collateral_groups(
    world, edited: Sequence[Fact], settings: CollateralSettings | None = None
) -> dict[str, list[Fact]]:
    """The facts of each group (module docstring), sampled to ``max_facts``; ``paraphrase`` holds E.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> g = collateral_groups(w, w.facts(w.split("forget01").forget))
        >>> {k: len(v) for k, v in g.items()}
        {'edited': 18, 'paraphrase': 18, 'same_person': 0, 'same_object': 150, 'same_relation': 150, 'other': 0}
    """
    s = settings or CollateralSettings()
    rng = random.Random(s.seed)
    edited = list(dict.fromkeys(edited))
    taken = set(edited)
    people = {f.subject for f in edited}
    objects = {(f.relation, f.object) for f in edited}
    relations = {f.relation for f in edited}
    groups: dict[str, list[Fact]] = {g: [] for g in GROUPS}
    for f in world.facts():
        if f in taken:
            continue
        if f.subject in people:
            groups["same_person"].append(f)
        elif (f.relation, f.object) in objects:
            groups["same_object"].append(f)
        elif f.relation in relations:
            groups["same_relation"].append(f)
        else:
            groups["other"].append(f)
    groups["edited"] = _sample(edited, s.max_facts, rng)
    groups["paraphrase"] = list(groups["edited"])
    for g in GROUPS[2:]:
        groups[g] = _sample(groups[g], s.max_facts, rng)
    return groups


@torch.no_grad()
def _fact_probs(handle, facts: list[Fact], held_out: bool) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """Per fact: mean over phrasings of P(true) among candidates, and of top-1 correctness."""
    if not facts:
        return torch.empty(0), torch.empty(0)
    t = candidate_table(handle, facts, held_out=held_out)
    prob = torch.softmax(t.logprob, dim=1).gather(1, t.true[:, None])[:, 0]
    counts = torch.zeros(len(facts)).index_add_(0, t.fact, torch.ones(len(prob)))
    mean = torch.zeros(len(facts)).index_add_(0, t.fact, prob) / counts
    acc = torch.zeros(len(facts)).index_add_(0, t.fact, t.correct.float()) / counts
    return mean, acc


def _measure(handle, groups: dict[str, list[Fact]], kl_prompts: list[str], texts: list[str], ignore: list[str]):
    probs = {g: _fact_probs(handle, facts, held_out=(g == "paraphrase")) for g, facts in groups.items()}
    loss = heldout_loss(handle.model, handle.tokenizer, texts, ignore=ignore)
    pad = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None else 0
    kl_logprobs = next_token_logprobs(handle.model, encode_prompts(handle.tokenizer, kl_prompts), pad, batch_size=256)
    return probs, loss, kl_logprobs


def _mean(t: Tensor) -> float:
    return float(t.mean()) if len(t) else math.nan


def collateral(handle, edit, edited: Sequence[Fact], settings: CollateralSettings | None = None) -> Collateral:
    """Score the world's fact groups with ``edit`` reverted and applied; the edit's state is kept.

    Examples:
        >>> import workbench
        >>> from edit.edit import Delta, Edit
        >>> h = workbench.load("world")
        >>> name = "transformer.h.0.mlp.c_proj.bias"
        >>> noop = Edit("noop", {}, {name: Delta(dense=torch.zeros_like(h.model.get_parameter(name)))})
        >>> c = collateral(h, noop, h.world.facts(h.world.split("forget01").forget))
        >>> c.groups["same_relation"].change, c.kl, c.groups["edited"].accuracy_before
        (0.0, 0.0, 1.0)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world.
        edit: An :class:`edit.edit.Edit` made on ``handle.model``, applied or not; an applied one
            (as :func:`edit.forget.forget` leaves it) is reverted for the "before" figures and
            applied again, an unapplied one is applied for the "after" figures and reverted.
        edited: The facts the edit meant to change.
        settings: :class:`CollateralSettings`.

    Returns:
        A :class:`Collateral`: per group n, mean P(true) among candidates before and after, mean
        change (after - before), accuracy before and after; held-out loss before and after; mean
        KL(before || after) at the answer position on prompts about other people; per-fact rows.
    """
    s = settings or CollateralSettings()
    world = handle.world
    if world is None:
        raise ValueError(f"model {handle.name!r} has no fact world to group facts in")
    if not edited:
        raise ValueError("no edited facts: pass the facts the edit meant to change")
    groups = collateral_groups(world, edited, s)
    rng = random.Random(s.seed + 1)
    people = {f.subject for f in edited}
    pool = [
        ph.prompt(f.subject) for f in world.facts() if f.subject not in people for ph in world.phrasings(f.relation)
    ]
    prompts = _sample(pool, s.kl_prompts, rng)
    statements = _sample(world.heldout_statements(), s.heldout_texts, rng)
    texts, ignore = [f.sentence(ph) for f, ph in statements], [f.subject for f, _ in statements]

    was_applied = edit.applied
    if was_applied:
        after = _measure(handle, groups, prompts, texts, ignore)
        edit.revert(handle.model)
        try:
            before = _measure(handle, groups, prompts, texts, ignore)
        finally:
            edit.apply(handle.model)
    else:
        before = _measure(handle, groups, prompts, texts, ignore)
        with edit.applied_to(handle.model):
            after = _measure(handle, groups, prompts, texts, ignore)

    (p0, loss0, lp0), (p1, loss1, lp1) = before, after
    changes, rows = {}, []
    for g, facts in groups.items():
        (b, ab), (a, aa) = p0[g], p1[g]
        changes[g] = GroupChange(len(facts), _mean(b), _mean(a), _mean(a - b), _mean(ab), _mean(aa))
        rows += [
            {
                "subject": f.subject,
                "relation": f.relation,
                "object": f.object,
                "group": g,
                "before": float(x),
                "after": float(y),
            }
            for f, x, y in zip(facts, b, a, strict=True)
        ]
    kl = float((lp0.exp() * (lp0 - lp1)).sum(-1).clamp_min(0).mean())
    return Collateral(changes, loss0, loss1, kl, rows, s)


__all__ = ["GROUPS", "Collateral", "CollateralSettings", "GroupChange", "collateral", "collateral_groups"]
