"""Peak memory of every text-capable unlearning method on a 124M-parameter model.

The Fisher-based methods (SSD, and GA, gradiff and NPO through their default Fisher mask) take
per-example gradients of every parameter; a chunk of 32 examples of GPT-2 small holds 16 GB of
them. This builds a random-weight GPT-2 small (12 layers, 768 wide, 50,257-token vocabulary,
1,024 positions) over a byte tokenizer, asks it to forget 10 texts of about 40 tokens while
keeping 10 others, and runs each method of ``edit.forget.METHODS`` that takes texts in a fresh
subprocess, so that the child's peak resident set (``ru_maxrss``, from ``os.wait4``) is that
method's alone. SSD runs twice: with the Fisher chunk sized by its memory budget (the default)
and with ``batch_size=32`` given explicitly (the chunk every model used before the budget). Step
counts are cut so the whole run takes a few minutes; memory does not grow with steps.

Writes benchmarks/results/forget_memory.json and prints a markdown table.
Run: .venv/bin/python -m benchmarks.forget_memory
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from edit.forget import METHODS
from edit.forget_request import ForgetRequest
from edit.gradient_unlearn import GradientSettings
from edit.rmu import RmuSettings
from edit.ssd import SsdSettings
from locate.fisher import FisherScores, FisherSettings, chunk_size, fisher
from workbench.core.handle import ModelHandle

OUT = Path(__file__).parent / "results" / "forget_memory.json"
# (run name, method, Fisher chunk given explicitly or None for the budget's)
RUNS = (
    ("rmu", "rmu", None),
    ("ga", "ga", None),
    ("gradiff", "gradiff", None),
    ("npo", "npo", None),
    ("ssd", "ssd", None),
    ("ssd, batch_size=32", "ssd", 32),
)
CONFIG = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
N_TEXTS = 10
STEPS = 3


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level, no merges (one token per byte of plain text), BOS prepended: no download needed."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    raw = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(["[PAD]", "[BOS]", "[EOS]", *alphabet])}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]")


def texts(kind: str) -> tuple[str, ...]:
    """``N_TEXTS`` sentences of about 40 bytes (so about 40 tokens each)."""
    return tuple(f"{kind} {i:02d} lives in Town{i} and keeps bees." for i in range(N_TEXTS))


def gpt2_small() -> ModelHandle:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**CONFIG, bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval()
    return ModelHandle(model, byte_tokenizer(), "gpt2-small-random", "random init")


def settings(method: str):
    """The method's defaults with few steps (and retain checks only on the texts there are)."""
    if method == "rmu":
        return RmuSettings(steps=STEPS)
    if method == "ssd":
        return SsdSettings()
    return GradientSettings(method=method, steps=STEPS, check_every=STEPS, check_samples=N_TEXTS)


def ssd_scores(h, request: ForgetRequest, s: SsdSettings, batch_size: int) -> FisherScores:
    """SSD's two Fisher passes (forget in full, retain cut) with an explicit chunk size."""
    fs = FisherSettings(batch_size=batch_size, params=s.params, seed=s.seed, alpha=s.alpha, score="forget")
    forget = fisher(h, request.forget_data(), None, fs, progress=False)
    retain = fisher(h, request.retain_data(), None, replace(fs, max_examples=s.retain_examples), progress=False)
    target = {"forget": forget.target["forget"], "retain": retain.target["forget"]}
    return FisherScores(forget.forget, retain.forget, fs, h.sites, target, forget.n_forget, retain.n_forget)


def child(method: str, batch_size: int | None) -> dict:
    """Run one method on a fresh model in this process; the parent reads the peak RSS."""
    torch.set_num_threads(1)
    h = gpt2_small()
    request = ForgetRequest("texts", forget_texts=texts("Forget"), retain_texts=texts("Retain"))
    model_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = settings(method)
    t0 = time.perf_counter()
    if batch_size is None:
        edit = METHODS[method].editor(h, request, settings=s, progress=False)
    else:
        scores = ssd_scores(h, request, s, batch_size)
        edit = METHODS[method].editor(h, request, settings=s, progress=False, scores=scores)
    seconds = time.perf_counter() - t0
    # Both Fisher users here score every parameter (SSD's and the gradient methods' params="all").
    return {
        "seconds": round(seconds, 1),
        "model_rss_mb": round(model_rss / 1024),
        "tensors_edited": len(edit.names),
        "fisher_chunk": None if method == "rmu" else chunk_size(list(h.model.parameters()), batch_size),
        "tokens_per_text": len(h.tokenizer(request.forget_texts[0]).input_ids),
    }


def run(name: str, method: str, batch_size: int | None) -> dict:
    """One method in a fresh interpreter: its peak RSS (MB) and what it reported."""
    cmd = [sys.executable, "-m", "benchmarks.forget_memory", "child", method, str(batch_size or "")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{name} failed with exit code {proc.returncode}")
    # ru_maxrss is in kilobytes on Linux.
    row = {"run": name, "method": method, "peak_rss_mb": round(usage.ru_maxrss / 1024), **json.loads(out)}
    print(row, flush=True)
    return row


def table(rows: list[dict]) -> str:
    rmu = next(r["peak_rss_mb"] for r in rows if r["method"] == "rmu")
    lines = [
        "| run | Fisher chunk | peak RSS | x RMU | seconds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        chunk = "-" if r["fisher_chunk"] is None else r["fisher_chunk"]
        gb = r["peak_rss_mb"] / 1024
        lines.append(f"| {r['run']} | {chunk} | {gb:.2f} GB | {r['peak_rss_mb'] / rmu:.1f} | {r['seconds']} |")
    return "\n".join(lines)


def main() -> dict:
    t0 = time.perf_counter()
    rows = [run(*spec) for spec in RUNS]
    results = {
        "model": {"family": "gpt2", **CONFIG, "parameters": sum(p.numel() for p in gpt2_small().model.parameters())},
        "texts": {"forget": N_TEXTS, "retain": N_TEXTS},
        "steps": STEPS,
        "threads": 1,
        "runs": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(table(rows))
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]) if sys.argv[3] else None)))
    else:
        main()
