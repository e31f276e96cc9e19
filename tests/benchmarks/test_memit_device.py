"""The device benchmark runs end to end (here on CPU, with a few edits), so it is ready where a GPU is."""

import pytest

from benchmarks.memit_device import run


def test_times_the_three_ways_and_checks_the_editors_on_the_device():
    r = run("world", "cpu", n=6, rounds=1)
    speed = r["speed"]
    assert set(speed["best"]) == {"batched", "one_by_one", "one_by_one_full_passes"}
    assert all(d < 1e-4 for d in speed["max_relative_delta_difference"].values())
    assert speed["speedup"] == pytest.approx(speed["best"]["one_by_one"] / speed["best"]["batched"])
    for dtype in ("float32", "bfloat16"):
        for editor in ("rome", "memit"):
            got = r["placement"][dtype][editor]
            assert got["only_declared_tensors_changed"] and got["weights_kept_device_and_dtype"]
            assert got["reverted_bitwise"] and got["efficacy"] == 1.0
