"""Batched against one-by-one MEMIT values on an accelerator, and the editors' device and dtype paths.

On CPU the batched value optimisation is bound by arithmetic that one by one does too
(benchmarks/memit.py: 4.6x); on a GPU one-by-one optimisation is bound by kernel launches
instead, which batching removes. For each world model this
1. times the three ways of benchmarks/memit.py (batched; one by one with the same prefix reuse;
   one by one with every token run at every step, as the original MEMIT code does), the least of
   ``rounds`` interleaved rounds, and checks that they give the same deltas;
2. runs ROME on one edit and MEMIT on ten with the model in float32 and in bfloat16 on the
   device: the edits must take, leave every weight on its device and in its dtype, change only
   the declared tensors, and revert bitwise.

Writes benchmarks/results/memit_device_<device type>.json.
Run: .venv/bin/python -m benchmarks.memit_device [device [n [rounds]]]   (default: cuda if present)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import workbench
from benchmarks.memit import value_timings, value_ways
from edit.counterfact import score_requests
from edit.memit import MemitSettings, memit
from edit.request import random_rewrites
from edit.rome import rome
from workbench.core.hashing import tensor_hash

RESULTS = Path(__file__).parent / "results"
BASE = MemitSettings(layers=(0,), token="last")
WAYS = value_ways(BASE)


def speed(model: str, device: str, n: int, rounds: int) -> dict:
    """The value optimisation's seconds each way, the speed-ups, and how far the ways' deltas differ."""
    h = workbench.load(model, device=device)
    reqs = random_rewrites(h.world, n)
    memit(h, reqs[:2], settings=BASE).revert(h.model)  # warm-up: statistics cached, contexts sampled
    values: dict = {}
    out = value_timings(h, reqs, WAYS, rounds=rounds, values=values)
    best = out["best"]
    ref = values["batched"].delta.float()
    out["speedup"] = best["one_by_one"] / best["batched"]
    out["speedup_vs_full_passes"] = best["one_by_one_full_passes"] / best["batched"]
    # Requests are independent: each way must find the same deltas, up to float rounding.
    out["max_relative_delta_difference"] = {
        k: float(((v.delta.float() - ref).norm(dim=-1) / ref.norm(dim=-1).clamp(min=1e-12)).max())
        for k, v in values.items()
        if k != "batched"
    }
    return out


def placement(model: str, device: str, dtype: str) -> dict:
    """ROME (one edit) and MEMIT (ten) on the device in ``dtype``: scores and what the edits left where."""
    h = workbench.load(model, device=device, dtype=dtype)
    reqs = random_rewrites(h.world, 10, seed=1)
    where = {n: (p.device, p.dtype) for n, p in h.model.named_parameters()}
    before = {n: tensor_hash(p) for n, p in h.model.named_parameters()}
    out = {}
    for name, run, edited in (
        ("rome", lambda: rome(h, reqs[0]), reqs[:1]),
        ("memit", lambda: memit(h, reqs, settings=BASE), reqs),
    ):
        t0 = time.perf_counter()
        e = run()
        seconds = time.perf_counter() - t0
        changed = {n for n, p in h.model.named_parameters() if tensor_hash(p) != before[n]}
        stayed = all((p.device, p.dtype) == where[n] for n, p in h.model.named_parameters())
        scores = score_requests(h, edited)
        e.revert(h.model)
        out[name] = {
            "seconds": seconds,
            "efficacy": scores["efficacy"]["prob"],
            "neighbourhood": scores["neighbourhood"]["prob"],
            "only_declared_tensors_changed": changed == set(e.names),
            "weights_kept_device_and_dtype": stayed,
            "reverted_bitwise": all(tensor_hash(p) == before[n] for n, p in h.model.named_parameters()),
            "delta_device": str(next(iter(e.deltas.values())).tensor().device),
        }
    return out


def run(model: str, device: str, n: int, rounds: int) -> dict:
    out = {"model": model, "device": device, "edits": n, "rounds": rounds, "speed": speed(model, device, n, rounds)}
    out["placement"] = {dt: placement(model, device, dt) for dt in ("float32", "bfloat16")}
    return out


def main(device: str | None = None, n: int = 1000, rounds: int = 2, models=("world", "world:llama")) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = {
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
    }
    for m in models:
        results[m] = run(m, device, n, rounds)
        print(m, json.dumps(results[m]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"memit_device_{torch.device(device).type}.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else None, *(int(a) for a in args[1:3]))
