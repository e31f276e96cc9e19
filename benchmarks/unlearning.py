"""Every unlearning method on forget01, forget05 and forget10 beside the retain model, and a strength sweep.

For each split and method (default settings) the edit is made on the unedited default model,
scored with :func:`edit.forget_figures.forget_figures` (all forget facts, 300 retain and 300
neighbour facts, held-out loss), and reverted. Each (split, method) row runs in its own process,
so that its peak resident memory (``ru_maxrss``) is that method's alone, beside the memory of the
loaded model before the edit; methods that teach a refusal record how often the model refuses.
The retain model of the split, trained without the forgotten people, is scored on the same
facts: it is the exact answer. The bar for the best method: forget accuracy within 5 points of
the retain model's, retain accuracy at least 98 % of the original's, in under 2 % of the retain
model's training time (its ``training_report.json``).

Then, on forget05, each method's strength setting (:data:`edit.forget.METHODS`) is swept and
forget vs retain accuracy plotted (plotly: HTML always, PNG where kaleido can find a browser).

Writes benchmarks/results/unlearning.json and unlearning_pareto.{html,png}; a run limited to some
methods or splits replaces only their rows and sweep points, keeping the others'.
Run: .venv/bin/python -m benchmarks.unlearning [--splits forget05] [--methods ssd,rmu] [--only table|sweep|time|memory]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

import workbench
from edit.forget import METHODS, method, reference_figures
from edit.forget_figures import FigureSettings, forget_figures
from edit.forget_request import forget_request
from workbench.core.world.registry import resolve_world_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "unlearning.json"
FIGURES = FigureSettings(retain_facts=300, neighbour_facts=300)
# The sweep has many points; fewer facts per point keep it to minutes (the table has the full figures).
SWEEP_FIGURES = FigureSettings(retain_facts=100, neighbour_facts=100, heldout_loss=False)
SPLITS = ("forget01", "forget05", "forget10")


def _round(d: dict | None) -> dict | None:
    return None if d is None else {k: round(v, 4) for k, v in d.items()}


def one(h, request, name: str, figures: FigureSettings = FIGURES, **overrides) -> dict:
    m = method(name)
    t0 = time.perf_counter()
    e = m.editor(h, request, settings=m.make_settings(**overrides), apply=True, progress=False)
    seconds = time.perf_counter() - t0
    try:
        after = forget_figures(h, request, figures)
    finally:
        e.revert(h.model)
    # Methods that teach a refusal say how often the model now refuses (on retain prompts too).
    refusals = {k: round(v, 4) for k, v in e.metrics.items() if k.startswith("refusal_") and isinstance(v, float)}
    return {
        "method": name,
        "settings": overrides,
        "seconds": round(seconds, 2),
        "tensors": len(e.names),
        **_round(after),
        **refusals,
    }


def _peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def child(split: str, name: str, threads: int) -> dict:
    """One table row in this (fresh) process: the edit's figures and this process's peak memory."""
    torch.set_num_threads(threads)
    h = workbench.load("world", device="cpu")
    request = forget_request(h.world, split)
    forget_figures(h, request, FigureSettings(retain_facts=5, neighbour_facts=5, heldout_loss=False))
    model_mb = _peak_mb()  # the model, the world and one scoring pass: what every row starts from
    row = one(h, request, name)
    row["peak_rss_mb"], row["model_rss_mb"] = _peak_mb(), model_mb
    return row


def in_child(split: str, name: str, threads: int) -> dict:
    code = (
        f"import json, benchmarks.unlearning as b; print('ROW ' + json.dumps(b.child({split!r}, {name!r}, {threads})))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    rows = [line[4:] for line in run.stdout.splitlines() if line.startswith("ROW ")]
    if run.returncode or not rows:
        return {"method": name, "error": run.stderr.strip().splitlines()[-5:], "exit": run.returncode}
    return json.loads(rows[-1])


def train_seconds(split: str) -> float:
    report = resolve_world_model(f"world:retain-{split}") / "training_report.json"
    return json.loads(report.read_text())["train_seconds"]


def verdict(row: dict, original: dict, reference: dict, budget: float) -> dict:
    return {
        "forget_within_5_points": abs(row["forget"] - reference["forget"]) <= 0.05,
        "retain_at_least_98_percent": row["retain"] >= 0.98 * original["retain"],
        "under_2_percent_of_training": row["seconds"] <= budget,
    }


def table(h, splits, methods, threads: int, earlier: list[dict] | None = None) -> list[dict]:
    """Rows of ``methods`` on each split; the other methods' rows of an ``earlier`` table are kept."""
    kept = {b["split"]: b for b in earlier or []}
    out = []
    for split in splits:
        request = forget_request(h.world, split)
        original = _round(forget_figures(h, request, FIGURES))
        reference, ref_name = reference_figures(h, request, FIGURES)
        budget = 0.02 * train_seconds(split)
        block = {
            "split": split,
            "original": original,
            "retain_model": {"name": ref_name, **_round(reference)},
            "retain_model_train_seconds": train_seconds(split),
            "budget_seconds": round(budget, 1),
            "methods": [r for r in kept.get(split, {}).get("methods", []) if r["method"] not in methods],
        }
        for name in methods:
            row = in_child(split, name, threads)
            block["methods"].append(row)
            if "error" in row:
                print(f"{split:9} {name:8} failed: {row['error'][-1:]}", flush=True)
                continue
            row["meets"] = verdict(row, original, reference, budget)
            print(
                f"{split:9} {name:8} forget {row['forget']:.3f} held-out {row['forget_heldout']:.3f} "
                f"retain {row['retain']:.3f} neighbours {row.get('neighbours', float('nan')):.3f} "
                f"loss {row['heldout_loss']:.3f} {row['seconds']:6.1f}s {row['peak_rss_mb']} MB  (retain model forget "
                f"{reference['forget']:.3f}, budget {budget:.0f}s)",
                flush=True,
            )
        order = list(METHODS)
        block["methods"].sort(key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
        out.append(block)
    out += [b for split, b in kept.items() if split not in splits]
    return out


def retime(h, methods) -> dict:
    """Time each table edit again, nothing else running in this process, and record it beside the first."""
    result = json.loads(OUT.read_text())
    for block in result["table"]:
        request = forget_request(h.world, block["split"])
        budget = block["budget_seconds"]
        for row in block["methods"]:
            if row["method"] not in methods:
                continue
            m = method(row["method"])
            t0 = time.perf_counter()
            m.editor(h, request, settings=m.make_settings(), apply=True, progress=False).revert(h.model)
            row["seconds_alone"] = round(time.perf_counter() - t0, 2)
            row["meets"]["under_2_percent_of_training"] = row["seconds_alone"] <= budget
            print(
                f"{block['split']:9} {row['method']:8} {row['seconds_alone']:6.1f}s (budget {budget:.0f}s)", flush=True
            )
    OUT.write_text(json.dumps(result, indent=1))
    return result


def remeasure_memory(methods, threads: int) -> dict:
    """Each table row's peak memory again, in its own process, the row's other figures kept.

    For rows from runs before memory was recorded: their figures and times stand, and timing
    them again beside other work would make the times worse than those measured alone.
    """
    result = json.loads(OUT.read_text())
    for block in result["table"]:
        for row in block["methods"]:
            if row["method"] not in methods or "error" in row:
                continue
            fresh = in_child(block["split"], row["method"], threads)
            if "error" in fresh:
                print(f"{block['split']:9} {row['method']:8} failed: {fresh['error'][-1:]}", flush=True)
                continue
            row["peak_rss_mb"], row["model_rss_mb"] = fresh["peak_rss_mb"], fresh["model_rss_mb"]
            print(f"{block['split']:9} {row['method']:8} {row['peak_rss_mb']} MB", flush=True)
            OUT.write_text(json.dumps(result, indent=1))
    return result


def sweep(h, split: str, methods) -> list[dict]:
    request = forget_request(h.world, split)
    rows = []
    for name in methods:
        field, values = METHODS[name].strength
        for v in values if field else ():
            row = one(h, request, name, SWEEP_FIGURES, **{field: v})
            row["strength"] = {field: v}
            rows.append(row)
            print(
                f"sweep {name:8} {field}={v:<8g} forget {row['forget']:.3f} retain {row['retain']:.3f} "
                f"{row['seconds']:.1f}s",
                flush=True,
            )
    return rows


def plot(rows: list[dict], reference: dict, original: dict, split: str) -> list[str]:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name in dict.fromkeys(r["method"] for r in rows):
        pts = [r for r in rows if r["method"] == name]
        fig.add_trace(
            go.Scatter(
                x=[r["forget"] for r in pts],
                y=[r["retain"] for r in pts],
                mode="lines+markers",
                name=name,
                text=[", ".join(f"{k}={v:g}" for k, v in r["strength"].items()) for r in pts],
                hovertemplate="%{text}<br>forget %{x:.3f}<br>retain %{y:.3f}",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[reference["forget"]],
            y=[reference["retain"]],
            mode="markers",
            name="retain model",
            marker=dict(symbol="star", size=16, color="black"),
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[original["forget"]],
            y=[original["retain"]],
            mode="markers",
            name="original",
            marker=dict(symbol="x", size=12, color="grey"),
        )
    )
    fig.update_layout(
        title=f"Unlearning {split}: forget vs retain accuracy over each method's strength",
        xaxis_title="forget accuracy (lower is better)",
        yaxis_title="retain accuracy",
        template="plotly_white",
        width=900,
        height=600,
    )
    written = [str(RESULTS / "unlearning_pareto.html")]
    fig.write_html(written[0], include_plotlyjs=True)
    try:
        fig.write_image(RESULTS / "unlearning_pareto.png")
        written.append(str(RESULTS / "unlearning_pareto.png"))
    except Exception as e:  # noqa: BLE001 - a PNG needs kaleido and a browser; the HTML is the record
        print(f"no PNG: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default=",".join(SPLITS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--sweep-split", default="forget05")
    ap.add_argument(
        "--only",
        choices=("table", "sweep", "time", "memory"),
        help="Run one part; the others are kept from the last run. 'time' re-times the table's "
        "edits alone (no scoring), for when the table ran beside other work; 'memory' measures "
        "the rows' peak memory again, keeping their other figures.",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv or [])
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if args.only == "memory":
        return remeasure_memory(methods, args.threads)
    h = workbench.load("world", device="cpu")
    if args.only == "time":
        return retime(h, methods)
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    result["threads"] = args.threads
    if args.only != "sweep":
        rows = table(h, args.splits.split(","), methods, args.threads, result.get("table"))
        result.update(figures=FIGURES.__dict__, table=rows)
        OUT.write_text(json.dumps(result, indent=1))
    if args.only != "table":
        request = forget_request(h.world, args.sweep_split)
        reference, _ = reference_figures(h, request, SWEEP_FIGURES)
        earlier = result.get("sweep", {})
        rows = [r for r in earlier.get("rows", []) if r["method"] not in methods]
        if earlier.get("split") not in (None, args.sweep_split):
            rows = []
        rows += sweep(h, args.sweep_split, methods)
        order = list(METHODS)
        rows.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
        result["sweep"] = {
            "split": args.sweep_split,
            "figures": SWEEP_FIGURES.__dict__,
            "rows": rows,
            "retain_model": _round(reference),
            "plots": plot(rows, reference, forget_figures(h, request, SWEEP_FIGURES), args.sweep_split),
        }
    merged = result
    OUT.write_text(json.dumps(merged, indent=1))
    return merged


if __name__ == "__main__":
    main(sys.argv[1:])
