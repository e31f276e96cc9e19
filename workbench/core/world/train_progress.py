"""Resumable world training: the state a stopped run needs to go on exactly where it stopped.

A world model's data order comes from a seeded generator consumed only by packing, and its
training draws no other randomness (no dropout), so replaying the packing and restoring the
weights, the optimiser, the schedule and the step count continues the run bitwise as if it had
never stopped. The state is written beside the model's folder (``training_progress.pt``),
atomically, every few minutes, and removed when training ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

FILE = "training_progress.pt"


class ProgressMismatch(ValueError):
    """A saved training state from other settings: resuming it would mix two runs."""


@dataclass
class Progress:
    """Where a run stands: steps done, the loss average and the seconds spent so far.

    Examples:
        >>> Progress().step, Progress().seconds
        (0, 0.0)
    """

    step: int = 0
    loss_ema: float | None = None
    seconds: float = 0.0


def progress_path(out_dir: str | Path) -> Path:
    """The file a run's state is kept in while it trains.

    Examples:
        >>> progress_path("/tmp/m").name
        'training_progress.pt'
    """
    return Path(out_dir) / FILE


def save_progress(out_dir: str | Path, settings: dict, model, opt, sched, progress: Progress) -> Path:
    """Write the run's state (through a temporary file, so a kill mid-write leaves the last one).

    Examples:
        >>> import tempfile, torch
        >>> m = torch.nn.Linear(2, 2); o = torch.optim.AdamW(m.parameters())
        >>> s = torch.optim.lr_scheduler.LambdaLR(o, lambda k: 1.0)
        >>> save_progress(tempfile.mkdtemp(), {"seed": 0}, m, o, s, Progress(step=3)).name
        'training_progress.pt'
    """
    path = progress_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "settings": settings,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "progress": vars(progress),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_progress(out_dir: str | Path, settings: dict, model, opt, sched, defaults: dict | None = None) -> Progress:
    """Restore a stopped run's state into ``model``, ``opt`` and ``sched``; a fresh Progress if none.

    ``defaults`` are the settings' default values: a setting the saved run predates reads as
    its default, so a setting added later and left at it does not orphan the run.

    Examples:
        >>> import tempfile, torch
        >>> d = tempfile.mkdtemp()
        >>> m = torch.nn.Linear(2, 2); o = torch.optim.AdamW(m.parameters())
        >>> s = torch.optim.lr_scheduler.LambdaLR(o, lambda k: 1.0)
        >>> load_progress(d, {"seed": 0}, m, o, s).step
        0
        >>> _ = save_progress(d, {"seed": 0}, m, o, s, Progress(step=3))
        >>> load_progress(d, {"seed": 0}, m, o, s).step
        3
        >>> load_progress(d, {"seed": 1}, m, o, s)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ProgressMismatch: ...training_progress.pt was saved by a run with other settings (seed: 0, not 1)...
    """
    path = progress_path(out_dir)
    if not path.exists():
        return Progress()
    state = torch.load(path, map_location="cpu", weights_only=False)
    saved = {**(defaults or {}), **state["settings"]}
    differing = sorted(k for k in saved.keys() | settings.keys() if saved.get(k) != settings.get(k))
    if differing:
        diff = ", ".join(f"{k}: {saved.get(k)!r}, not {settings.get(k)!r}" for k in differing)
        raise ProgressMismatch(f"{path} was saved by a run with other settings ({diff}); delete it to start again")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return Progress(**state["progress"])


def clear_progress(out_dir: str | Path) -> None:
    """Remove a finished run's state.

    Examples:
        >>> clear_progress("/tmp/no-such-run")
    """
    progress_path(out_dir).unlink(missing_ok=True)


class StopOnInterrupt:
    """While active, the first Ctrl-C (SIGINT) only asks the run to stop after its current step.

    A build runs for hours; a Ctrl-C in the middle of an optimiser step would leave weights and
    optimiser state half-updated, and one between saves would lose up to their interval. The
    training loop checks ``requested`` after each step and saves its progress there. A second
    Ctrl-C interrupts at once, as usual. Outside the main thread (where signals cannot be
    caught) it does nothing.

    Examples:
        >>> import signal
        >>> with StopOnInterrupt() as stop:
        ...     signal.raise_signal(signal.SIGINT)
        ...     stop.requested
        True
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step and saving progress (Ctrl-C again to stop now)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopOnInterrupt:
        with contextlib.suppress(ValueError):  # not the main thread
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
