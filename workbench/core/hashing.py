"""Content hashes of tensors: what ties an edit, a patch or an export to the weights it was made on."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def tensor_hash(t: Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes.

    Examples:
        >>> a, b = tensor_hash(torch.zeros(2)), tensor_hash(torch.zeros(3))
        >>> a == tensor_hash(torch.zeros(2)), a == b
        (True, False)
    """
    t = t.detach().contiguous().cpu()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
