"""How many edits MEMIT's one edited layer holds: the edit count, and the width of the layer's keys.

The world models fetch a fact at layer 0's MLP at the prompt's last token, so MEMIT writes all
of a batch there, into keys of d_mlp = 512 dimensions. Its update is the least-squares map from
the edits' keys to fixed target vectors; a d_mlp-wide linear map can meet at most d_mlp
arbitrary targets, and beyond that every target is only partly written. This measures both
sides of that, on the requests of benchmarks/memit.py:

1. The shipped GPT-2 world model at 100 to 1,000 edits at once: CounterFact scores, and how much
   of its target each edit's update writes (the Edit's ``target_written``: the mean of
   (Delta k_i . r_i) / |r_i|^2).
2. GPT-2 world models trained exactly as the shipped one but with a wider MLP (not shipped:
   trained here once, 20-75 minutes each on one core, and kept under the statistics cache):
   1,000 edits at once (also with lambda 3 and 30), and 100 batches of 10, plain and in
   null-space mode, with MEMIT's lambda C kept in the solve (the default) and without it, as
   AlphaEdit (on the 2,048-wide, also with a tenth and a hundredth of AlphaEdit's threshold).
3. 1,000 edits at once with a column of MEMIT's solve per edit and context instead of one per
   edit (``MemitSettings.keys="each"``), on the shipped GPT-2 and Llama models and every width;
   and why it matters: how far each bare prompt's key lies from its contexts' mean key, how far
   apart MEMIT's update puts the two, and MEMIT keyed at the bare prompt alone.

4. A Llama world model 4,096 wide, trained the same way, in parts (10-15 minutes each on one
   core): 1,000 edits at once (keys "mean" and "each"), and 100 batches of 10, plain and in
   null-space mode: ``python -m benchmarks.memit_capacity llama 4096 at_once plain null_space``.

Writes benchmarks/results/memit_capacity.json. Run: .venv/bin/python -m benchmarks.memit_capacity
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

import workbench
from benchmarks.memit import sequential, simultaneous
from benchmarks.memit_bounds import BASE
from edit.key_states import mean_states
from edit.memit import memit
from edit.request import random_rewrites
from edit.rome import site_of, trace_location
from edit.values import contexts
from workbench.core.files import cache_dir
from workbench.core.world.train import TrainSettings, train

OUT = Path(__file__).parent / "results" / "memit_capacity.json"


def wide_model(d_mlp: int, arch: str = "gpt2") -> Path:
    """A world model of ``arch`` with ``d_mlp``-wide MLPs, trained with the shipped settings, cached."""
    out = cache_dir() / "wide-world-models" / f"{arch}-mlp{d_mlp}"
    if not (out / "world.json").exists():
        t0 = time.perf_counter()
        print(f"training a {arch} world model with d_mlp {d_mlp} (once; cached in {out})", flush=True)
        train(TrainSettings(arch=arch, d_mlp=d_mlp), out)
        print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def edit_counts(model: str, counts: tuple[int, ...], threads: int) -> dict:
    torch.set_num_threads(threads)
    h = workbench.load(model, device="cpu")
    reqs = random_rewrites(h.world, max(counts))
    out = {}
    for n in counts:
        out[n] = simultaneous(h, reqs[:n], BASE, progress=False)
        print(model, n, "edits", out[n], flush=True)
    return out


def wide(d_mlp: int, n: int, threads: int, thresholds: tuple[float, ...] = ()) -> dict:
    path = wide_model(d_mlp)
    torch.set_num_threads(threads)
    h = workbench.load(str(path), device="cpu")
    reqs = random_rewrites(h.world, n)
    out = header(h, path, reqs[0]) | at_once_rows(h, reqs)
    out["key_spread"] = key_spread(h, reqs)
    out |= plain_rows(h, reqs) | null_space_rows(h, reqs)
    out["lambda_sweep"] = lambda_sweep(h, reqs, (3.0, 30.0))
    if thresholds:  # a smaller null space (AlphaEdit's threshold is 1e-2 of the largest eigenvalue)
        out["sequential_null_space_alphaedit_thresholds"] = {
            th: sequential(h, reqs, BASE, 10, null_space=True, threshold=th, keep_statistics=False)["scores"]
            for th in thresholds
        }
    return out


def null_space_rows(h, reqs, keys_modes=("mean", "each"), keeps=(True, False)) -> dict:
    """100 batches of 10 in null-space mode: MEMIT's lambda C kept in the solve (the default) or
    not (AlphaEdit's solve), with keys "mean" and "each"."""
    out = {}
    for keys in keys_modes:
        tail = "_keys_each" if keys == "each" else ""
        for keep in keeps:
            mode = "" if keep else "_alphaedit"
            name = "sequential_null_space" + mode + tail
            out[name] = sequential(h, reqs, replace(BASE, keys=keys), 10, null_space=True, keep_statistics=keep)
            print(f"d_mlp {h.sites.d_mlp} {name}", out[name], flush=True)
    return out


def rerun_null_space(widths: tuple[int, ...], n: int = 1000, threads: int = 1) -> dict:
    """Only :func:`null_space_rows` on the given widths, into the results already written."""
    results = {}
    for d in widths:
        results = rows("gpt2", d, (null_space_rows,), n, threads)
    return results


def header(h, path: Path, req) -> dict:
    """What a wide model is: its width and size, how well it learned the world, where ``req``'s fact is fetched."""
    report = json.loads((path / "training_report.json").read_text())
    # The edits go where the shipped model's go (layer 0, last token); the trace says if that still holds.
    layer, token = site_of(trace_location(h, req), h.n_layers)
    return {
        "d_mlp": h.sites.d_mlp,
        "parameters": sum(p.numel() for p in h.model.parameters()),
        "facts_known": report["eval"]["all"],
        "heldout_loss": report["eval"]["heldout_loss"],
        "training_seconds": report.get("train_seconds"),
        "traced_site": {"layer": layer, "token": token},
    }


def at_once_rows(h, reqs) -> dict:
    """1,000 edits at once, keys "mean" (the default) and "each"."""
    out = {"simultaneous": simultaneous(h, reqs, BASE, progress=False)}
    print(f"d_mlp {h.sites.d_mlp} simultaneous", out["simultaneous"], flush=True)
    return out | {"simultaneous_keys_each": keys_each(h, reqs)}


def plain_rows(h, reqs) -> dict:
    """100 batches of 10, plain MEMIT."""
    out = {"sequential_plain": sequential(h, reqs, BASE, 10, null_space=False)}
    print(f"d_mlp {h.sites.d_mlp} sequential plain", out, flush=True)
    return out


def rows(arch: str, d_mlp: int, makes, n: int = 1000, threads: int = 1) -> dict:
    """Each ``make(h, requests)``'s rows for the ``arch`` model ``d_mlp`` wide, merged into the
    results already written as each ends (another run may be writing other rows meanwhile, so
    they are read last)."""
    torch.set_num_threads(threads)
    path = wide_model(d_mlp, arch)
    h = workbench.load(str(path), device="cpu")
    reqs = random_rewrites(h.world, n)
    name, first = f"{arch}_mlp{d_mlp}", header(h, path, reqs[0])
    results = {}
    for make in makes:
        new = first | make(h, reqs)
        results = json.loads(OUT.read_text())
        results[name] = results.get(name, {}) | new
        OUT.write_text(json.dumps(results, indent=1))
    return results


def keys_each(h, reqs) -> dict:
    """1,000 edits at once with a column of the solve per edit and context (MemitSettings.keys="each")."""
    out = simultaneous(h, reqs, replace(BASE, keys="each"), progress=False)
    print("keys each", out, flush=True)
    return out


def key_spread(h, reqs) -> dict:
    """How far the bare prompt's key lies from the contexts' mean key, and how far apart MEMIT's update puts them.

    Efficacy and paraphrase are scored on bare prompts; MEMIT writes each target at the mean key.
    Also: MEMIT keyed (and valued) at the bare prompt alone, with no contexts.
    """
    ctxs = contexts(h, BASE.contexts, BASE.context_length, BASE.seed)
    path = h.sites.key_module_path(0)
    k_mean = mean_states(h, reqs, "last", ctxs, path, "input")
    k_bare = mean_states(h, reqs, "last", [""], path, "input")
    e = memit(h, reqs, settings=BASE, progress=False, apply=False)
    (delta,) = e.deltas.values()
    d = delta.tensor().double()
    d = d.T if h.sites.weight_is_transposed() else d  # [d_model, d_mlp]
    at_mean, at_bare = k_mean @ d.T, k_bare @ d.T
    out = {
        "key_distance_median": float(((k_bare - k_mean).norm(dim=-1) / k_mean.norm(dim=-1)).median()),
        "update_difference_median": float(((at_bare - at_mean).norm(dim=-1) / at_mean.norm(dim=-1)).median()),
        "bare_prompt_only": simultaneous(h, reqs, replace(BASE, contexts=0), progress=False)["scores"],
    }
    print("key spread", out, flush=True)
    return out


def lambda_sweep(h, reqs, weights: tuple[float, ...]) -> dict:
    """1,000 edits at once with other lambdas (the shipped default is 10)."""
    out = {}
    for lam in weights:
        out[lam] = simultaneous(h, reqs, replace(BASE, mom2_weight=lam), progress=False)["scores"]
        print("lambda", lam, out[lam], flush=True)
    return out


def main(
    n: int = 1000, threads: int = 2, widths: tuple[int, ...] = (1024, 2048, 4096), thresholds_at: int = 2048
) -> dict:
    results = {"threads": threads, "shipped_gpt2": edit_counts("world", (100, 200, 300, 500, 700, n), threads)}
    for model, name in (("world", "shipped_gpt2"), ("world:llama", "shipped_llama")):
        h = workbench.load(model, device="cpu")
        reqs = random_rewrites(h.world, n)
        results[f"{name}_keys_each"] = keys_each(h, reqs)
        results[f"{name}_key_spread"] = key_spread(h, reqs)
    # The threshold runs take 4 minutes each on the 2,048-wide model alone.
    results |= {f"gpt2_mlp{d}": wide(d, n, threads, (1e-3, 1e-4) if d == thresholds_at else ()) for d in widths}
    OUT.parent.mkdir(exist_ok=True)
    # Rows run by parts (the Llama model's) are not rerun here; they stay.
    kept = json.loads(OUT.read_text()) if OUT.exists() else {}
    OUT.write_text(json.dumps(kept | results, indent=1))
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["null_space"]:  # python -m benchmarks.memit_capacity null_space 1024 2048
        rerun_null_space(tuple(int(a) for a in sys.argv[2:]))
    elif sys.argv[1:2] == ["llama"]:  # python -m benchmarks.memit_capacity llama 4096 at_once plain
        parts = {
            "at_once": at_once_rows,
            "plain": plain_rows,
            "null_space": partial(null_space_rows, keys_modes=("mean",), keeps=(True,)),
        }
        # each part is 5-15 minutes on one core at 4,096
        rows("llama", int(sys.argv[2]), [parts[p] for p in sys.argv[3:]])
    else:
        main(*(int(a) for a in sys.argv[1:3]))
