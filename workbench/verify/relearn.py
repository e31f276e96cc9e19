"""The relearning attack: fine-tune on half of a person's facts, test the other half.

A model that still holds a forgotten person somewhere in its weights can be nudged into
saying it again with a few steps on related data (Lynch et al., 2024; Deeb & Roger, 2024).
In the world a person's six attributes are drawn independently, so training on three of
them teaches nothing about the other three: whatever accuracy the unseen relations gain
beyond what the retain model (which never saw the person) gains under the same attack is
knowledge the edit left in place.

Per person, a copy of the model (never the caller's) takes ``steps`` full-batch Adam steps on
the person's facts of ``known`` relations drawn with ``seed``, in every trained phrasing, and is
scored on the remaining relations: accuracy among candidates over their trained phrasings.

On forget01 neither an SSD nor an RMU edit gives the unseen half back to this attack
(figures in docs/verify.md#what-each-check-reads-on-the-known-answers).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from workbench.core.examples import encode_examples, pad_examples, scored_logprobs
from workbench.core.handle import ModelHandle
from workbench.core.metrics import score_facts
from workbench.core.world.facts import Fact
from workbench.verify.candidates import CandidateTable, candidate_table, concat_tables


@dataclass(frozen=True)
class RelearnSettings:
    """How hard the relearning attack trains.

    Examples:
        >>> RelearnSettings().steps, RelearnSettings().lr
        (20, 0.0003)

    Args:
        steps: Full-batch Adam steps per person; 20 take about 0.3 s on one core.
        lr: Adam's learning rate. On forget01, 3e-4 teaches the known half fully (also to the
            retain model) while the default model keeps the unseen half; 1e-3 makes the default
            model lose part of it, 1e-4 does not teach the known half.
        known: How many of the person's relations are trained on; the rest are scored.
        max_people: At most this many people, drawn with ``seed`` (order kept); None: all.
        seed: Seed of the people drawn and of each person's known relations.
    """

    steps: int = 20
    lr: float = 3e-4
    known: int = 3
    max_people: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class Relearned:
    """Accuracy on each person's unseen relations before and after relearning the known ones.

    ``table`` holds, after relearning, every candidate's log-probability for each of the given
    facts that was unseen (indexed as the facts given), the raw reading a report ranks objects in.
    """

    people: list[dict]  # person, known, unseen, before, after, known_before, known_after
    before: float  # mean over people
    after: float
    settings: RelearnSettings
    table: CandidateTable | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "people": list(self.people),
            "before": self.before,
            "after": self.after,
            "settings": asdict(self.settings),
        }


def relearn_attack(
    handle,
    facts: Sequence[Fact],
    settings: RelearnSettings | None = None,
    unseen: Mapping[str, Sequence[str]] | None = None,
) -> Relearned:
    """Relearn half of each person's facts on a copy of the model; score the other half.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> r = relearn_attack(h, h.world.facts(h.world.split("forget01").forget))
        >>> r.before, r.after, len(r.people), r.people[0]["known"]
        (1.0, 1.0, 3, ['birthplace', 'school', 'language'])

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world; an applied edit is part of
            the model that is copied. ``handle.model`` is never changed.
        facts: World facts; the attack runs on every person they name (all six of each person's
            relations are used, whichever of them ``facts`` holds).
        settings: :class:`RelearnSettings`.
        unseen: Per person, relations that must be among the unseen ones (a rewritten fact: does
            training on the person's other facts bring the old object back?); the known ones are
            drawn from the rest.

    Returns:
        A :class:`Relearned`: per person the known and unseen relations and accuracy on each
        before and after, and the mean unseen accuracy over people before and after.
    """
    s = settings or RelearnSettings()
    world = handle.world
    if world is None:
        raise ValueError(f"model {handle.name!r} has no fact world to relearn from")
    facts = list(facts)
    people = list(dict.fromkeys(f.subject for f in facts))
    if not people:
        raise ValueError("no facts: pass the forgotten facts whose people to attack")
    rng = random.Random(s.seed)
    if s.max_people is not None and len(people) > s.max_people:
        people = [people[i] for i in sorted(rng.sample(range(len(people)), s.max_people))]
    relations = list(world.relations)
    if not 0 < s.known < len(relations):
        raise ValueError(f"known must be between 1 and {len(relations) - 1}, not {s.known}")
    pad = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None else 0
    original = {k: v.detach().clone() for k, v in handle.model.state_dict().items()}
    work = copy.deepcopy(handle.model).eval()  # eval: no dropout, so the attack is deterministic

    def accuracy(facts_: list[Fact]) -> float:
        return score_facts(work, handle.tokenizer, world, facts_).accuracy

    index = {f: i for i, f in enumerate(facts)}
    work_handle = ModelHandle(
        model=work, tokenizer=handle.tokenizer, name=f"{handle.name} (relearning)", source=handle.source, world=world
    )
    rows, parts = [], []
    for person in people:
        must = set((unseen or {}).get(person, ()))
        known = sorted(rng.sample([r for r in relations if r not in must], s.known), key=relations.index)
        known_facts = world.facts([person], known)
        unseen_facts = world.facts([person], [r for r in relations if r not in known])
        work.load_state_dict(original)
        row = {
            "person": person,
            "known": known,
            "unseen": [f.relation for f in unseen_facts],
            "before": accuracy(unseen_facts),
            "known_before": accuracy(known_facts),
        }
        ids, mask, scored = (t.to(handle.device) for t in pad_examples(encode_examples(handle, known_facts), pad))
        opt = torch.optim.Adam(work.parameters(), lr=s.lr)
        with torch.enable_grad():
            for _ in range(s.steps):
                logits = work(input_ids=ids, attention_mask=mask).logits
                loss = -(scored_logprobs(logits, ids, scored) / scored.sum(1)).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            row |= {"after": accuracy(unseen_facts), "known_after": accuracy(known_facts)}
            asked = [f for f in unseen_facts if f in index]
            if asked:
                t = candidate_table(work_handle, asked, held_out=False)
                parts.append(replace(t, fact=torch.tensor([index[asked[int(i)]] for i in t.fact])))
        rows.append(row)
    table = concat_tables(parts) if parts else None
    mean_before, mean_after = (sum(r[k] for r in rows) / len(rows) for k in ("before", "after"))
    return Relearned(rows, mean_before, mean_after, s, table)


__all__ = ["RelearnSettings", "Relearned", "relearn_attack"]
