"""The k largest of many scores as a boolean mask, without sorting them.

A Fisher Location ranks every parameter element of a model: 124M doubles on GPT-2 small. A
stable descending sort of them holds a sorted copy and an int64 index per score (2 GB more); the
mask here costs one boolean per score. The k-th largest score is found by bisection on the bits
of the (non-negative) doubles, whose integer order is their numeric order, one counting pass per
step; ties at it go to the lowest indices, so the mask is exactly the first k of the stable sort.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

# Tie scan window: the indices of equal scores are listed this many at a time.
_WINDOW = 2**20


def top_k_mask(scores: Float[Tensor, " n"], k: int) -> tuple[Bool[Tensor, " n"], float]:
    """The ``k`` largest scores as a mask, ties to the lower index, and the k-th largest score.

    Examples:
        >>> s = torch.tensor([0.5, 2.0, 1.0, 2.0, 1.0], dtype=torch.float64)
        >>> keep, threshold = top_k_mask(s, 3)
        >>> keep.tolist(), threshold
        ([False, True, True, True, False], 1.0)
        >>> s = torch.rand(10_000, dtype=torch.float64).round(decimals=2)
        >>> order = torch.sort(s, descending=True, stable=True).indices[:700]
        >>> bool((top_k_mask(s, 700)[0].nonzero().flatten() == order.sort().values).all())
        True

    Args:
        scores: One score per candidate. Non-negative float64 scores take the bisection; any
            other (negative, NaN, another dtype) the plain stable sort, with the same result.
        k: How many to keep, 1 to ``len(scores)``.
    """
    n = len(scores)
    if not 1 <= k <= n:
        raise ValueError(f"top_k_mask: k must be in 1..{n}, got {k}")
    if scores.dtype != torch.float64 or bool(scores.isnan().any()) or bool(scores.signbit().any()):
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        keep = torch.zeros(n, dtype=torch.bool, device=scores.device)
        keep[order] = True
        return keep, float(scores[order[-1]])
    # The largest value v with at least k scores >= v is the k-th largest score.
    lo, hi = _bits(float(scores.min())), _bits(float(scores.max()))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int((scores >= _value(mid)).sum()) >= k:
            lo = mid
        else:
            hi = mid - 1
    threshold = _value(lo)
    keep = scores > threshold
    need = k - int(keep.sum())
    for start in range(0, n, _WINDOW):
        if need == 0:
            break
        ties = (scores[start : start + _WINDOW] == threshold).nonzero().flatten()[:need]
        keep[start + ties] = True
        need -= len(ties)
    return keep, threshold


def _bits(x: float) -> int:
    return int(torch.tensor(x, dtype=torch.float64).view(torch.int64))


def _value(bits: int) -> float:
    return float(torch.tensor(bits, dtype=torch.int64).view(torch.float64))


__all__ = ["top_k_mask"]
