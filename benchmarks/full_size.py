"""Each step of the loop at full size on random weights of real configurations, with its peak memory.

On a 124M model the arithmetic, not the bookkeeping, dominates, so the world model's speed-ups
need not carry over. For GPT-2 small, Pythia-160m and a 12-layer GQA Llama (``tests/real_configs``,
random weights over a byte tokenizer, so a 12-byte prompt is about a 12-token BPE prompt) this
measures, side by side:

- ``trace``: causal trace of a 12-token prompt, all three components, 10 noise samples, batched
  (:func:`locate.causal_trace.trace`) against one forward per cell
  (:func:`~locate.causal_trace.trace_reference`) at the same grid, and attribution patching
  (:func:`locate.attribution_patching.attribute`) against that exact trace: time ratio and the
  Spearman correlation of the cells;
- ``covariance``: key statistics of one layer from 100k tokens of ordinary text (the repo's docs);
- ``rome``: seconds per edit with the key statistics cached, prefix reuse on (default) and off
  (the full-pass value optimisation);
- ``memit``: key statistics of its five layers, one pass per layer against one pass for all;
  then ``--memit-requests`` requests (default 100) at once over those layers with the statistics
  given, all values in one batch (default) against one request at a time;
- ``verify``: a quick text verification report on a 40-question TOFU-style forget set (and 40
  retain questions) against a reference model of the same configuration.

Each (model, step) runs in its own subprocess with two threads; a sampling thread records the
peak resident memory of each call beside the memory before it. Results are merged into
benchmarks/results/full_size.json after every step, so an interrupted run resumes where it
stopped (``--force`` redoes steps already there); a failing step records its last stderr lines.

Run: ``.venv/bin/python -m benchmarks.full_size [--models gpt2-small,...] [--steps trace,...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "full_size.json"
MODELS = ("gpt2-small", "pythia-160m", "llama-gqa")
STEPS = ("trace", "covariance", "rome", "memit", "verify")
THREADS = 2
LAYER = 5  # ROME's and the covariance's layer; MEMIT edits LAYER-2 .. LAYER+2
PROMPT, SUBJECT, OBJECT = "Ada went to", "Ada", " R"  # BOS + 11 bytes: a 12-token prompt
STATS_TOKENS = 100_000
TRACE_COMPONENTS = ("resid", "mlp", "attn")


# -- measuring ------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextmanager
def measured(into: dict, name: str):
    """Wall seconds, and peak resident memory sampled every 5 ms, of the block, under ``into[name]``."""
    before, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            done.wait(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - t0
        done.set()
        watcher.join()
        into[name] = {
            "seconds": round(seconds, 2),
            "rss_before_mb": round(before),
            "peak_rss_mb": round(max(peak[0], _rss_mb())),
        }


# -- data -----------------------------------------------------------------------------------
def user_text() -> list[str]:
    """Ordinary English text, about 100k bytes (one token each here): the docs, then world sentences."""
    from workbench.core.world.facts import make_world

    docs = [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]
    return docs + [" ".join(make_world().training_sentences())]


def requests(n: int, seed: int = 0):
    """``n`` rewrite requests on made-up subjects, prompts about 12 tokens, two-token targets."""
    from edit.request_files import request_from_fields

    rng = random.Random(seed)
    templates = ("{} went to", "{} plays", "{} lives in", "{} works at", "{} speaks")
    letters = "ABCDEFGHIJKLMNOPRSTUVWZ"
    out = []
    for i in range(n):
        name = rng.choice(letters) + "".join(rng.choice("aeioulnrst") for _ in range(3))
        new, true = (" " + rng.choice(letters) for _ in range(2))
        out.append(request_from_fields(f"{name}{i}", templates[i % len(templates)], new, true + "x"))
    return out


def tofu_items(n: int) -> tuple[list, list]:
    """``n`` forget and ``n`` retain questions of the shipped TOFU-style example files."""
    from workbench.core.data_files import read_qa
    from workbench.core.world.as_counterfact import EXAMPLES

    forget = read_qa(EXAMPLES / "tofu_forget05.json")[:n]
    retain = read_qa(EXAMPLES / "tofu_retain.json")[:n]
    return forget, retain


# -- steps (each in its own process) --------------------------------------------------------
def step_trace(h, per_cell: tuple[str, ...] = TRACE_COMPONENTS) -> dict:
    """The trace of all three components, timed batched; the per-cell reference on ``per_cell`` only.

    One forward per cell costs about 36 minutes on GPT-2 small for all three components; timing it on
    fewer components (against the batched trace of the same components) keeps a model's run short.
    """
    from scipy.stats import spearmanr

    from locate.attribution_patching import attribute
    from locate.causal_trace import TraceSettings, trace, trace_reference

    s, out = TraceSettings(samples=10), {"prompt_tokens": len(h.tokens(PROMPT))}
    with measured(out, "first_call"):  # one noise sample; it builds the hooked view, as a user's first trace does
        trace(h, PROMPT, SUBJECT, OBJECT, TraceSettings(samples=1))
    with measured(out, "batched"):
        fast = trace(h, PROMPT, SUBJECT, OBJECT, s)
    same = fast
    if per_cell != TRACE_COMPONENTS:
        with measured(out, "batched_same_components"):
            same = trace(h, PROMPT, SUBJECT, OBJECT, s, per_cell)
    with measured(out, "per_cell"):
        ref = trace_reference(h, PROMPT, SUBJECT, OBJECT, s, per_cell)
    with measured(out, "attribution"):
        approx = attribute(h, PROMPT, SUBJECT, OBJECT, s)
    out["cells"] = sum(v.numel() for v in fast.scores.values())
    out["per_cell_components"] = list(per_cell)
    out["per_cell_cells"] = sum(v.numel() for v in ref.scores.values())
    out["max_abs_diff_batched_vs_per_cell"] = max(
        float((same.scores[c] - ref.scores[c]).abs().max()) for c in ref.scores
    )
    baseline = out["batched" if same is fast else "batched_same_components"]["seconds"]
    out["speedup_batched"] = round(out["per_cell"]["seconds"] / baseline, 2)
    out["speedup_attribution_vs_batched"] = round(out["batched"]["seconds"] / out["attribution"]["seconds"], 2)
    # Cells the trace can move: at or after the subject's first token.
    first = fast.subject_span[0]
    pairs = [(fast.scores[c][first:].flatten(), approx.scores[c][first:].flatten()) for c in fast.scores]
    out["spearman_attribution"] = {
        c: round(float(spearmanr(a, b).statistic), 3) for c, (a, b) in zip(fast.scores, pairs, strict=True)
    }
    out["clean"], out["corrupted"] = fast.clean, fast.corrupted
    return out


def _layer(h) -> int:
    return min(LAYER, h.n_layers - 1)  # the suite's reduced models have two layers


def step_covariance(h) -> dict:
    from edit.covariance import key_statistics

    out: dict = {}
    with measured(out, "key_statistics"):
        stats = key_statistics(h, _layer(h), user_text(), samples=STATS_TOKENS, use_cache=False, progress=False)
    out["tokens"], out["layer"], out["d_key"] = stats.count, _layer(h), h.sites.d_mlp
    out["tokens_per_second"] = round(stats.count / out["key_statistics"]["seconds"])
    return out


def _settings(layer: int, reuse_prefix: bool):
    from edit.rome import RomeSettings
    from edit.values import ValueSettings

    return RomeSettings(layer=layer, token="subject_last", values=ValueSettings(reuse_prefix=reuse_prefix))


def step_rome(h, edits: int = 3) -> dict:
    from edit.covariance import key_statistics
    from edit.rome import rome

    texts, out = user_text(), {"edits_each": edits}
    with measured(out, "statistics_once"):
        key_statistics(h, _layer(h), texts, progress=False)  # cached on disk from here on
    reqs = requests(2 * edits + 1, seed=1)
    rome(h, reqs[0], settings=_settings(_layer(h), True), texts=texts).revert(
        h.model
    )  # contexts sampled once per model
    for reuse, name in ((True, "cached_prefix"), (False, "full_pass")):
        with measured(out, name):
            for r in reqs[1 + edits * (not reuse) : 1 + edits * (1 + (not reuse))]:
                rome(h, r, settings=_settings(_layer(h), reuse), texts=texts).revert(h.model)
        out[name]["seconds_per_edit"] = round(out[name]["seconds"] / edits, 2)
    out["speedup_cached_prefix"] = round(out["full_pass"]["seconds"] / out["cached_prefix"]["seconds"], 2)
    return out


def step_memit(h, n: int) -> dict:
    from dataclasses import replace

    from edit.covariance import key_statistics, layer_statistics
    from edit.memit import MemitSettings, memit

    texts, out = user_text(), {"requests": n}
    layers = tuple(sorted({min(max(layer, 0), h.n_layers - 1) for layer in range(LAYER - 2, LAYER + 3)}))
    # Not from the cache: an earlier run on the same seeded weights would have left the entries.
    with measured(out, "statistics_per_layer"):
        for layer in layers:
            key_statistics(h, layer, texts, use_cache=False, progress=False)
    with measured(out, "statistics"):  # what memit() does: every layer from one pass
        stats = layer_statistics(h, layers, texts, use_cache=False, progress=False)
    out["speedup_one_pass_statistics"] = round(out["statistics_per_layer"]["seconds"] / out["statistics"]["seconds"], 2)
    base = MemitSettings(layers=layers, token="subject_last")
    reqs = requests(n, seed=2)
    for batch, name in ((base.values.batch_requests, "values_batched"), (1, "values_one_by_one")):
        s = replace(base, values=replace(base.values, batch_requests=batch))
        with measured(out, name):
            e = memit(h, reqs, settings=s, texts=texts, statistics=stats, apply=False, progress=False)
        out[name]["value_batch"] = batch
        out[name]["seconds_per_request"] = round(out[name]["seconds"] / n, 3)
    out["layers"] = list(layers)
    out["speedup_batched_values"] = round(out["values_one_by_one"]["seconds"] / out["values_batched"]["seconds"], 2)
    out["tensors"] = len(e.names)
    return out


def step_verify(h, name: str, work: Path, reduced: bool) -> dict:
    from dataclasses import replace

    from real_configs import save_real_model

    from workbench.core.handle import load
    from workbench.verify.text_report import TextVerifySettings, verify_texts

    save_real_model(work / "reference", name, reduced=reduced, seed=1)
    forget, retain = tofu_items(40)
    out: dict = {"forget_items": len(forget), "retain_items": len(retain)}
    ref = load(str(work / "reference"), device="cpu")
    s = replace(TextVerifySettings.quick(), max_items=len(forget))
    with measured(out, "quick_report"):
        report = verify_texts(h, forget, retain, reference=ref, settings=s, progress=False)
    out["verdict"], out["checks"] = report.verdict, len(report.checks)
    return out


def child(
    name: str, step: str, memit_requests: int, reduced: bool = False, per_cell: tuple[str, ...] = TRACE_COMPONENTS
) -> dict:
    import torch
    from real_configs import save_real_model

    from workbench.core.handle import load

    torch.set_num_threads(THREADS)
    work = Path(tempfile.mkdtemp())
    os.environ["WORKBENCH_CACHE"] = str(work / "cache")  # nothing cached from an earlier run
    save_real_model(work / "model", name, reduced=reduced)
    out: dict = {}
    with measured(out, "load"):
        h = load(str(work / "model"), device="cpu")
    out["parameters"] = sum(p.numel() for p in h.model.parameters())
    if step == "trace":
        out.update(step_trace(h, per_cell))
    elif step == "covariance":
        out.update(step_covariance(h))
    elif step == "rome":
        out.update(step_rome(h))
    elif step == "memit":
        out.update(step_memit(h, memit_requests))
    else:
        out.update(step_verify(h, name, work, reduced))
    out["process_peak_rss_mb"] = _peak_rss_mb()
    return out


def _peak_rss_mb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--memit-requests", type=int, default=100)
    ap.add_argument(
        "--per-cell",
        default=",".join(TRACE_COMPONENTS),
        help="components the one-forward-per-cell trace is timed on (all three by default)",
    )
    ap.add_argument("--force", action="store_true", help="redo steps that already have results")
    ap.add_argument("--reduced", action="store_true", help="the suite's reduced sizes, into a scratch file")
    a = ap.parse_args()
    out = Path(tempfile.gettempdir()) / "full_size_reduced.json" if a.reduced else OUT
    results = json.loads(out.read_text()) if out.exists() else {}
    results["threads"] = THREADS
    per_cell = tuple(a.per_cell.split(","))
    for name in a.models.split(","):
        for step in a.steps.split(","):
            if not a.force and "error" not in results.get(name, {}).get(step, {"error": 1}):
                continue
            code = (
                "import json, sys; sys.path.insert(0, 'tests'); import benchmarks.full_size as b; "
                f"print(json.dumps(b.child({name!r}, {step!r}, {a.memit_requests}, {a.reduced}, {per_cell!r})))"
            )
            t0 = time.perf_counter()
            run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
            if run.returncode:
                got = {"error": run.stderr.strip().splitlines()[-15:], "exit": run.returncode}
            else:
                got = json.loads(run.stdout.strip().splitlines()[-1])
            got["wall_seconds"] = round(time.perf_counter() - t0, 1)
            # Above about 2 the step shared the two cores with other work: its seconds are upper bounds.
            got["load_average_at_end"] = round(os.getloadavg()[1], 2)
            results.setdefault(name, {})[step] = got
            print(name, step, json.dumps(got), flush=True)
            out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
