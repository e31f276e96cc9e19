"""What a wider default world model would cost: the same work on world models of each MLP width.

MEMIT's bars at 1,000 edits are met only on world models far wider than the shipped ones
(`memit_capacity`: 4,096-wide MLPs on GPT-2). Making such a model the default means every test,
demo and benchmark runs it. This times, on the CPU, what they run most (scoring every fact,
value optimisation, a training step), for both architectures at d_mlp 512 (shipped), 2,048 and
4,096. The cost of a pass does not depend on the weights, so the models are randomly
initialised with the shipped settings; value optimisation runs a fixed number of steps (no early
stop) so that every width does the same work.

Writes benchmarks/results/world_width.json and prints a markdown table.
Run: .venv/bin/python -m benchmarks.world_width
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

import workbench
from edit.request import random_rewrites
from edit.values import ValueSettings, contexts, optimise_values
from workbench.core.handle import ModelHandle
from workbench.core.world.train import TrainSettings, model_config

OUT = Path(__file__).parent / "results" / "world_width.json"
WIDTHS = (512, 2048, 4096)


def least_seconds(run, rounds: int) -> float:
    """The least of ``rounds`` timings of ``run()``: other load on the machine only ever adds to a time."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def costs(shipped, d_mlp: int, edits: int = 64, rounds: int = 2, facts: int | None = None) -> dict:
    """Seconds of each operation on a randomly initialised world model of ``shipped``'s family, ``d_mlp`` wide.

    ``facts``: score only the first this many of the world's facts (all by default).
    """
    torch.manual_seed(0)
    arch = shipped.sites.family  # "gpt2" or "llama", as TrainSettings names them
    config = model_config(TrainSettings(arch=arch, d_mlp=d_mlp), shipped.tokenizer)
    model = AutoModelForCausalLM.from_config(config).eval()
    h = ModelHandle(
        model=model, tokenizer=shipped.tokenizer, name=f"{arch}-mlp{d_mlp}", source="random init", world=shipped.world
    )
    facts = h.world.facts()[:facts]
    s = TrainSettings()
    batch = torch.randint(0, len(h.tokenizer), (s.batch_size, s.seq_len))

    def train_step():
        model.zero_grad()
        model(input_ids=batch, labels=batch).loss.backward()

    reqs = random_rewrites(h.world, edits)
    ctxs = contexts(h)
    fixed = ValueSettings(reference="resid", steps=10, early_stop=0.0)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint_mb": round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20, 2),
        "score_every_fact_s": least_seconds(lambda: h.score(facts), rounds),
        "train_step_s": least_seconds(train_step, rounds + 1),
        f"values_{edits}_edits_10_steps_s": least_seconds(
            lambda: optimise_values(h, 0, reqs, "last", ctxs, fixed, progress=False), rounds
        ),
    }


def main(threads: int = 2) -> dict:
    torch.set_num_threads(threads)
    rows: dict = {"threads": threads}
    for name in ("world", "world:llama"):
        shipped = workbench.load(name, device="cpu")
        for d_mlp in WIDTHS:
            key = f"{shipped.sites.family}_mlp{d_mlp}"
            rows[key] = costs(shipped, d_mlp)
            print(key, rows[key], flush=True)
    OUT.write_text(json.dumps(rows, indent=1))
    print("| model | parameters | size | score every fact | training step | values, 64 edits x 10 steps |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, r in rows.items():
        if key == "threads":
            continue
        base = rows[key.split("_mlp")[0] + f"_mlp{WIDTHS[0]}"]
        times = [k for k in r if k.endswith("_s")]
        cells = [f"{r[k]:.2f} s ({r[k] / base[k]:.1f}x)" for k in times]
        print(f"| {key} | {r['parameters']:,} | {r['checkpoint_mb']} MB | " + " | ".join(cells) + " |")
    return rows


if __name__ == "__main__":
    main()
