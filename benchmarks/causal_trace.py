"""Causal tracing: the batched trace against the one-forward-per-cell reference and nnsight.

On facts of the default world (one per relation, trained and held-out phrasings), every grid of
the batched trace must equal the reference loop's, and the batched trace should be at least 10x
faster. Also records where the peaks lie, averaged over the facts.

Writes benchmarks/results/causal_trace.json. Run: .venv/bin/python -m benchmarks.causal_trace
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

import workbench
from locate.causal_trace import TraceSettings, trace, trace_nnsight, trace_reference

OUT = Path(__file__).parent / "results" / "causal_trace.json"


def facts(world, per_relation: int = 2) -> list[tuple[str, str, str]]:
    out = []
    for relation in world.relations:
        for i, f in enumerate(world.facts(relations=[relation])[:per_relation]):
            held = world.phrasings(relation, held_out=True)
            phrasing = held[i % len(held)] if i % 2 else world.phrasings(relation)[i]
            out.append((phrasing.prompt(f.subject), f.subject, f.object))
    return out


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main(threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    h = workbench.load("world", device="cpu")
    settings = TraceSettings()  # ROME's defaults: 10 noise samples, 3x the embedding std
    rows, times = [], {"batched": 0.0, "reference": 0.0, "nnsight": 0.0}
    subject_vs_last = {c: [0.0, 0.0] for c in ("resid", "mlp", "attn")}
    trace(h, *facts(h.world)[0], TraceSettings(samples=1))  # warm-up: views are built lazily
    trace_nnsight(h, *facts(h.world)[0], TraceSettings(samples=1))
    for fact in facts(h.world):
        fast, t_fast = _timed(trace, h, *fact, settings)
        ref, t_ref = _timed(trace_reference, h, *fact, settings)
        nn, t_nn = _timed(trace_nnsight, h, *fact, settings)
        times["batched"] += t_fast
        times["reference"] += t_ref
        times["nnsight"] += t_nn
        diff = max(float((fast.scores[c] - ref.scores[c]).abs().max()) for c in fast.scores)
        diff_nn = max(float((fast.scores[c] - nn.scores[c]).abs().max()) for c in fast.scores)
        subj_last = fast.subject_span[1] - 1
        row = {
            "prompt": fact[0],
            "object": fact[2],
            "clean": fast.clean,
            "corrupted": fast.corrupted,
            "max_abs_diff_reference": diff,
            "max_abs_diff_nnsight": diff_nn,
            "seconds": {"batched": t_fast, "reference": t_ref, "nnsight": t_nn},
        }
        for c in fast.scores:
            ie = fast.indirect_effect(c)
            t, layer = divmod(int(ie.argmax()), ie.shape[1])
            row[f"peak_{c}"] = {
                "token": t,
                "token_is": "last" if t == len(fast.tokens) - 1 else "subject_last" if t == subj_last else "other",
                "layer": layer,
                "effect": float(ie[t, layer]),
            }
            subject_vs_last[c][0] += float(ie[subj_last].max())
            subject_vs_last[c][1] += float(ie[-1].max())
        rows.append(row)
    n = len(rows)
    summary = {
        "facts": n,
        "settings": {"samples": settings.samples, "noise": settings.noise, "window": settings.window},
        "threads": threads,
        "max_abs_diff_reference": max(r["max_abs_diff_reference"] for r in rows),
        "max_abs_diff_nnsight": max(r["max_abs_diff_nnsight"] for r in rows),
        "seconds_per_fact": {k: v / n for k, v in times.items()},
        "speedup_batched_vs_reference": times["reference"] / times["batched"],
        "mean_best_effect_at": {
            c: {"subject_last_token": v[0] / n, "last_token": v[1] / n} for c, v in subject_vs_last.items()
        },
        "peak_positions": {
            c: {k: sum(r[f"peak_{c}"]["token_is"] == k for r in rows) for k in ("subject_last", "last", "other")}
            for c in ("resid", "mlp", "attn")
        },
        "peak_layers": {
            c: [sum(r[f"peak_{c}"]["layer"] == layer for r in rows) for layer in range(h.n_layers)]
            for c in ("resid", "mlp", "attn")
        },
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"summary": summary, "facts": rows}, indent=1))
    s = summary
    print(f"{n} facts, {settings.samples} noise samples, {threads} thread(s)")
    print(
        f"batched {s['seconds_per_fact']['batched']:.3f} s/fact, reference {s['seconds_per_fact']['reference']:.3f}, "
        f"nnsight {s['seconds_per_fact']['nnsight']:.3f}; batched is {s['speedup_batched_vs_reference']:.1f}x "
        f"faster than the reference"
    )
    print(f"largest difference: reference {s['max_abs_diff_reference']:.2e}, nnsight {s['max_abs_diff_nnsight']:.2e}")
    for c, v in s["mean_best_effect_at"].items():
        print(
            f"{c:>5}: mean best effect at subject's last token {v['subject_last_token']:.3f}, at the last token "
            f"{v['last_token']:.3f}; peaks {s['peak_positions'][c]}, by layer {s['peak_layers'][c]}"
        )
    return summary


if __name__ == "__main__":
    main()
