"""The k largest of many scores, as a boolean mask or as kept indices per part, without sorting them.

A Fisher Location ranks every parameter element of a model: 124M doubles on GPT-2 small. A
stable descending sort of them holds a sorted copy and an int64 index per score (2 GB more), and
even one flat copy of the scores in float64 is 1 GB. Here the k-th largest score is found by a
radix select on the bits of the (non-negative) doubles, whose integer order is their numeric
order: four counting passes, each a histogram of the next 16 bits among the scores that share
the bits found so far. The scores may come in parts that are recomputed for every pass
(:func:`top_k_parts`), so no flat copy is ever held. Ties at the k-th score go to the lowest
indices, so the choice is exactly the first k of the stable sort.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

# Bits settled per counting pass: four passes cover a double, each histogram 2**16 counts.
_DIGIT = 16
# Ratios :func:`top_k_ratio` computes at a time: 32 MB of float64 in each of its two buffers.
_PIECE = 2**22


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
        scores: One score per candidate. Non-negative float64 scores take the radix select; any
            other (negative, NaN, another dtype) the plain stable sort, with the same result.
        k: How many to keep, 1 to ``len(scores)``.
    """
    keep = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    kept, threshold = top_k_parts(lambda: [scores], k)
    keep[kept[0]] = True
    return keep, threshold


def top_k_parts(parts: Callable[[], Iterable[Tensor]], k: int) -> tuple[list[Int[Tensor, " kept"]], float]:
    """The ``k`` largest of scores that come in parts: per part, the indices kept; and the k-th largest score.

    ``parts()`` must yield the same 1-D tensors in the same order each time it is called. It
    is called five times (four counting passes, one to list the kept indices), so a caller can
    compute each part when asked, even into the buffer of the part before, and hold one part
    at a time. The choice is :func:`top_k_mask`'s on the parts joined.

    Examples:
        >>> a = torch.tensor([0.5, 2.0], dtype=torch.float64)
        >>> b = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
        >>> kept, threshold = top_k_parts(lambda: [a, b], 3)
        >>> [i.tolist() for i in kept], threshold
        ([[1], [0, 1]], 1.0)

    Args:
        parts: Called for each pass; yields one score per candidate, in parts. Non-negative
            float64 scores take the radix select; any other (negative, NaN, another dtype)
            the plain stable sort of the joined scores, with the same result.
        k: How many to keep, 1 to the number of scores.
    """
    # The k-th largest score, 16 bits at a time: count the next digit among the scores that
    # share the digits found so far, and take the digit where the count from the top reaches k.
    need, prefix, size, n = k, 0, 1 << _DIGIT, 0
    for shift in range(64 - _DIGIT, -1, -_DIGIT):
        counts = torch.zeros(size, dtype=torch.int64)
        # The scores that share the digits found so far form one range of bit patterns.
        low = prefix << (shift + _DIGIT)
        high = low | ((1 << (shift + _DIGIT)) - 1)
        for part in parts():
            if shift == 64 - _DIGIT:
                if part.dtype != torch.float64 or bool(part.isnan().any()) or bool(part.signbit().any()):
                    return _sorted_parts([p.clone() for p in parts()], k)
                n += len(part)
                digits = part.view(torch.int64) >> shift
            else:
                bits = part.view(torch.int64)
                digits = (bits[(bits >= low) & (bits <= high)] >> shift) & (size - 1)
            counts += torch.bincount(digits, minlength=size).cpu()
            del digits
        if not 1 <= k <= n:
            raise ValueError(f"top_k_mask: k must be in 1..{n}, got {k}")
        from_top = counts.flip(0).cumsum(0)
        digit = size - 1 - int((from_top >= need).nonzero()[0])
        need -= int(from_top[size - 1 - digit]) - int(counts[digit])
        prefix = (prefix << _DIGIT) | digit
    threshold = _value(prefix)
    # Everything above the threshold, and the first ``need`` scores equal to it.
    kept = []
    for part in parts():
        chosen = (part > threshold).nonzero().flatten()
        if need:
            ties = (part == threshold).nonzero().flatten()[:need]
            need -= len(ties)
            chosen = torch.cat([chosen, ties]).sort().values
        kept.append(chosen)
    return kept, threshold


