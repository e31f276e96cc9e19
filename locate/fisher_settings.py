"""Settings of the Fisher locator, and how many per-example gradients one chunk may hold.

Kept apart from :mod:`locate.fisher` (which imports them from here) so that module stays
about the computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

_CHOICES = {"granularity": ("element", "row", "tensor"), "score": ("ratio", "forget"), "params": ("blocks", "all")}
# Per-example gradients one vmapped chunk may hold when FisherSettings.batch_size is None: the
# world model (3.5 MB of float32 parameters) gets the full 32; a 124M model (0.5 GB) gets 1, which
# takes the plain backward pass per example, as fast on CPU as a vmapped chunk of 2 and without
# holding a whole gradient (docs/forget.md#memory-on-a-124m-model).
CHUNK_BYTES = 2**28
MAX_CHUNK = 32


class FisherError(ValueError):
    """Bad Fisher input: unknown person or split, empty data, settings out of range."""


@dataclass(frozen=True)
class FisherSettings:
    """Settings of a Fisher locator: what to score, and how much of it to keep.

    Examples:
        >>> FisherSettings().alpha, FisherSettings(top_fraction=0.05).granularity
        (10.0, 'element')
        >>> FisherSettings(top_fraction=1.5)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        FisherError: top_fraction must be in (0, 1] or None, got 1.5

    Args:
        batch_size: Examples per vmapped chunk of per-example gradients. A chunk holds one
            gradient the size of the scored parameters per example, so memory grows with it: 32
            on a 124M model is 16 GB. 1 takes one plain backward pass per example instead, which
            squares each tensor's gradient as it arrives and holds no whole gradient. None (the
            default) takes as many as fit in :data:`CHUNK_BYTES` (256 MiB) of gradients, at
            least 1 and at most 32 (see :func:`chunk_size`): 32 on the world model, 1 on GPT-2
            small. On CPU 16 to 64 run about equally fast (on the world model 32 runs about 2.5
            times faster than 1), and the chunk changes no figure beyond float rounding.
        max_examples: At most this many examples per set, drawn with ``seed``; None keeps all.
        top_fraction: Fraction of the candidates (elements, units or tensors, by ``granularity``)
            that the Location keeps, best first; None keeps all.
        granularity: "element" (a sparse element mask per tensor), "row" (units along
            :func:`~locate.location.unit_axis`: MLP neurons, output features) or "tensor".
        score: How candidates are ranked: "ratio" (forget / (retain + eps), the Selective
            Synaptic Dampening criterion) or "forget" (forget importance alone).
        alpha: Selective Synaptic Dampening's threshold: a parameter is selected where
            forget > alpha x retain (Foster et al. use 10).
        eps: Added to the retain Fisher in every ratio, so that parameters which hardly move
            either way do not rank first (on the world model the median element's Fisher is
            about 1e-12 to 1e-11, the largest about 1e-5).
        seed: Seed of the example draw when ``max_examples`` cuts a set.
        params: "blocks" (every parameter inside the transformer blocks: attention, MLP, norms)
            or "all" (also embeddings, final norm and an untied unembedding).
    """

    batch_size: int | None = None
    max_examples: int | None = None
    top_fraction: float | None = 0.01
    granularity: Literal["element", "row", "tensor"] = "element"
    score: Literal["ratio", "forget"] = "ratio"
    alpha: float = 10.0
    eps: float = 1e-12
    seed: int = 0
    params: Literal["blocks", "all"] = "blocks"

    def __post_init__(self):
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise FisherError(f"top_fraction must be in (0, 1] or None, got {self.top_fraction}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise FisherError(f"unknown {name} {getattr(self, name)!r}; expected one of {allowed}")
        if any(v is not None and v < 1 for v in (self.batch_size, self.max_examples)):
            raise FisherError("batch_size and max_examples must be >= 1")
        if self.alpha < 0 or not self.eps > 0:
            raise FisherError(f"alpha must be >= 0 and eps > 0, got alpha={self.alpha}, eps={self.eps}")


def chunk_size(params: Sequence[Tensor], batch_size: int | None = None, budget: int = CHUNK_BYTES) -> int:
    """Examples per chunk of per-example gradients: ``batch_size`` if given, else what fits in ``budget`` bytes.

    Examples:
        >>> import torch
        >>> sized = lambda n: [torch.empty(n, device="meta")]  # float32, no memory
        >>> chunk_size(sized(1000)), chunk_size(sized(20_000_000)), chunk_size(sized(124_000_000))
        (32, 3, 1)
        >>> chunk_size(sized(10**9), batch_size=32)  # an explicit size wins
        32
    """
    if batch_size is not None:
        return batch_size
    per_example = sum(p.numel() * p.element_size() for p in params)
    return max(1, min(MAX_CHUNK, budget // max(per_example, 1)))
