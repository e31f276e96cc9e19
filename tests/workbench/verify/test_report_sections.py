"""The Report's sections as records: its JSON reads back to exactly itself, and every figure reads by attribute."""

import json
import math
from pathlib import Path

import pytest

from workbench.verify.collateral import Collateral
from workbench.verify.report_record import Report
from workbench.verify.report_sections import (
    Baseline,
    RequestVerdict,
    Retained,
    RewriteCheck,
    States,
    VerdictSummary,
    check_from_dict,
)
from workbench.verify.verdict import CheckResult, ItemVerdict, VerdictSettings

# Reports as verify() writes them (to_json()), trimmed to a few rows per list: an SSD edit on
# forget01 (edited, original and retain model, collateral) and two ROME rewrites at once.
SAMPLES = Path(__file__).parent / "report_json"
FORGET, REWRITE = "forget01_ssd", "rewrite_rome_two"


def sample(name: str) -> str:
    return (SAMPLES / f"{name}.json").read_text().rstrip("\n")


def assert_reads_as(obj, value, path: str = "report") -> None:
    """Every key of ``value`` (a report's JSON) is an attribute of ``obj`` (a key, for a dict) holding the same."""
    if isinstance(value, dict):
        assert set(value) <= (set(obj) if isinstance(obj, dict) else set(vars(obj))), path
        for k, v in value.items():
            assert_reads_as(obj[k] if isinstance(obj, dict) else getattr(obj, k), v, f"{path}.{k}")
    elif isinstance(value, list):
        assert len(obj) == len(value), path
        for i, (x, v) in enumerate(zip(obj, value, strict=True)):
            assert_reads_as(x, v, f"{path}[{i}]")
    else:
        same = obj == value or (isinstance(value, float) and math.isnan(value) and math.isnan(obj))
        assert same and type(obj) is type(value), f"{path}: {obj!r} != {value!r}"


@pytest.mark.parametrize("name", [FORGET, REWRITE])
def test_a_report_reads_back_to_exactly_its_json(name):
    text = sample(name)
    r = Report.from_json(text)
    assert r.to_json() == text  # the same keys in the same order, the same figures
    assert r.to_json(indent=None) == json.dumps(json.loads(text))
    assert Report.from_dict(r.to_dict()).to_json() == text


@pytest.mark.parametrize("name", [FORGET, REWRITE])
def test_every_figure_reads_by_attribute_as_the_dict_held_it(name):
    d = json.loads(sample(name))
    r = Report.from_dict(d)
    # The JSON's verdict is the word every report kind shares; its record is the details.
    assert (d.pop("verdict"), d.pop("reason")) == (r.verdict.overall, r.verdict.reason)
    d["verdict"] = d.pop("verdict_details")
    assert_reads_as(r, d)


@pytest.mark.parametrize("name", [FORGET, REWRITE])
def test_a_report_written_with_the_verdict_as_its_details_still_reads(name):
    d = json.loads(sample(name))
    old = {k: v for k, v in d.items() if k not in ("reason", "verdict_details")}
    old["verdict"] = d["verdict_details"]
    assert Report.from_dict(old) == Report.from_dict(d) and Report.from_dict(old).to_json() == sample(name)


def test_a_forget_report_holds_the_forgetting_records():
    d = json.loads(sample(FORGET))
    r = Report.from_dict(d)
    assert isinstance(r.baseline, Baseline) and isinstance(r.states, States) and isinstance(r.retained, Retained)
    assert isinstance(r.collateral, Collateral) and r.rewrite is None
    assert all(isinstance(c, CheckResult) for c in r.checks) and all(
        isinstance(i, ItemVerdict) for i in r.verdict.items
    )
    assert isinstance(r.verdict.settings, VerdictSettings)
    assert r.states.edited.utility.accuracy == d["states"]["edited"]["utility"]["accuracy"]
    assert r.states.retain.mia_auc == d["states"]["retain"]["mia_auc"]
    assert r.verdict.overall == d["verdict"] == d["verdict_details"]["overall"] == "removed"
    assert r.retained.accuracy_retain_model == d["retained"]["accuracy_retain_model"]
    assert r.collateral.groups["edited"].prob_after == d["collateral"]["groups"]["edited"]["prob_after"]
    assert math.isnan(r.checks[-1].p_value) and r.checks[-1].check == "membership AUC"


def test_a_rewrite_report_holds_the_rewrite_records():
    d = json.loads(sample(REWRITE))
    r = Report.from_dict(d)
    assert all(isinstance(c, RewriteCheck) for c in r.checks) and all(
        isinstance(i, RequestVerdict) for i in r.verdict.items
    )
    assert r.verdict.settings is None and "settings" not in r.verdict.to_dict()
    assert r.states.retain is None and "accuracy_retain_model" not in r.retained.to_dict()
    assert r.rewrite.edited.counterfact.efficacy.prob == d["rewrite"]["edited"]["counterfact"]["efficacy"]["prob"]
    assert r.rewrite.original.generation.old == d["rewrite"]["original"]["generation"]["old"]
    assert r.rewrite.edited.efficacy == d["rewrite"]["edited"]["efficacy"]


def test_states_not_measured_are_left_out_of_the_json():
    d = json.loads(sample(FORGET))
    del d["states"]["original"]  # a model verified as it is
    r = Report.from_dict(d)
    assert r.states.original is None and list(r.states.by_name()) == ["edited", "retain"]
    assert json.dumps(r.to_dict()) == json.dumps(d)


def test_a_report_built_by_hand_serialises_its_empty_sections_as_before():
    r = Report("forget", "none", {}, "world", Baseline(None, "chance"), VerdictSummary("removed", "", [], []))
    d = r.to_dict()
    assert (d["checks"], d["states"], d["rewrite"], d["collateral"], d["retained"]) == ([], {}, None, None, {})
    assert Report.from_dict(d) == r


def test_a_check_row_is_read_as_its_kind():
    forget = json.loads(sample(FORGET))["checks"][0]
    rewrite = json.loads(sample(REWRITE))["checks"][0]
    assert type(check_from_dict(forget)) is CheckResult and type(check_from_dict(rewrite)) is RewriteCheck
