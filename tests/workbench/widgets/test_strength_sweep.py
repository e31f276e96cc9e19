"""Strength sweep view over the committed benchmark sweep: curves, the retain model's star, the slider."""

from pathlib import Path

import pytest
from static_figures import write_static

from edit.forget import METHODS
from edit.forget_sweep import load_sweep
from workbench.widgets.strength_sweep import StrengthSweep, sweep_figure

BENCHMARK = Path(__file__).parents[3] / "benchmarks" / "results" / "unlearning.json"


@pytest.fixture(scope="module")
def sweep():
    return load_sweep(BENCHMARK)


def test_a_curve_per_method_and_the_retain_model_marked(sweep):
    fig = sweep_figure(sweep)
    names = [t.name for t in fig.data]
    swept = [m for m in METHODS if METHODS[m].strength[1]]  # a method with no strength setting has no curve
    assert names == swept + ["retain model", "original"]
    for t in fig.data[: len(swept)]:
        pts = sweep.points(t.name)
        assert list(t.x) == [r["forget"] for r in pts] and list(t.y) == [r["retain"] for r in pts]
        assert len(pts) == len(METHODS[t.name].strength[1])
    star = fig.data[names.index("retain model")]
    assert (star.x[0], star.y[0], star.marker.symbol) == (sweep.reference["forget"], sweep.reference["retain"], "star")


def test_the_slider_moves_along_one_method(sweep):
    v = StrengthSweep(sweep, "rmu")
    assert v.slider.description == "steering_coefficient" and v.value == 0.25
    v.slider.value = 1.0
    ring = v.plot.data[-3]
    row = next(r for r in sweep.points("rmu") if r["strength"]["steering_coefficient"] == 1.0)
    assert (ring.x[0], ring.y[0]) == (row["forget"], row["retain"]) and ring.name == "rmu steering_coefficient=1"
    assert f"<td>{row['forget']:.3f}</td>" in v.panel.value and "retain model" in v.panel.value
    v.method_box.value = "ssd"
    assert (v.method, v.value, v.slider.description) == ("ssd", 30000.0, "alpha")
    assert [o for _, o in v.slider.options] == list(METHODS["ssd"].strength[1])
    faded = {t.name: t.opacity for t in v.plot.data if t.name in METHODS}
    assert faded["ssd"] == 1.0 and faded["rmu"] == 0.25
    assert v.select("erase", 10.0)["strength"] == {"mom2_weight": 10.0} and v.slider.value == 10.0


def test_static_copy(sweep):
    v = StrengthSweep(sweep, "ssd")
    v.select("ssd", 3000.0)
    write_static(v, "strength_sweep")
