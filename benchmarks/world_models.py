"""Full evaluation of every shipped world model, and the speed of batched fact scoring.

Writes benchmarks/results/world_models.json and prints a markdown table.
Run: .venv/bin/python -m benchmarks.world_models
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

import workbench
from workbench.core.world.registry import SHIPPED

OUT = Path(__file__).parent / "results" / "world_models.json"


def _mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.glob("*.safetensors")) / 2**20


def main() -> dict:
    torch.set_num_threads(2)
    rows = {}
    for name in SHIPPED:
        h = workbench.load(f"world:{name}", device="cpu")
        report = json.loads((Path(h.source) / "training_report.json").read_text())
        split = report["settings"]["split"]
        groups = (
            {"all": list(h.world.people)}
            if split is None
            else {"retain": list(h.world.split(split).retain), "forget": list(h.world.split(split).forget)}
        )
        row = {
            "train_seconds": report["train_seconds"],
            "parameters": report["n_params"],
            "checkpoint_mb": round(_mb(Path(h.source)), 2),
        }
        t0 = time.perf_counter()
        n = 0
        for g, people in groups.items():
            facts = h.world.facts(people)
            tr, ho = h.score(facts), h.score(facts, held_out=True)
            n += len(tr.correct) + len(ho.correct)
            row[g] = {"trained": tr.accuracy, "heldout": ho.accuracy}
        row["scoring_prompts_per_second"] = round(n / (time.perf_counter() - t0))
        row["heldout_loss"] = h.heldout_loss()
        rows[name] = row
    OUT.write_text(json.dumps(rows, indent=1))
    print("| model | trained acc. | held-out acc. | forget acc. (never seen) | held-out loss | train time | size |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        known = r.get("all", r.get("retain"))
        forget = f"{r['forget']['trained']:.1%}" if "forget" in r else "n/a"
        print(
            f"| `world:{name}` | {known['trained']:.2%} | {known['heldout']:.2%} | {forget} | "
            f"{r['heldout_loss']:.3f} | {r['train_seconds'] / 60:.1f} min | {r['checkpoint_mb']:.2f} MB |"
        )
    return rows


if __name__ == "__main__":
    main()
