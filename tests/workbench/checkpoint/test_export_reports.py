"""Export with either kind of verification report: a TextReport on a user's model, a world Report; strict JSON."""

import json
import shutil

import pytest
import torch
from tiny_models import save_tiny_byte_model

import workbench
from edit.edit import Delta, Edit
from workbench.checkpoint.audit import audit
from workbench.checkpoint.export import ExportError, VerificationReport, export
from workbench.checkpoint.manifest import NAME
from workbench.core.data_files import read_qa
from workbench.core.world.as_counterfact import EXAMPLES
from workbench.verify.report_record import Report
from workbench.verify.report_sections import Baseline, VerdictSummary
from workbench.verify.text_report import TextVerifySettings, verify_texts
from workbench.verify.verdict import CheckResult


def strict(text: str):
    """JSON as strict parsers read it: NaN and Infinity refused."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def user_export(tmp_path_factory):
    """A random byte-level GPT-2 with a hand-made edit, verified from TOFU files, exported with its TextReport."""
    root = tmp_path_factory.mktemp("user")
    save_tiny_byte_model(root / "base", "gpt2")
    h = workbench.load(str(root / "base"), device="cpu")
    mlp = h.sites.mlp_out_path(0) + ".weight"
    rows, cols = dict(h.model.named_parameters())[mlp].shape
    e = Edit("hand", {"note": "a nudge"}, {mlp: Delta(left=torch.ones(rows, 1), right=torch.full((cols, 1), 0.01))})
    e.apply(h.model)
    forget, retain = read_qa(EXAMPLES / "tofu_forget05.json")[:4], read_qa(EXAMPLES / "tofu_retain.json")[:4]
    settings = TextVerifySettings(max_new_tokens=4, quantise_bits=None)
    report = verify_texts(h, forget, retain, settings=settings, progress=False, edit=e)
    return report, export(h, root / "edited", edits=[e], report=report)


def test_a_text_report_ships_beside_a_users_model_and_audits(user_export):
    report, out = user_export
    assert isinstance(report, VerificationReport) and report.verdict == "undecided"
    assert audit(out).ok
    d = strict((out / "verification.json").read_text())
    assert d["kind"] == "forget texts" and d["verdict"] == "undecided" and d["reason"] == report.reason
    assert d["checks"] and all(c["p_value"] is None for c in d["checks"])  # untested: NaN in the record, null here
    page = (out / "verification.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "undecided" in page and "<script src" not in page
    m = json.loads((out / NAME).read_text())
    assert m["report"]["verdict"] == "undecided" and m["report"]["kind"] == "forget texts"


def test_the_card_says_the_text_reports_verdict_and_kind(user_export):
    report, out = user_export
    card = (out / "README.md").read_text()
    for needle in [
        "**Verdict: undecided.**",
        "Report kind: forgetting of a forget set of texts or question-answer pairs.",
        "Compared with: no reference model",
        "| check | edited | original | reference | status |",
        "| answers |",
        "- Whether the forget set is removed or only suppressed",
        "`verification.json`",
    ]:
        assert needle in card, needle
    assert "No verification was run" not in card


def test_a_changed_verification_file_fails_the_audit(user_export, tmp_path):
    _, out = user_export
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    d = json.loads((copy / "verification.json").read_text())
    d["verdict"] = "removed"
    (copy / "verification.json").write_text(json.dumps(d, indent=1))
    result = audit(copy)
    assert not result.ok and any("verification.json" in p for p in result.problems)


def test_a_world_reports_nan_is_written_as_null(handle, tmp_path):
    auc = CheckResult("membership AUC", "membership", 0.5, 0.5, None, None, None, None, float("nan"), "consistent")
    inf = CheckResult("forget quality", "truth ratio", float("inf"), 1.0, None, None, None, None, 1.0, "consistent")
    r = Report(
        "forget", "none", {}, "world", Baseline(None, "chance"), VerdictSummary("removed", "", [], []), [auc, inf]
    )
    out = export(handle, tmp_path / "out", report=r)
    d = strict((out / "verification.json").read_text())
    assert d["verdict"] == "removed" and d["verdict_details"]["overall"] == "removed"
    assert d["checks"][0]["p_value"] is None and d["checks"][1]["edited"] is None
    assert "**Verdict: removed.**" in (out / "README.md").read_text() and audit(out).ok
    assert json.loads((out / NAME).read_text())["report"]["verdict"] == "removed"


def test_something_without_a_verdict_is_no_report(handle, tmp_path):
    class PagesOnly:
        def to_dict(self):
            return {}

        def to_html(self):
            return ""

    with pytest.raises(ExportError, match="report must be a verification Report or TextReport"):
        export(handle, tmp_path / "out", report=PagesOnly())
    assert list(tmp_path.iterdir()) == []
