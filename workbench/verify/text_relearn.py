"""The relearning attack on question-answer pairs: fine-tune on half of the forget set, ask the other half.

A model that still holds the forget set somewhere in its weights can be nudged into saying it
again by a few steps on related data (Lynch et al., 2024; Deeb & Roger, 2024). Without a fact
world there is no telling which items are related, so the forget items are split in two with
the seed: a copy of the model (never the caller's) takes ``steps`` Adam steps on the answers of
one half (each answer scored after its question), and the other half is asked, greedy answers
and answer probability, as the plain check asks it.

What the unseen half gains is only evidence against the edit beside what a reference model,
which never saw the forget set, gains under the same attack on the same items:
:mod:`~workbench.verify.text_checks` tests the two counts against each other.

On the shipped forget05 files (90 items, 45 trained), the default world model still answers
every unseen item after the attack, the model trained without them 2 of 45 (as it does before);
the attack (a copy, 20 steps, the unseen half read) takes about 1 s on one CPU core.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workbench.core.data_files import QA
from workbench.core.examples import encode_examples, example_batches, scored_logprobs
from workbench.core.handle import ModelHandle
from workbench.verify.text_answers import AnswerReadings, answer_probability, read_answers


@dataclass(frozen=True)
class TextRelearnSettings:
    """How hard the relearning attack trains.

    Examples:
        >>> TextRelearnSettings().steps, TextRelearnSettings().lr, TextRelearnSettings(steps=0).runs
        (20, 0.0003, False)

    Args:
        steps: Adam steps on the trained half; 0 or None: no attack. The world path's 20 steps.
        lr: Adam's learning rate; the world path's 3e-4, which teaches the trained half to the
            reference model while the default world model keeps the unseen half.
        fraction: The share of the forget items trained on, drawn with the report's seed.
        batch_size: Items per step, drawn in a seeded shuffle; the trained half at most.
    """

    steps: int | None = 20
    lr: float = 3e-4
    fraction: float = 0.5
    batch_size: int = 16

    @property
    def runs(self) -> bool:
        """Whether the attack runs at all."""
        return bool(self.steps)


@dataclass(frozen=True)
class TextRelearned:
    """The unseen half's readings after relearning the trained half.

    Attributes:
        trained, asked: Indices of the forget items trained on and of those asked after.
        readings: :class:`~workbench.verify.text_answers.AnswerReadings` of the asked items, after.
        trained_probability: Answer probability of the trained items after: whether the attack took.
        seconds: Wall time of the attack.
    """

    trained: list[int]
    asked: list[int]
    readings: AnswerReadings
    trained_probability: list[float]
    seconds: float


def relearn_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """The indices trained on and those asked, drawn with ``seed``; at least one of each.

    Examples:
        >>> relearn_split(6, 0.5, 0)
        ([0, 3, 5], [1, 2, 4])
    """
    if n < 2:
        raise ValueError(f"relearning needs at least two forget items to split, not {n}")
    k = min(max(round(n * fraction), 1), n - 1)
    trained = sorted(random.Random(seed).sample(range(n), k))
    chosen = set(trained)
    return trained, [i for i in range(n) if i not in chosen]


def relearn_texts(
    handle,
    items: Sequence[QA],
    settings: TextRelearnSettings | None = None,
    seed: int = 0,
    max_new_tokens: int = 32,
    batch_size: int = 64,
) -> TextRelearned | None:
    """Relearn half of the forget items on a copy of the model; read the other half. None when off or too few.

    Examples:
        >>> import workbench
        >>> from workbench.core.data_files import read_qa
        >>> h = workbench.load("world")
        >>> items = read_qa("workbench/core/world/examples/tofu_forget05.json")[:8]
        >>> r = relearn_texts(h, items, TextRelearnSettings(steps=2))
        >>> r.asked, r.readings.recall
        ([1, 2, 4, 5], [1.0, 1.0, 1.0, 1.0])

    Args:
        handle: A :class:`~workbench.core.handle.ModelHandle`; an applied edit is part of the model
            that is copied. ``handle.model`` is never changed.
        items: The forget items, in the order every model state is asked them.
        settings: :class:`TextRelearnSettings`.
        seed: Seed of the split and of the batches, the same for every model state.
        max_new_tokens, batch_size: As :func:`~workbench.verify.text_answers.read_answers`.
    """
    s = settings or TextRelearnSettings()
    if not s.runs or len(items) < 2:
        return None
    t0 = time.perf_counter()
    trained, asked = relearn_split(len(items), s.fraction, seed)
    examples = encode_examples(handle, [(items[i].question, items[i].answer) for i in trained], what="relearning")
    pad = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None else 0
    work = copy.deepcopy(handle.model).eval()  # eval: no dropout, so the attack is deterministic
    work.requires_grad_(True)
    opt = torch.optim.Adam(work.parameters(), lr=s.lr)
    batches = example_batches(examples, min(s.batch_size, len(examples)), pad, seed, handle.device)
    with torch.enable_grad():
        for _ in range(int(s.steps or 0)):
            ids, mask, scored = next(batches)
            logits = work(input_ids=ids, attention_mask=mask).logits
            loss = -(scored_logprobs(logits, ids, scored) / scored.sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    del opt  # Adam's moments are twice the model: free them before reading
    work.requires_grad_(False)
    attacked = ModelHandle(
        model=work, tokenizer=handle.tokenizer, name=f"{handle.name} (relearned)", source=handle.source
    )
    readings = read_answers(attacked, [items[i] for i in asked], max_new_tokens, batch_size, ranking=False)
    trained_p = answer_probability(attacked, [items[i] for i in trained], batch_size).tolist()
    return TextRelearned(trained, asked, readings, trained_p, time.perf_counter() - t0)


__all__ = ["TextRelearnSettings", "TextRelearned", "relearn_split", "relearn_texts"]
