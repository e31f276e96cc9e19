"""Unlearning on the world model's forget splits: RMU's settings sweep, then every method's defaults.

1. Sweep (forget05): RMU over pushed positions x steering coefficient x retain weight alpha at
   layer 2, then the layer and the learning rate around the chosen point. Figures on 100 retain
   and 100 neighbour facts, to keep each point near 20 s on one core.
2. Table: RMU and the three gradient methods (NPO, GradDiff, GA) with default settings on
   forget01, forget05 and forget10, full figures (300 retain, 300 neighbour facts, held-out
   loss), beside the model trained without each split's people (the exact answer).

The bar for an unlearning method: forget accuracy within 5 points of the retain model's, retain
accuracy at least 98% of the original's, held-out loss near the original's, in under 2% of the
retain model's training time (about 10 minutes: 12 s).

Writes benchmarks/results/rmu_sweep.json (each part replaces its own key).
Run: .venv/bin/python -m benchmarks.rmu_sweep [sweep|table|all]
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch

import workbench
from edit.forget_figures import FigureSettings, forget_figures
from edit.forget_request import forget_request
from edit.gradient_unlearn import GradientSettings, gradient_unlearn
from edit.rmu import RmuSettings, rmu

OUT = Path(__file__).parent / "results" / "rmu_sweep.json"
SPLITS = ("forget01", "forget05", "forget10")
QUICK = FigureSettings(retain_facts=100, neighbour_facts=100)


def _round(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def _run(h, request, make, figures: FigureSettings) -> dict:
    e = make()
    try:
        f = forget_figures(h, request, figures)
    finally:
        e.revert(h.model)
    m = e.metrics
    return _round({**f, "seconds": m["seconds"], "steps": m["steps"], "stopped": m["stopped"]})


def _point(h, request, s: RmuSettings) -> dict:
    out = _run(h, request, lambda: rmu(h, request, settings=s, progress=False), QUICK)
    changed = {k: v for k, v in asdict(s).items() if v != getattr(RmuSettings(), k)}
    print("rmu", changed, out, flush=True)
    return {"settings": asdict(s), **out}


def _best(points: list[dict]) -> dict:
    """Lowest forget accuracy among points that keep retain accuracy >= 0.98; ties: more neighbours kept."""
    ok = [p for p in points if p["retain"] >= 0.98] or points
    return min(ok, key=lambda p: (round(p["forget"], 2), -p["neighbours"]))


def sweep(h) -> dict:
    request = forget_request(h.world, "forget05")
    base = RmuSettings(layer=2, lr=3e-2, steps=150)
    grid = [
        replace(base, positions=p, steering_coefficient=c, alpha=a)
        for p, c, a in itertools.product(("subject", "last"), (1.0, 2.0, 4.0), (3.0, 10.0, 30.0))
    ]
    points = [_point(h, request, s) for s in grid]
    best = RmuSettings(**_best(points)["settings"])
    around = [replace(best, layer=layer) for layer in (0, 1, 3)] + [replace(best, lr=lr) for lr in (1e-2, 1e-1)]
    points += [_point(h, request, s) for s in around]
    return {"split": "forget05", "figures": asdict(QUICK), "points": points, "best": _best(points)}


def table(h) -> dict:
    methods = {"rmu": lambda r: rmu(h, r, progress=False)}
    for m in ("npo", "gradiff", "ga"):
        methods[m] = lambda r, m=m: gradient_unlearn(h, r, settings=GradientSettings(method=m), progress=False)
    out = {
        "original": {},
        "retain_model": {},
        **{m: {} for m in methods},
        "settings": {
            "rmu": asdict(RmuSettings()),
            **{m: asdict(GradientSettings(method=m)) for m in methods if m != "rmu"},
        },
    }
    for split in SPLITS:
        request = forget_request(h.world, split)
        out["original"][split] = _round(forget_figures(h, request))
        gold = workbench.load(f"world:retain-{split}", device="cpu")
        out["retain_model"][split] = _round(forget_figures(gold, request))
        print(split, "original", out["original"][split], "retain model", out["retain_model"][split], flush=True)
        for name, make in methods.items():
            out[name][split] = _run(h, request, partial(make, request), FigureSettings())
            print(split, name, out[name][split], flush=True)
    return out


def main(part: str = "all", threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    h = workbench.load("world", device="cpu")
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results.update(model="world", threads=threads)
    t0 = time.perf_counter()
    if part in ("sweep", "all"):
        results["sweep"] = sweep(h)
    if part in ("table", "all"):
        results["table"] = table(h)
    results[f"{part}_seconds"] = time.perf_counter() - t0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(*sys.argv[1:2])
