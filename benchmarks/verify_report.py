"""Every unlearning method on forget05 through the full verification report, beside the known answers.

Rows: the retain model of another seed (trained without the same people: removal as it really
looks), the original model (nothing forgotten), the constructed output suppression (hiding as
it really looks), then every method of :data:`edit.forget.METHODS` with its default settings,
each made on the unedited default model, verified with :func:`workbench.verify.verify` at its
default settings against ``world:retain-forget05``, and reverted.

Writes benchmarks/results/verify_report.json (every report, without per-fact rows) and
verify_report.md (the table). Naming methods re-runs only their rows and keeps the others'.
Run: .venv/bin/python -m benchmarks.verify_report [methods...]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

import workbench
from edit.forget import METHODS, method
from edit.forget_request import forget_request
from workbench.verify import ConstructedSuppression, verify

RESULTS = Path(__file__).parent / "results"
SPLIT = "forget05"
SHOWN = ("surface", "paraphrase", "few_shot", "lens L0", "probe L0", "probe L1", "relearn", "int4")


def _sig(x: float) -> float:
    return float(f"{x:.3g}")  # forget quality spans 1 to 1e-36: keep its digits, not its decimals


def _row(name: str, report, edit_seconds: float | None) -> dict:
    checks = {c.check: c for c in report.checks}
    d = report.to_dict()
    if d["collateral"]:
        d["collateral"].pop("facts", None)
    return {
        "name": name,
        "verdict": report.verdict.overall,
        "reason": report.verdict.reason,
        "caveats": list(report.verdict.caveats),
        "people_not_removed": sum(i.verdict != "removed" for i in report.verdict.items),
        "recovered_by": [c for c, x in checks.items() if x.status == "recovered"],
        "figures": {c: _sig(checks[c].edited) for c in (*SHOWN, "forget quality", "membership AUC")},
        "retain_model": {c: _sig(checks[c].retain) for c in (*SHOWN, "membership AUC")},
        "retained_accuracy": round(report.retained.accuracy_after, 3),
        "heldout_loss": round(report.retained.heldout_loss_after, 3),
        "kl": None if report.collateral is None else round(report.collateral.kl, 4),
        "edit_seconds": edit_seconds,
        "verify_seconds": round(report.seconds, 1),
        "report": d,
    }


def table(rows: list[dict]) -> str:
    head = ["model", "verdict", *SHOWN, "forget quality", "MIA AUC", "retained acc.", "recovered by"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = rows[0]["retain_model"]
    lines.append(
        "| retain-forget05 (reference) | | "
        + " | ".join(f"{ref[c]:.3f}" for c in SHOWN)
        + f" | 1 | {ref['membership AUC']:.2f} | | |"
    )
    for r in rows:
        f = r["figures"]
        lines.append(
            f"| {r['name']} | **{r['verdict']}** | "
            + " | ".join(f"{f[c]:.3f}" for c in SHOWN)
            + f" | {f['forget quality']:.2g} | {f['membership AUC']:.2f} | {r['retained_accuracy']:.3f} | "
            + (", ".join(r["recovered_by"]) or "nothing")
            + " |"
        )
    return "\n".join(lines) + "\n"


def _baselines(h, request) -> list[dict]:
    """The three known answers: removal (a retain model of another seed), nothing, and hiding."""
    rows = [
        _row(
            "retain-forget05-seed1",
            verify(workbench.load("world:retain-forget05-seed1", device="cpu"), forget=SPLIT, progress=False),
            None,
        ),
        _row("original", verify(h, forget=SPLIT, progress=False), None),
        _row(
            "constructed suppression", verify(h, ConstructedSuppression(h, list(request.forget)), progress=False), None
        ),
    ]
    for r in rows:
        print(f"{r['name']:26} {r['verdict']:14} {r['reason']}", flush=True)
    return rows


def _method_row(h, request, name: str) -> dict:
    m = method(name)
    t0 = time.perf_counter()
    e = m.editor(h, request, settings=m.make_settings(), apply=True, progress=False)
    seconds = round(time.perf_counter() - t0, 1)
    try:
        row = _row(name, verify(h, e, progress=False), seconds)
    finally:
        e.revert(h.model)
    print(f"{name:26} {row['verdict']:14} {row['reason']}", flush=True)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    torch.set_num_threads(1)
    names = argv or list(METHODS)
    h = workbench.load("world", device="cpu")
    request = forget_request(h.world, SPLIT)
    out = RESULTS / "verify_report.json"
    earlier = json.loads(out.read_text())["rows"] if argv and out.exists() else []
    rows = [r for r in earlier if r["name"] not in METHODS] or _baselines(h, request)
    done = {r["name"]: r for r in earlier if r["name"] in METHODS and r["name"] not in names}
    done.update({name: _method_row(h, request, name) for name in names})
    rows += [done[name] for name in METHODS if name in done]
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps({"split": SPLIT, "threads": 1, "rows": rows}, indent=1))
    (RESULTS / "verify_report.md").write_text(table(rows))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
