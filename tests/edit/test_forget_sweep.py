"""Strength sweeps: every value run on the unedited model, reverted after, beside the retain model."""

import json
from pathlib import Path

from edit.forget_figures import FigureSettings
from edit.forget_sweep import Sweep, load_sweep, strength_sweep
from workbench.core.hashing import tensor_hash

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "results" / "unlearning.json"
QUICK = FigureSettings(retain_facts=20, neighbour_facts=20, heldout_loss=False)


def test_each_value_is_scored_and_the_model_left_as_it_was(handle, tmp_path):
    hashes = {n: tensor_hash(p) for n, p in handle.model.named_parameters()}
    s = strength_sweep(
        handle, "forget01", ["ssd"], {"ssd": (30000.0, 3000.0)}, QUICK, fixed={"ssd": {"retain_examples": 200}}
    )
    assert {n: tensor_hash(p) for n, p in handle.model.named_parameters()} == hashes
    assert s.split == "forget01" and s.reference_model == "world:retain-forget01"
    assert s.values("ssd") == [30000.0, 3000.0] and s.setting("ssd") == "alpha"
    weak, strong = s.points("ssd")
    assert s.original["forget"] == 1.0 and strong["forget"] <= weak["forget"] and strong["forget"] < 0.5
    assert s.reference["forget"] < 0.2 and all(r["seconds"] > 0 for r in s.rows)
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(s.to_dict()))
    assert load_sweep(path) == s


def test_the_committed_benchmark_sweep_reads_back():
    s = load_sweep(BENCHMARK)
    raw = json.loads(BENCHMARK.read_text())["sweep"]
    assert isinstance(s, Sweep) and s.rows == raw["rows"] and s.reference == raw["retain_model"]
    assert s.original["forget"] == 1.0 and s.methods()[0] == raw["rows"][0]["method"]
