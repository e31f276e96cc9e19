"""Attribution patching against exact causal tracing on many facts of the default world.

For each fact: the exact trace (batched) and its gradient estimate, compared cell by cell with
Spearman's rank correlation over every (component, token, layer), plus how much of the best
exact effect the estimate's best site has. Speed: attribution for all facts in shared passes
(``attribute_many``), one fact at a time (``attribute``), the batched exact trace, and the
one-forward-per-cell reference loop (timed on a subset: it is slow).

Writes benchmarks/results/attribution_patching.json. Run: .venv/bin/python -m benchmarks.attribution_patching
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

import workbench
from locate.attribution_patching import attribute, attribute_many
from locate.causal_trace import TRACE_COMPONENTS, TraceSettings, trace, trace_reference

OUT = Path(__file__).parent / "results" / "attribution_patching.json"


def facts(world, per_relation: int) -> list[tuple[str, str, str]]:
    out = []
    for relation in world.relations:
        phrasings = world.phrasings(relation, held_out=None)
        for i, f in enumerate(world.facts(relations=[relation])[:per_relation]):
            out.append((phrasings[i % len(phrasings)].prompt(f.subject), f.subject, f.object))
    return out


def _flat(r) -> torch.Tensor:
    return torch.cat([r.scores[c].flatten() for c in TRACE_COMPONENTS])


def _compare(exact, approx) -> dict:
    x, y = _flat(exact), _flat(approx)
    per_comp = {c: spearmanr(exact.scores[c].flatten(), approx.scores[c].flatten()).statistic for c in TRACE_COMPONENTS}
    top5 = set(x.topk(5).indices.tolist()) & set(y.topk(5).indices.tolist())
    # Several sites often restore the whole effect (ties at the top), so instead of "same argmax"
    # ask how much of the best exact effect the estimate's best site really has.
    best = float(x.max()) - exact.corrupted
    captured = (float(x[int(y.argmax())]) - exact.corrupted) / best if best > 0 else 1.0
    return {
        "spearman": float(spearmanr(x, y).statistic),
        "spearman_by_component": per_comp,
        "best_site_captures": captured,
        "top5_overlap": len(top5) / 5,
    }


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(h, corruption: str, per_relation: int, reference_facts: int) -> dict:
    settings = TraceSettings(corruption=corruption)
    fs = facts(h.world, per_relation)
    exact, t_exact = _timed(lambda: [trace(h, *f, settings) for f in fs])
    many, t_many = _timed(lambda: attribute_many(h, fs, settings))
    _, t_one = _timed(lambda: [attribute(h, *f, settings) for f in fs])
    _, t_ref = _timed(lambda: [trace_reference(h, *f, settings) for f in fs[:reference_facts]])
    rows = [dict(_compare(e, a), prompt=f[0], object=f[2]) for f, e, a in zip(fs, exact, many, strict=True)]
    rho = [r["spearman"] for r in rows]
    n = len(fs)
    per_fact = {
        "exact_batched": t_exact / n,
        "exact_reference": t_ref / reference_facts,
        "attribution_one_at_a_time": t_one / n,
        "attribution_shared_passes": t_many / n,
    }
    return {
        "corruption": corruption,
        "facts": n,
        "samples": settings.samples if corruption == "noise" else 1,
        "spearman_mean": statistics.mean(rho),
        "spearman_median": statistics.median(rho),
        "spearman_min": min(rho),
        "spearman_by_component_mean": {
            c: statistics.mean(r["spearman_by_component"][c] for r in rows) for c in TRACE_COMPONENTS
        },
        "best_site_captures_mean": statistics.mean(r["best_site_captures"] for r in rows),
        "top5_overlap_mean": statistics.mean(r["top5_overlap"] for r in rows),
        "seconds_per_fact": per_fact,
        "speedup": {
            "vs_exact_batched": per_fact["exact_batched"] / per_fact["attribution_shared_passes"],
            "vs_exact_reference": per_fact["exact_reference"] / per_fact["attribution_shared_passes"],
            "one_at_a_time_vs_exact_batched": per_fact["exact_batched"] / per_fact["attribution_one_at_a_time"],
        },
        "facts_detail": rows,
    }


def main(threads: int = 1, per_relation: int = 20, reference_facts: int = 6) -> dict:
    torch.set_num_threads(threads)
    h = workbench.load("world", device="cpu")
    f = facts(h.world, 1)[0]
    trace(h, *f, TraceSettings(samples=1))  # warm-up: views are built lazily
    attribute(h, *f, TraceSettings(samples=1))
    results = {"threads": threads}
    for corruption in ("noise", "counterfactual"):
        r = results[corruption] = run(h, corruption, per_relation, reference_facts)
        s = r["seconds_per_fact"]
        print(
            f"{corruption}: {r['facts']} facts; Spearman mean {r['spearman_mean']:.3f} (median "
            f"{r['spearman_median']:.3f}, min {r['spearman_min']:.3f}); by component "
            + ", ".join(f"{c} {v:.3f}" for c, v in r["spearman_by_component_mean"].items())
            + f"; the estimate's best site has {r['best_site_captures_mean']:.0%} of the best exact effect; "
            f"top-5 overlap {r['top5_overlap_mean']:.0%}"
        )
        print(
            f"  s/fact: exact reference {s['exact_reference']:.3f}, exact batched {s['exact_batched']:.4f}, "
            f"attribution alone {s['attribution_one_at_a_time']:.4f}, shared {s['attribution_shared_passes']:.4f}; "
            f"speed-up {r['speedup']['vs_exact_batched']:.1f}x vs batched, "
            f"{r['speedup']['vs_exact_reference']:.0f}x vs reference"
        )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
