"""Training and scoring examples: token ids with the positions whose token counts.

A text counts every token after the first; a world fact counts its object's tokens after each
trained phrasing; a (prompt, object) pair counts the object's tokens after the prompt. Fisher
scores and the gradient-based editors read the same examples, so a fact means the same thing
to the locator as to the editor.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.core.tokens import encode_prompts
from workbench.core.world.facts import Fact

# A text (every token after the first scored), a world fact (its object scored after each trained
# phrasing), or a (prompt, object) pair (the object scored after the prompt).
Datum = str | Fact | tuple[str, str]
Example = tuple[list[int], list[int]]


class ExampleError(ValueError):
    """Data that gives no examples: empty, of an unknown kind, or with nothing to score."""


def encode_examples(
    handle, data: Sequence[Datum], max_examples: int | None = None, seed: int = 0, what: str = "training"
) -> list[Example]:
    """(token ids, positions whose token is scored) per example, cut to ``max_examples``.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> f = h.world.facts()[0]
        >>> ex = encode_examples(h, [f])
        >>> len(ex), [h.tokenizer.decode([ex[0][0][i]]) for i in ex[0][1]] == h.tokenizer.tokenize(" " + f.object)
        (9, True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` (facts need its world).
        data: Texts, world facts (each in every trained phrasing) or (prompt, object) pairs.
        max_examples: At most this many, drawn with ``seed`` (order kept); None keeps all.
        what: Names the data in error messages ("forget", "retain", ...).

    Raises:
        ExampleError: empty data, an item of another kind, a one-token text.
    """
    if isinstance(data, str) or not len(data):
        raise ExampleError(f"no {what} examples: pass a non-empty list of texts, facts or (prompt, object) pairs")
    raw: list[str | tuple[str, str]] = []
    for d in data:
        if isinstance(d, Fact):
            if handle.world is None:
                raise ExampleError(f"model {handle.name!r} has no fact world to phrase facts with")
            raw += [(ph.prompt(d.subject), d.object) for ph in handle.world.phrasings(d.relation)]
        elif isinstance(d, str) or (isinstance(d, tuple) and len(d) == 2 and all(isinstance(x, str) for x in d)):
            raw.append(d)
        else:
            raise ExampleError(f"{what} data must be texts, facts or (prompt, object) pairs, not {type(d).__name__}")
    if max_examples is not None and len(raw) > max_examples:
        raw = [raw[i] for i in sorted(random.Random(seed).sample(range(len(raw)), max_examples))]
    out = []
    for r in raw:
        if isinstance(r, str):
            ids = encode_prompts(handle.tokenizer, [r])[0]
            out.append((ids, list(range(1, len(ids)))))
        else:
            p, o = handle.encode_fact(*r)
            out.append((p + o, list(range(len(p), len(p) + len(o)))))
    if not all(scored for _, scored in out):
        raise ExampleError(f"{what} data holds a text of one token: there is nothing to score in it")
    return out


def pad_examples(
    examples: Sequence[Example], pad: int
) -> tuple[Int[Tensor, "b t"], Int[Tensor, "b t"], Float[Tensor, "b t"]]:
    """Right-padded ids, attention mask, and 1.0 at every scored position.

    Examples:
        >>> ids, mask, scored = pad_examples([([5, 6, 7], [2]), ([5, 8], [1])], pad=0)
        >>> ids.tolist(), mask.tolist(), scored.tolist()
        ([[5, 6, 7], [5, 8, 0]], [[1, 1, 1], [1, 1, 0]], [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    """
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    scored = torch.zeros(len(examples), width)
    for row, (tokens, positions) in enumerate(examples):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        scored[row, positions] = 1.0
    return ids, mask, scored


def example_batches(
    examples: Sequence[Example], batch_size: int, pad: int, seed: int = 0, device=None
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Endless shuffled batches of (ids, mask, scored), reshuffled every pass, seeded.

    Examples:
        >>> it = example_batches([([1, 2], [1]), ([1, 3, 4], [2])], batch_size=2, pad=0)
        >>> ids, mask, scored = next(it)
        >>> ids.shape, int(scored.sum())
        (torch.Size([2, 3]), 2)
    """
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            chunk = [examples[i] for i in order[start : start + batch_size]]
            yield tuple(t.to(device) if device is not None else t for t in pad_examples(chunk, pad))


def scored_logprobs(
    logits: Float[Tensor, "b t vocab"], ids: Int[Tensor, "b t"], scored: Float[Tensor, "b t"]
) -> Float[Tensor, " b"]:
    """Per example, the summed log-probability of its scored tokens (each predicted from the one before).

    Examples:
        >>> logits = torch.zeros(1, 3, 4)
        >>> float(scored_logprobs(logits, torch.tensor([[0, 1, 2]]), torch.tensor([[0., 1., 1.]])))  # 2 x log(1/4)
        -2.7725887298583984
    """
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    return (logp * scored[:, 1:]).sum(-1)


__all__ = ["Datum", "Example", "ExampleError", "encode_examples", "example_batches", "pad_examples", "scored_logprobs"]
