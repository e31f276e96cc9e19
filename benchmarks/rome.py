"""ROME single edits on random facts of the world models: efficacy, paraphrase, neighbourhood, time.

Each edit is made alone on the unedited model, scored, and reverted. The layer and key position
come from a causal trace of the edit's own prompt (the default). Key statistics are cached
before timing starts, as the bar asks ("with cached statistics").

Writes benchmarks/results/rome.json. Run: .venv/bin/python -m benchmarks.rome
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

import workbench
from edit.counterfact import score_requests
from edit.request import random_rewrites
from edit.rome import RomeSettings, rome

OUT = Path(__file__).parent / "results" / "rome.json"


def run(model: str, n: int, threads: int, settings: RomeSettings | None = None) -> dict:
    """``n`` single edits, each scored and reverted; ``settings`` None: the layer and token the trace picks."""
    torch.set_num_threads(threads)
    h = workbench.load(model, device="cpu")
    reqs = random_rewrites(h.world, n)
    rome(h, reqs[0], settings=settings).revert(h.model)  # warm-up: statistics cached, contexts sampled
    totals = {k: {"prob": 0.0, "accuracy": 0.0, "n": 0} for k in ("efficacy", "paraphrase", "neighbourhood")}
    seconds, layers = [], {}
    for r in reqs:
        t0 = time.perf_counter()
        e = rome(h, r, settings=settings)
        seconds.append(time.perf_counter() - t0)
        s = score_requests(h, [r])
        e.revert(h.model)
        for k, v in s.items():
            for m in ("prob", "accuracy"):
                totals[k][m] += v[m] * v["n"]
            totals[k]["n"] += v["n"]
        key = f"{e.settings['layer']}/{e.settings['token']}"
        layers[key] = layers.get(key, 0) + 1
    scores = {k: {m: v[m] / v["n"] for m in ("prob", "accuracy")} | {"n": v["n"]} for k, v in totals.items()}
    return {
        "model": model,
        "edits": n,
        "threads": threads,
        "scores": scores,
        "sites": layers,
        "seconds_per_edit": sum(seconds) / n,
        "seconds_max": max(seconds),
    }


def main(n: int = 200, threads: int = 2) -> dict:
    results = {m: run(m, n, threads) for m in ("world", "world:llama")}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    for m, r in results.items():
        s = r["scores"]
        print(
            f"{m}: {r['edits']} edits; efficacy {s['efficacy']['prob']:.3f} (acc. {s['efficacy']['accuracy']:.3f}), "
            f"paraphrase {s['paraphrase']['prob']:.3f} ({s['paraphrase']['accuracy']:.3f}), neighbourhood "
            f"{s['neighbourhood']['prob']:.3f} ({s['neighbourhood']['accuracy']:.3f}); "
            f"{r['seconds_per_edit']:.2f} s/edit on {r['threads']} threads; sites {r['sites']}"
        )
    return results


if __name__ == "__main__":
    main()
