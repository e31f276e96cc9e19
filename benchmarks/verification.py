"""Verification measurements on forget05: the original, the retain models, a constructed suppression, and editors.

Each row is one model state scored by the checks of ``workbench.verify``: surface accuracy on
the forgotten facts, truth-ratio forget quality against ``world:retain-forget05``, Min-K% and
Min-K%++ membership AUC, logit-lens and probe accuracy per layer, and accuracy after 8- and
4-bit quantisation. The retain models never saw the forgotten people: their rows are what
removal looks like; the constructed output suppression is what hiding looks like.

Writes benchmarks/results/verification.json. Run: .venv/bin/python -m benchmarks.verification
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

import workbench
from edit.forget import method
from edit.forget_request import forget_request
from workbench.verify import linear_probe, logit_lens, mia_auc, mia_texts, quantised_accuracy, suppress_output
from workbench.verify.truth_ratio import forget_quality, truth_ratios

OUT = Path(__file__).parent / "results" / "verification.json"
SPLIT = "forget05"


def measure(h, request, reference_ratios, state=None) -> dict:
    forget = list(request.forget)
    with state or nullcontext():
        t0 = time.perf_counter()
        ratios = truth_ratios(h, forget)
        f_texts, holdout = mia_texts(h.world, forget)
        row = {
            "forget_accuracy": h.score(forget).accuracy,
            "forget_quality": None if reference_ratios is None else forget_quality(ratios, reference_ratios),
            "mia_auc": {m: mia_auc(h, f_texts, holdout, m) for m in ("min_k", "min_k++")},
            "logit_lens": list(logit_lens(h, forget).accuracy),
            "probe": list(linear_probe(h, forget, list(request.retain)).accuracy),
        }
        # A hook-made state would be lost in the quantised copy's weights, so only weight edits are quantised.
        if state is None:
            q = quantised_accuracy(h, forget)
            row["quantised_accuracy"] = {k: v["accuracy"] for k, v in q.items() if k != "settings"}
        row["seconds"] = round(time.perf_counter() - t0, 1)
    return row, ratios


def main(argv: list[str] | None = None) -> dict:
    torch.set_num_threads(1)
    h = workbench.load("world", device="cpu")
    request = forget_request(h.world, SPLIT)
    reference = workbench.load(f"world:retain-{SPLIT}", device="cpu")
    ref_row, ref_ratios = measure(reference, request, None)
    ref_row["forget_quality"] = 1.0
    rows = {f"world:retain-{SPLIT}": ref_row}
    seed1 = workbench.load(f"world:retain-{SPLIT}-seed1", device="cpu")
    rows[f"world:retain-{SPLIT}-seed1"], _ = measure(seed1, request, ref_ratios)
    rows["original"], _ = measure(h, request, ref_ratios)
    rows["constructed suppression"], _ = measure(h, request, ref_ratios, suppress_output(h, list(request.forget)))
    for name in argv or ["ssd", "rmu", "npo"]:
        m = method(name)
        e = m.editor(h, request, settings=m.make_settings(), apply=True, progress=False)
        try:
            rows[name], _ = measure(h, request, ref_ratios)
        finally:
            e.revert(h.model)
    for name, row in rows.items():
        print(
            f"{name:28} forget {row['forget_accuracy']:.3f} FQ {row['forget_quality']:.2g} "
            f"MIA {row['mia_auc']['min_k++']:.2f} lens {[round(x, 2) for x in row['logit_lens']]} "
            f"probe {[round(x, 2) for x in row['probe']]} q {row.get('quantised_accuracy')}",
            flush=True,
        )
    result = {"split": SPLIT, "threads": 1, "rows": rows}
    OUT.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
