"""SISA on the world: exact unlearning by retraining shards, beside the retain model it should match.

Trains (or resumes) a SISA ensemble of S=5 shards in R=4 slices at the default model's settings
under the workbench cache, then measures:

* the ensemble's accuracy among candidates on trained and held-out phrasings, for forget05's
  retain and forget people, and its held-out loss, before forgetting;
* forgetting one person (forget05's first): shards and slices retrained, and the cost as a
  fraction of the full training (steps and seconds) against the bar 1/S plus one slice;
* forgetting forget05's 15 people: the same cost figures, the accuracy after, whether the
  weights are bitwise those of the reference ensemble, and the verification report's verdict
  against two references: the ensemble of the same plan trained from scratch without forget05
  (``--without forget05``, trained beside the first; the exact answer) and the shipped single
  retain model ``world:retain-forget05`` (not like with like: averaged distributions);
* the retain model's and the reference ensemble's accuracy on the same facts, beside.

Writes benchmarks/results/sisa.json (``--quick``: sisa_quick.json) and prints a summary.
Run: .venv/bin/python -m benchmarks.sisa [--quick] [--epochs N] [--out DIR]
``--quick`` trains 2 epochs (one per slice) and verifies with ``VerifySettings.quick()``: a few
minutes, to check that everything runs. The full run trains about as many steps as one world
model, then retrains most of them again for forget05 (its people fall in every shard).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import workbench
from edit.forget_request import forget_request
from edit.sisa import sisa_forget, weights_equal
from workbench.core.handle import load_shared
from workbench.core.world.facts import make_world
from workbench.core.world.registry import SHIPPED
from workbench.core.world.sisa_train import SisaSettings, default_folder, train_sisa
from workbench.core.world.train import TrainSettings, evaluate
from workbench.verify.report import VerifySettings, verify

RESULTS = Path(__file__).parent / "results"
SPLIT = "forget05"


def _accuracy(h) -> dict:
    """Accuracy of forget05's retain and forget people (trained, held-out phrasings) and the held-out loss."""
    out = evaluate(h.model, h.tokenizer, h.world, SPLIT)
    return {group: {k: round(v["accuracy"], 4) for k, v in out[group].items()} for group in ("retain", "forget")} | {
        "heldout_loss": round(out["heldout_loss"], 4)
    }


def _cost(metrics: dict) -> dict:
    keys = ("shards_retrained", "first_slices", "slices_retrained", "retrain_seconds", "retrain_steps")
    out = {k: metrics[k] for k in keys}
    out |= {k: round(metrics[k], 4) for k in ("cost_fraction", "bar_fraction")}
    out["cost_fraction_seconds"] = round(metrics["cost_fraction_seconds"], 4)
    out["within_bar"] = metrics["cost_fraction"] <= metrics["bar_fraction"]
    out["exact_weights"] = metrics["exact_weights"]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 epochs and quick verification: checks that it runs")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the single model the slices share")
    p.add_argument("--shards", type=int, default=5)
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--out", default=None, help="the ensemble's folder (default: under the workbench cache)")
    args = p.parse_args(argv)
    train = TrainSettings(**SHIPPED["gpt2"])
    train.epochs = args.epochs or (2 if args.quick else train.epochs)
    settings = SisaSettings(shards=args.shards, slices=args.slices)
    folder = Path(args.out) if args.out else default_folder(train, settings)

    t0 = time.perf_counter()
    manifest = train_sisa(folder, train, settings)
    trained_now = time.perf_counter() - t0
    # The exact answer for forget05: the same plan from scratch, its people in no stage.
    ref_folder = folder.parent / f"{folder.name}-without-{SPLIT}"
    without = replace(settings, without=tuple(make_world().split(SPLIT).forget))
    ref_manifest = train_sisa(ref_folder, train, without)
    h = workbench.load(str(folder), device="cpu")
    reference = workbench.load(str(ref_folder), device="cpu")
    world = h.world
    out: dict = {
        "folder": str(folder),
        "shards": args.shards,
        "slices": args.slices,
        "epochs": train.epochs,
        "slice_epochs": manifest["slice_epochs"],
        "train_seconds": manifest["total_seconds"],
        "train_seconds_this_run": round(trained_now, 1),
        "before": _accuracy(h),
        "retain_model": _accuracy(load_shared(f"world:retain-{SPLIT}")),
        "reference_ensemble": {"folder": str(ref_folder), "train_seconds": ref_manifest["total_seconds"]}
        | _accuracy(reference),
    }
    print(f"trained {folder} ({manifest['total_seconds']:.0f}s); before: {out['before']}", flush=True)

    one = world.split(SPLIT).forget[0]
    edit = sisa_forget(h, forget_request(world, one), progress=False)
    out["one_person"] = {"person": one} | _cost(edit.metrics)
    edit.revert(h.model)
    print(f"one person: {out['one_person']}", flush=True)

    edit = sisa_forget(h, forget_request(world, SPLIT), progress=False)
    out[SPLIT] = _cost(edit.metrics) | {"after": _accuracy(h)}
    print(f"{SPLIT}: {out[SPLIT]}", flush=True)

    vs = VerifySettings.quick() if args.quick else VerifySettings()
    out[SPLIT]["same_weights_as_reference"] = weights_equal(h.model, dict(reference.model.named_parameters()))
    for key, ref in (("verification", "auto"), ("verification_single_model", f"world:retain-{SPLIT}")):
        report = verify(h, edit, reference=ref, settings=vs, progress=False)
        out[SPLIT][key] = {
            "verdict": report.verdict.overall,
            "reason": report.verdict.reason,
            "reference": report.baseline.model,
            "checks": {c.check: c.status for c in report.checks},
            "seconds": round(report.seconds, 1),
            "settings": "quick" if args.quick else "default",
        }
        print(f"against {report.baseline.model}: {report.verdict.overall} ({report.verdict.reason})", flush=True)
    edit.revert(h.model)

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("sisa_quick.json" if args.quick else "sisa.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
