"""Reading a device name: one torch can parse and this machine has, or a one-line error."""

from __future__ import annotations

import torch


def parse_device(device: str) -> torch.device:
    """``device`` as a torch.device; ValueError (one line) for a name torch cannot parse or a device not here.

    The CLI's ``--device`` and the world trainer both read devices through this, so a mistyped
    name or a missing GPU reads the same everywhere.

    Examples:
        >>> parse_device("cpu")
        device(type='cpu')
        >>> parse_device("gpu")
        Traceback (most recent call last):
        ValueError: 'gpu' is not a device (cpu, cuda, cuda:1, mps)
    """
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{device!r} is not a device (cpu, cuda, cuda:1, mps)") from None
    if d.type == "cuda" and (not torch.cuda.is_available() or (d.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"{device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{device}: MPS is not available here")
    return d
