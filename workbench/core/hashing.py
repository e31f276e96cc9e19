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
        >>> column = torch.arange(4.0).as_strided((4, 1), (1, 4))  # contiguous, but strided
        >>> tensor_hash(column) == tensor_hash(torch.arange(4.0).reshape(4, 1))
        True
    """
    t = t.detach().cpu()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    # Flat, in row-major order: a tensor that counts as contiguous can still have a size-1 last
    # dimension with a long stride (a one-column delta), which a byte view refuses.
    flat = t.reshape(-1).contiguous()
    h.update(flat.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
