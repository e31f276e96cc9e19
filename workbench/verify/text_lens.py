"""Is a forget item's answer still readable from the hidden states? The logit lens on question-answer pairs.

An edit that only suppresses the output can leave the answer in the residual stream, where the
model's own final norm and unembedding, applied early (the logit lens, nostalgebraist, 2020),
still read it. Per forget item, the residual stream after each block at the question's last
token (where the answer's first token is predicted) goes through the final norm and the
unembedding, and the answer's first token is ranked among the whole vocabulary.

An item is *recovered* by the lens when its answer's first token is within the top ``top_k`` after
some block before the last (the last is the model's own output), and *hidden* when it is
recovered there though the output does not rank it within ``top_k``: an answer the model holds
but does not say. Blocks are read through the handle's site map
(:func:`~workbench.verify.probe.last_token_states`), so hooks an edit placed on the model act first.

On the shipped forget05 files, the default world model ranks the answer first after block 0, 1,
2 for 0.50, 0.63, 0.78 of the items; the model trained without them for 0.07 each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from workbench.core.data_files import QA
from workbench.core.sites import UnsupportedArchitecture
from workbench.core.tokens import encode_objects
from workbench.verify.probe import last_token_states


@dataclass(frozen=True)
class TextLensSettings:
    """How the logit lens reads the forget items.

    Examples:
        >>> TextLensSettings().top_k, TextLensSettings(enabled=False).enabled
        (1, False)

    Args:
        top_k: The answer's first token counts as read when it ranks within this many tokens.
        layers: Blocks to read after (negative counts from the end), the last excluded; None:
            every block but the last.
        enabled: Read the lens at all.
        batch_size: Prompts per forward pass.
    """

    top_k: int = 1
    layers: tuple[int, ...] | None = None
    enabled: bool = True
    batch_size: int = 64


@dataclass(frozen=True)
class LensReadings:
    """Per forget item, the rank (0 = first) of its answer's first token after each block read.

    Examples:
        >>> r = LensReadings((0, 1), [[0, 3], [9, 9]], [5, 0], 1)
        >>> r.recovered(), r.hidden(), r.by_layer()
        ([True, False], [True, False], [0.5, 0.0])

    Attributes:
        layers: The blocks read (the last excluded).
        ranks: Per item, per block of ``layers``, the rank among the whole vocabulary.
        final: Per item, the rank in the model's own output (after the last block).
        top_k: The rank below which the answer counts as read.
    """

    layers: tuple[int, ...]
    ranks: list[list[int]]
    final: list[int]
    top_k: int

    def recovered(self) -> list[bool]:
        """Per item, whether some block before the last reads its answer within ``top_k``."""
        return [min(r) < self.top_k for r in self.ranks]

    def hidden(self) -> list[bool]:
        """Per item, whether a block before the last reads its answer though the output does not."""
        return [hit and f >= self.top_k for hit, f in zip(self.recovered(), self.final, strict=True)]

    def by_layer(self) -> list[float]:
        """Per block read, the fraction of items whose answer it reads within ``top_k``."""
        return [sum(r[i] < self.top_k for r in self.ranks) / len(self.ranks) for i in range(len(self.layers))]


@torch.no_grad()
def lens_ranks(handle, items: Sequence[QA], settings: TextLensSettings | None = None) -> LensReadings | None:
    """The logit lens's rank of each item's answer after every block; None when off or nothing to read.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> r = lens_ranks(h, [QA("Tikrelm Robreir was born in", "Krigril")])
        >>> r.layers, r.final, r.recovered()
        ((0, 1, 2), [0], [True])

    Args:
        handle: A :class:`~workbench.core.handle.ModelHandle`, with any edit applied.
        items: Question-answer pairs; the answer's first token is ranked after the question.
        settings: :class:`TextLensSettings`.

    Returns:
        :class:`LensReadings`, or None when turned off, for a model of one block (nothing before
        the output to read), or one whose architecture has no site map.
    """
    s = settings or TextLensSettings()
    try:
        last = handle.n_layers - 1
    except UnsupportedArchitecture:
        return None  # no site map to find the blocks, the final norm and the unembedding by
    if not s.enabled or last < 1 or not items:
        return None
    layers = tuple(range(last)) if s.layers is None else tuple(sorted({int(x) % handle.n_layers for x in s.layers}))
    layers = tuple(x for x in layers if x != last)
    if not layers:
        return None
    questions = [i.question for i in items]
    first: Int[Tensor, " n"] = torch.tensor(
        [t[0] for t in encode_objects(handle.tokenizer, questions, [i.answer for i in items])]
    )
    states = last_token_states(handle, questions, (*layers, last), s.batch_size)  # [layers + 1, n, d_model]
    norm = handle.model.get_submodule(handle.sites.final_norm_path)
    unembed = handle.model.get_submodule(handle.sites.unembed_path)
    ranks = torch.empty(len(layers) + 1, len(items), dtype=torch.long)
    for start in range(0, len(items), s.batch_size):
        rows = slice(start, start + s.batch_size)
        target = first[rows]
        for i in range(len(layers) + 1):
            logits = unembed(norm(states[i, rows].to(handle.device, handle.dtype))).float().cpu()  # [b, vocab]
            ranks[i, rows] = (logits > logits.gather(1, target[:, None])).sum(1)
    return LensReadings(layers, ranks[:-1].T.tolist(), ranks[-1].tolist(), s.top_k)


__all__ = ["LensReadings", "TextLensSettings", "lens_ranks"]
