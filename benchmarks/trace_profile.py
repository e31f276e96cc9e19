"""Where the batched causal trace spends its time at full size: a profile of one model's MLP trace.

Builds random weights of a real configuration at full size (``tests/real_configs``), runs the
trace once to build the hooked view, then profiles the batched trace of the MLP restorations
(10 noise samples, the 12-token prompt of ``benchmarks/full_size.py``) and prints the functions
that took longest. ``docs/scale.md`` reads it for Pythia-160m.

Run: ``.venv/bin/python -m benchmarks.trace_profile [pythia-160m|llama-gqa|gpt2-small]``
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time

import torch

import workbench
from benchmarks.full_size import OBJECT, PROMPT, SUBJECT
from locate.causal_trace import TraceSettings, trace


def main(name: str = "pythia-160m") -> None:
    sys.path.insert(0, "tests")
    from real_configs import save_real_model

    torch.set_num_threads(2)
    folder = tempfile.mkdtemp()
    save_real_model(folder, name, reduced=False)
    h = workbench.load(folder, device="cpu")
    trace(h, PROMPT, SUBJECT, OBJECT, TraceSettings(samples=1))  # builds the hooked view
    profile, t0 = cProfile.Profile(), time.perf_counter()
    profile.enable()
    trace(h, PROMPT, SUBJECT, OBJECT, TraceSettings(samples=10), ("mlp",))
    profile.disable()
    print(f"{name}: batched MLP trace {time.perf_counter() - t0:.1f} s")
    pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main(*sys.argv[1:2])
