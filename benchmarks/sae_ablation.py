"""SAE feature ablation on the world model: runtime and baked forms against the retain model.

1. Per split (forget01, forget05, forget10): the forget figures (forget, held-out paraphrases,
   retain, neighbours, held-out loss) of the original model, the runtime ablation, the baked
   edit and the model trained without the forgotten people (the exact answer), with the time
   taken; and how close the baked edit comes to the runtime form (:func:`compare_forms`).
2. On forget01, the trade-off as the retain penalty, the features per person and the mode move.

Retain and neighbour facts are drawn with seed 1: feature choice samples its retain facts with
seed 0, and the figures should not be on the facts the penalty saw.

Writes benchmarks/results/sae_ablation.json. Run: .venv/bin/python -m benchmarks.sae_ablation
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

import workbench
from edit.forget_figures import FigureSettings, forget_figures
from edit.forget_request import forget_request
from edit.sae_ablation import (
    AblationSettings,
    ablated,
    ablation_from,
    ablation_of,
    choose_features,
    compare_forms,
    sae_ablate,
)

OUT = Path(__file__).parent / "results" / "sae_ablation.json"
FIGURES = FigureSettings(retain_facts=600, neighbour_facts=300, seed=1)


def _round(d):
    return {k: _round(v) if isinstance(v, dict) else round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def split_run(h, split: str, settings: AblationSettings) -> dict:
    req = forget_request(h.world, split)
    retain_model = workbench.load(f"world:retain-{split}", device="cpu")
    out = {
        "people": len(req.people),
        "forget_facts": len(req.forget),
        "retain_model": forget_figures(retain_model, req, FIGURES),
        "original": forget_figures(h, req, FIGURES),
    }
    t0 = time.perf_counter()
    e = sae_ablate(h, req, settings=settings, progress=False)
    out["seconds"] = time.perf_counter() - t0
    try:
        out["baked"] = forget_figures(h, req, FIGURES)
    finally:
        e.revert(h.model)
    with ablated(h, ablation_of(e)):
        out["runtime"] = forget_figures(h, req, FIGURES)
    out["features"] = len(ablation_of(e).features)
    out["metrics"] = {k: v for k, v in e.metrics.items() if k != "features"}
    out["closeness"] = compare_forms(h, e, req, retain_facts=300, neighbour_facts=300, seed=1)
    return _round(out)


def trade_off(h, base: AblationSettings) -> list[dict]:
    req = forget_request(h.world, "forget01")
    quick = replace(FIGURES, retain_facts=300, heldout_loss=False)
    rows = []
    for penalty in (0.0, 0.005, 0.01, 0.02):
        for per_person in (4, 16):
            s = replace(base, retain_penalty=penalty, features_per_person=per_person)
            loc = choose_features(h, req, s)
            for mode, value in (("zero", base.value), ("clamp_negative", -5.0), ("clamp_negative", -20.0)):
                if mode != "zero" and penalty != base.retain_penalty:
                    continue
                with ablated(h, ablation_from(loc, replace(s, mode=mode, value=value))):
                    f = forget_figures(h, req, quick)
                rows.append(
                    _round(
                        {
                            "retain_penalty": penalty,
                            "features_per_person": per_person,
                            "mode": mode,
                            "value": value,
                            "features": len(loc.sites),
                            **f,
                        }
                    )
                )
                print("trade-off", rows[-1], flush=True)
    return rows


def main(splits=("forget01", "forget05", "forget10"), threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    h = workbench.load("world", device="cpu")
    settings = AblationSettings()
    results = {
        "settings": {**asdict(settings), "sae": asdict(settings.sae)},
        "threads": threads,
        "figure_settings": asdict(FIGURES),
        "splits": {},
    }
    for split in splits:
        results["splits"][split] = split_run(h, split, settings)
        print(split, json.dumps(results["splits"][split]), flush=True)
    results["trade_off_forget01"] = trade_off(h, settings)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main(*(sys.argv[1:2] and [tuple(sys.argv[1].split(","))]))
