"""MEMIT on the world models: 1,000 simultaneous edits, batched vs one-by-one values, sequential editing.

1. Simultaneous: 1,000 rewrites of distinct random facts in one call; CounterFact scores and time.
2. Values: the same 1,000 edits with every request's target optimised on its own against all of
   them in shared batches: time and quality; and one by one with every token run at every step,
   as the original MEMIT code does (the batched runs a row's prefix once). The speed-ups compare
   the value optimisation alone, the least of two interleaved rounds of each way.
3. Sequential: 1,000 rewrites in 100 batches of 10, each batch on the model the previous ones
   left, plain and in null-space mode (with MEMIT's lambda C kept in the solve, the default, and
   without, as AlphaEdit); scores of all 1,000 at the end. Key statistics are the base model's
   throughout. The null-space threshold is swept, beside how much of the preserved keys' energy
   and of the edits' keys' energy each threshold's null space holds.
A lambda sweep on 1,000 edits records how the trade-off between edits and neighbours moves;
the same at 100 and 300 edits, spread over every layer, and the spectrum of the 1,000 edits'
keys, record where one layer's keys run out.

Writes benchmarks/results/memit.json. Run: .venv/bin/python -m benchmarks.memit
(``python -m benchmarks.memit sequential``: the sequential rows alone, into the file as it is).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import workbench
from edit.counterfact import score_requests
from edit.covariance import key_statistics
from edit.key_states import mean_states
from edit.memit import MemitSettings, memit
from edit.memit_batches import memit_batches
from edit.null_space import NullSpace
from edit.request import random_rewrites
from edit.values import ValueSettings, contexts, optimise_values, statistics_position

OUT = Path(__file__).parent / "results" / "memit.json"
# Null-space thresholds (eigenvalues of C below this x the largest): 1e-2 is NullSpace's default.
THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-4)


def brief(s: dict) -> dict:
    return {k: {"prob": round(v["prob"], 4), "accuracy": round(v["accuracy"], 4)} for k, v in s.items()}


def simultaneous(h, reqs, settings: MemitSettings, **memit_args) -> dict:
    t0 = time.perf_counter()
    e = memit(h, reqs, settings=settings, **memit_args)
    seconds = time.perf_counter() - t0
    scores = score_requests(h, reqs)
    e.revert(h.model)
    return {
        "scores": brief(scores),
        "seconds": seconds,
        "value_seconds": e.metrics["value_seconds"],
        "layers": e.settings["layers"],
        "token": e.settings["token"],
        "target_written": e.metrics["target_written"],
        "relative_update_norm": {n: round(v, 3) for n, v in e.metrics["relative_update_norm"].items()},
    }


def sequential(
    h,
    reqs,
    settings: MemitSettings,
    batch: int,
    null_space: bool,
    threshold: float = 1e-2,
    keep_statistics: bool = True,
) -> dict:
    ns = (
        NullSpace.for_layers(
            h,
            list(settings.layers),
            position=statistics_position(settings.token),
            threshold=threshold,
            keep_statistics=keep_statistics,
        )
        if null_space
        else None
    )
    t0 = time.perf_counter()
    e = memit_batches(h, reqs, batch, settings, null_space=ns, progress=False)
    seconds = time.perf_counter() - t0
    scores = score_requests(h, reqs)
    e.revert(h.model)
    return {"scores": brief(scores), "seconds": seconds, "batches": e.metrics["batches"], "batch": batch}


def value_timings(
    h,
    reqs,
    ways: dict[str, MemitSettings],
    rounds: int = 2,
    first: dict[str, float] | None = None,
    values: dict | None = None,
) -> dict:
    """Seconds of the value optimisation alone, each way once a round, the ways interleaved.

    The least of each way's times is the one compared: other load on the machine only ever adds
    to a time, and interleaving keeps a slow spell from landing on one way alone. ``first``: a
    round already timed (the quality runs' ``value_seconds``, run one way after another), which
    counts as one of the ``rounds``. ``values``: filled with each way's last result.
    """
    times: dict[str, list[float]] = {k: [first[k]] if first else [] for k in ways}
    for _ in range(rounds - bool(first)):
        for k, settings in ways.items():
            ctxs = contexts(h, settings.contexts, settings.context_length, settings.seed)
            _sync(h.device)
            t0 = time.perf_counter()
            v = optimise_values(h, settings.layers[-1], reqs, settings.token, ctxs, settings.values, progress=False)
            _sync(h.device)
            times[k].append(time.perf_counter() - t0)
            if values is not None:
                values[k] = v
    return {"seconds": times, "best": {k: min(t) for k, t in times.items()}, "rounds": rounds}


def _sync(device) -> None:
    # A GPU runs kernels asynchronously: a time is only taken once they have finished.
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def key_spectrum(h, reqs, settings: MemitSettings, layer: int) -> dict:
    """How many directions the edits' keys (and the preserved keys' C) really use at ``layer``."""
    keys = mean_states(
        h,
        reqs,
        settings.token,
        contexts(h, settings.contexts, settings.context_length, settings.seed),
        h.sites.key_module_path(layer),
        "input",
    )
    energy = torch.linalg.svdvals(keys).pow(2).cumsum(0)
    energy /= energy[-1].clone()
    c = key_statistics(h, layer, progress=False, position=statistics_position(settings.token)).second_moment
    vals, vecs = torch.linalg.eigh(c.double())
    ns = NullSpace.for_layers(h, [layer], position=statistics_position(settings.token))
    share = {}
    for threshold in THRESHOLDS:
        small = vecs[:, vals < threshold * vals.max()]
        # A null space protects preserved keys only if the edits' keys reach into it more than they do.
        share[threshold] = {
            "directions": small.shape[1],
            "preserved_energy": float(vals[vals < threshold * vals.max()].sum() / vals.sum()),
            "edit_key_energy": float(((keys.double() @ small).pow(2).sum(-1) / keys.double().pow(2).sum(-1)).mean()),
        }
    return {
        "key_dim": keys.shape[1],
        "edits": keys.shape[0],
        "directions_for_99pct_of_key_energy": int((energy < 0.99).sum()) + 1,
        "directions_for_999pct_of_key_energy": int((energy < 0.999).sum()) + 1,
        "c_eigenvalues_below_threshold": int((vals < ns.threshold * vals.max()).sum()),
        "null_space_rank": int(torch.linalg.matrix_rank(ns.projection(layer))),
        "energy_in_null_space": share,
    }


def value_ways(base: MemitSettings) -> dict[str, MemitSettings]:
    """The value optimisation three ways: batched; one request at a time with the same prefix reuse;
    and one at a time with every token of every row run each step, as the original MEMIT code does."""
    one = replace(base, values=ValueSettings(reference="resid", batch_requests=1))
    return {
        "batched": base,
        "one_by_one": one,
        "one_by_one_full_passes": replace(one, values=replace(one.values, reuse_prefix=False)),
    }


def sequential_rows(model: str, h, reqs, base: MemitSettings) -> dict:
    """100 batches of 10: plain, and in null-space mode with lambda C kept (the default) and
    without it (AlphaEdit's solve), each over the thresholds."""
    out = {"sequential_plain": sequential(h, reqs, base, 10, null_space=False)}
    print(model, "sequential plain", out["sequential_plain"], flush=True)
    for keep, suffix in ((True, ""), (False, "_alphaedit")):
        out["sequential_null_space" + suffix] = sequential(h, reqs, base, 10, null_space=True, keep_statistics=keep)
        print(model, "sequential null space" + suffix, out["sequential_null_space" + suffix], flush=True)
        out["null_space_thresholds" + suffix] = {
            th: sequential(h, reqs, base, 10, null_space=True, threshold=th, keep_statistics=keep)["scores"]
            for th in THRESHOLDS
            if th != 1e-2
        }
        print(model, "null-space thresholds" + suffix, out["null_space_thresholds" + suffix], flush=True)
    return out


def rerun_sequential(n: int = 1000, threads: int = 2, models=("world", "world:llama")) -> dict:
    """Only the sequential rows, into the results already written (the other rows' code is unchanged)."""
    results = json.loads(OUT.read_text())
    for model in models:
        torch.set_num_threads(threads)
        h = workbench.load(model, device="cpu")
        reqs = random_rewrites(h.world, n)
        base = MemitSettings(layers=(0,), token="last")
        memit(h, reqs[:2], settings=base).revert(h.model)  # warm-up, as in run()
        results[model] |= sequential_rows(model, h, reqs, base)
        OUT.write_text(json.dumps(results, indent=1))
    return results


def run(model: str, n: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    h = workbench.load(model, device="cpu")
    reqs = random_rewrites(h.world, n)
    base = MemitSettings(layers=(0,), token="last")
    memit(h, reqs[:2], settings=base).revert(h.model)  # warm-up: statistics cached, contexts sampled
    out = {"model": model, "edits": n, "threads": threads}
    out["simultaneous"] = simultaneous(h, reqs, base)
    print(model, "simultaneous", out["simultaneous"], flush=True)
    ways = value_ways(base)
    out["values_one_by_one"] = simultaneous(h, reqs, ways["one_by_one"])
    print(model, "one by one", out["values_one_by_one"], flush=True)
    out["values_one_by_one_full_passes"] = simultaneous(h, reqs, ways["one_by_one_full_passes"])
    print(model, "one by one, full passes", out["values_one_by_one_full_passes"], flush=True)
    quality_runs = {
        "batched": "simultaneous",
        "one_by_one": "values_one_by_one",
        "one_by_one_full_passes": "values_one_by_one_full_passes",
    }
    out["value_timings"] = value_timings(
        h, reqs, ways, first={k: out[q]["value_seconds"] for k, q in quality_runs.items()}
    )
    best = out["value_timings"]["best"]
    out["values_speedup"] = best["one_by_one"] / best["batched"]
    out["values_speedup_vs_full_passes"] = best["one_by_one_full_passes"] / best["batched"]
    print(model, "value timings", out["value_timings"], flush=True)
    out |= sequential_rows(model, h, reqs, base)
    out["key_spectrum"] = key_spectrum(h, reqs, base, 0)
    print(model, "key spectrum", out["key_spectrum"], flush=True)
    out["fewer_edits"] = {k: simultaneous(h, reqs[:k], base)["scores"] for k in (100, 300)}
    print(model, "fewer edits", out["fewer_edits"], flush=True)
    out["every_layer"] = simultaneous(h, reqs, replace(base, layers=tuple(range(h.n_layers))))
    print(model, "every layer", out["every_layer"], flush=True)
    out["lambda_sweep"] = {}
    for lam in (1.0, 3.0, 30.0, 100.0):
        r = simultaneous(h, reqs, replace(base, mom2_weight=lam))
        out["lambda_sweep"][lam] = r["scores"]
        print(model, "lambda", lam, r["scores"], flush=True)
    return out


def write_results(run_model, out: Path, n: int, threads: int, models: tuple[str, ...]) -> dict:
    """``run_model(model, n, threads)`` for each model, written to ``out`` as JSON."""
    results = {m: run_model(m, n, threads) for m in models}
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return results


def main(n: int = 1000, threads: int = 2, models=("world", "world:llama")) -> dict:
    return write_results(run, OUT, n, threads, models)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sequential"]:
        rerun_sequential(*(int(a) for a in sys.argv[2:4]))
    else:
        main(*(int(a) for a in sys.argv[1:3]))
