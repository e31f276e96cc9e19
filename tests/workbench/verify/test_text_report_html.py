"""A TextReport's HTML page: every section of the report, offline, its JSON strict; the CLI's --html."""

import json
import re

import pytest
from tiny_models import save_tiny_byte_model

import workbench
from workbench.cli import main
from workbench.core.data_files import read_qa
from workbench.core.strict_json import strict_json
from workbench.core.world.as_counterfact import EXAMPLES
from workbench.verify.text_report import TextReport, TextVerifySettings, verify_texts
from workbench.verify.verdict import CheckResult


def strict(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def embedded(page: str) -> dict:
    """The report's JSON as the page carries it."""
    data = re.search(r'<script type="application/json" id="report">(.*?)</script>', page, re.S).group(1)
    return strict(data.replace("<\\/", "</"))


@pytest.fixture
def by_hand() -> TextReport:
    checks = [
        CheckResult("answers", "surface", 0.4, 0.1, 0.9, 12, 3, 30, 0.01, "recovered"),
        CheckResult("ranked first", "answer ranking", 0.1, 0.1, 0.8, 3, 3, 30, 0.9, "consistent"),
        CheckResult("membership AUC", "membership", 0.62, 0.5, 0.7, None, None, None, float("nan"), "not tested"),
    ]
    return TextReport(
        "my-model",
        "my-reference",
        "not forgotten",
        "the plain question still recovers the forget set beyond the reference",
        checks,
        {"edited": {"forget_answer_probability": 0.3}, "reference": {"forget_answer_probability": 0.05}},
        float("inf"),
        ["forget quality and truth ratio: no forget item has perturbed answers"],
        ["membership AUC is measured against the retain texts, not tested"],
        [{"question": "Who is <b>Ann</b>?", "answer": "a poet", "edited": "a poet", "reference": "a baker"}],
        {"forget": 30, "retain": 30, "holdout": 30, "choices": 0, "with_perturbed_answers": 0},
    )


def test_the_page_shows_every_section(by_hand):
    page = by_hand.to_html()
    for needle in [
        "not forgotten",
        "the plain question still recovers the forget set beyond the reference",
        "my-reference, the reference model trained without the forget set",
        "<th>reference</th>",
        "12/30 vs 3",
        'class="wb-status-recovered"',
        "not tested",
        "answer probability (forget)",
        "Cannot conclude:",
        "no forget item has perturbed answers",
        "Caveats:",
        "measured against the retain texts",
        "Who is &lt;b&gt;Ann&lt;/b&gt;?",
        "a baker",
    ]:
        assert needle in page, needle
    assert page.startswith("<!DOCTYPE html>") and "<b>Ann</b>" not in page


def test_the_page_is_offline_and_its_json_strict(by_hand):
    page = by_hand.to_html()
    assert "<script src" not in page and "http" not in page and "NaN" not in page and "Infinity" not in page
    d = embedded(page)
    assert d == strict_json(by_hand.to_dict()) and d["verdict"] == "not forgotten" and d["forget_quality"] is None


def test_a_measured_report_renders(tmp_path):
    h = workbench.load("world", device="cpu")
    forget, retain = read_qa(EXAMPLES / "tofu_forget05.json")[:6], read_qa(EXAMPLES / "tofu_retain.json")[:6]
    r = verify_texts(h, forget, retain, settings=TextVerifySettings(quantise_bits=None), progress=False)
    page = r.to_html()
    assert "undecided" in page and "Cannot conclude:" in page and embedded(page)["items"]["forget"] == 6
    assert all(c.check in page for c in r.checks)


def test_the_cli_writes_the_page_with_html(tmp_path, capsys):
    save_tiny_byte_model(tmp_path / "tiny", "gpt2")
    for part in ("forget05", "retain"):
        records = json.loads((EXAMPLES / f"tofu_{part}.json").read_text())[:4]
        (tmp_path / f"{part}.json").write_text(json.dumps(records))
    args = ["verify", "-m", str(tmp_path / "tiny"), "--forget", str(tmp_path / "forget05.json")]
    args += ["--retain", str(tmp_path / "retain.json"), "--quick", "--html", str(tmp_path / "r.html"), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["html"] == str(tmp_path / "r.html") and out["verdict"] == "undecided"
    assert embedded((tmp_path / "r.html").read_text())["verdict"] == "undecided"


def test_the_cli_checks_the_html_path_before_loading(tmp_path, capsys):
    forget, retain = str(EXAMPLES / "tofu_forget05.json"), str(EXAMPLES / "tofu_retain.json")
    args = ["verify", "-m", "world:nope", "--forget", forget, "--retain", retain, "--html", str(tmp_path / "no/r.html")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--html: no folder" in err[0]