def top_k_ratio(
    numerators: dict[str, Tensor], denominators: dict[str, Tensor] | None, k: int, eps: float = 0.0
) -> tuple[dict[str, Int[Tensor, " kept"]], float]:
    """The ``k`` largest of ``numerator / (denominator + eps)`` in float64 over every element of many tensors.

    The tensors count as one flat sequence (the dict's order, each flattened), so ties go to the
    earlier tensor, then the lower index. The ratios are computed a fixed-size piece at a time
    into two reused buffers, so memory holds no float64 copy of them beyond two pieces.

    Examples:
        >>> f = {"a": torch.tensor([[4.0, 1.0]]), "b": torch.tensor([2.0, 8.0, 2.0])}
        >>> r = {"a": torch.tensor([[1.0, 1.0]]), "b": torch.tensor([1.0, 2.0, 1.0])}
        >>> kept, threshold = top_k_ratio(f, r, 3)
        >>> {n: i.tolist() for n, i in kept.items()}, threshold
        ({'a': [0], 'b': [0, 1]}, 2.0)
        >>> top_k_ratio(f, None, 1)[0]["b"].tolist()  # no denominators: the numerators themselves
        [1]

    Args:
        numerators: Name -> tensor.
        denominators: Name -> tensor of the same size, or None for the numerators alone.
        k: How many elements to keep, 1 to their number.
        eps: Added to every denominator.

    Returns:
        Name -> flat indices of its kept elements, ascending; and the k-th largest ratio.
    """
    names = list(numerators)
    starts = torch.tensor([0] + [numerators[n].numel() for n in names]).cumsum(0).tolist()
    total = starts[-1]
    device = numerators[names[0]].device if names else None
    buffer = torch.empty(min(_PIECE, total), dtype=torch.float64, device=device)
    below = torch.empty_like(buffer) if denominators is not None else None

    def parts() -> Iterator[Float[Tensor, " piece"]]:
        for a in range(0, total, _PIECE):
            b = min(a + _PIECE, total)
            for i, name in enumerate(names):
                lo, hi = max(a, starts[i]), min(b, starts[i + 1])
                if lo < hi:
                    buffer[lo - a : hi - a].copy_(numerators[name].reshape(-1)[lo - starts[i] : hi - starts[i]])
                    if below is not None:
                        below[lo - a : hi - a].copy_(denominators[name].reshape(-1)[lo - starts[i] : hi - starts[i]])
            part = buffer[: b - a]
            yield part if below is None else part.div_(below[: b - a].add_(eps))

    kept, threshold = top_k_parts(parts, k)
    flat = torch.cat([i + a for i, a in zip(kept, range(0, total, _PIECE), strict=True)])
    bounds = torch.searchsorted(flat, torch.tensor(starts, device=flat.device)).tolist()
    return {n: flat[bounds[i] : bounds[i + 1]] - starts[i] for i, n in enumerate(names)}, threshold


def _sorted_parts(parts: list[Tensor], k: int) -> tuple[list[Tensor], float]:
    scores = torch.cat(parts)
    if not 1 <= k <= len(scores):
        raise ValueError(f"top_k_mask: k must be in 1..{len(scores)}, got {k}")
    order = torch.sort(scores, descending=True, stable=True).indices[:k]
    keep = torch.zeros(len(scores), dtype=torch.bool, device=scores.device)
    keep[order] = True
    return [m.nonzero().flatten() for m in keep.split([len(p) for p in parts])], float(scores[order[-1]])


def _value(bits: int) -> float:
    return float(torch.tensor(bits, dtype=torch.int64).view(torch.float64))


__all__ = ["top_k_mask", "top_k_parts", "top_k_ratio"]
