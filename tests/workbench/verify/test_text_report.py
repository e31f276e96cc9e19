"""Verification from files: known answers on the world's forget05 TOFU files, a random model, the CLI."""

import json
import math
from dataclasses import replace

import pytest

import workbench
from tests.tiny_models import save_tiny_byte_model
from workbench.cli import main
from workbench.cli.verifying_texts import render_text_report
from workbench.core.data_files import read_choices, read_qa, read_texts
from workbench.verify.text_relearn import TextRelearnSettings
from workbench.verify.text_report import NO_REFERENCE, TextVerifySettings, verify_texts

EXAMPLES = "workbench/core/world/examples/"
FORGET, RETAIN = EXAMPLES + "tofu_forget05.json", EXAMPLES + "tofu_retain.json"
QUICK = TextVerifySettings(max_items=30, quantise_bits=None, relearn=TextRelearnSettings(steps=0))


@pytest.fixture(scope="module")
def unedited():
    """The full world model, which still knows forget05, against the model trained without it."""
    h = workbench.load("world", device="cpu")
    choices = read_choices(EXAMPLES + "forget05_choices.jsonl")
    return verify_texts(
        h,
        read_qa(FORGET),
        read_qa(RETAIN),
        reference="world:retain-forget05",
        choices=choices,
        settings=replace(TextVerifySettings.quick(), relearn=TextRelearnSettings()),
        progress=False,
    )


def test_the_unedited_model_is_not_forgotten(unedited):
    e, ref = unedited.states["edited"], unedited.states["reference"]
    assert unedited.verdict == "not forgotten" and unedited.reference == "world:retain-forget05"
    assert unedited.forget_quality < 1e-6  # the model still knows: its truth ratios are far from the reference's
    assert e["forget_answer_probability"] > 0.95 and ref["forget_answer_probability"] < 0.5
    assert e["retain_answer_probability"] > 0.95 and ref["retain_answer_probability"] > 0.95
    status = {c.check: c.status for c in unedited.checks}
    assert status["answers"] == status["choices"] == status["answers int4"] == status["answers int8"] == "recovered"
    assert status["paraphrased questions"] == status["logit lens"] == status["relearn"] == "recovered"
    assert status["membership AUC"] == "not tested"  # retain texts are no holdout
    assert unedited.items == {
        "forget": 30,
        "retain": 30,
        "holdout": 30,
        "choices": 30,
        "with_perturbed_answers": 30,
        "with_paraphrased_questions": 30,
        "relearn_trained": 15,
    }
    # Relearning half the items keeps the unseen half answered; the reference learns the trained half, not the rest.
    assert e["relearn_rouge_recall"] == e["relearn_rouge_recall_before"] == 1.0 and e["paraphrase_rouge_recall"] == 1.0
    assert ref["relearn_trained_probability"] > 3 * ref["relearn_answer_probability"]
    assert e["lens_recovered"] > 0.6 > 0.2 > ref["lens_recovered"] and e["lens_hidden"] == 0.0
    checks = {c.check: c for c in unedited.checks}
    assert (checks["relearn"].facts, checks["paraphrased questions"].facts, checks["logit lens"].facts) == (15, 30, 30)
    assert unedited.still_answered and not unedited.cannot_conclude


def test_the_report_is_json_and_a_table(unedited):
    d = json.loads(json.dumps(unedited.to_dict()))
    assert d["verdict"] == "not forgotten" and d["kind"] == "forget texts"
    rows = unedited.table()
    assert {"check", "group", "edited", "original", "reference", "status"} == set(rows[0])
    assert [r["check"] for r in rows if r["status"] == "measured"][0] == "answer probability (forget)"
    row = {r["check"]: r for r in rows}
    for name in ("relearn", "logit lens", "paraphrased questions", "answers int8", "relearn: ROUGE-L after"):
        assert row[name]["reference"] is not None and row[name]["edited"] is not None, name
    rendered = render_text_report(d)
    assert all(name in rendered for name in ("relearn", "logit lens", "paraphrased questions", "answers int8"))


def test_the_reference_against_itself_is_removed():
    ref = workbench.load("world:retain-forget05", device="cpu")
    r = verify_texts(ref, read_qa(FORGET), read_qa(RETAIN), reference=ref, settings=QUICK, progress=False)
    assert r.forget_quality == pytest.approx(1.0)
    assert r.verdict == "removed" and all(c.status in ("consistent", "not tested") for c in r.checks)


def test_plain_texts_with_an_original_but_no_reference():
    h = workbench.load("world", device="cpu")
    forget, retain = read_texts(EXAMPLES + "forget05_texts.jsonl"), read_texts(EXAMPLES + "retain_texts.jsonl")
    r = verify_texts(h, forget, retain, original=h, settings=QUICK, progress=False)
    assert r.verdict == "undecided" and r.reference is None and r.forget_quality is None
    assert r.cannot_conclude[: len(NO_REFERENCE)] == NO_REFERENCE and "compared with the original only" in r.reason
    assert "paraphrased_question" in r.cannot_conclude[-2] and "relearn steps 0" in r.cannot_conclude[-1]
    assert "paraphrased questions" not in {c.check for c in r.checks}
    assert r.states["original"]["forget_rouge_recall"] == r.states["edited"]["forget_rouge_recall"]


def test_a_random_model_without_a_reference_says_what_it_cannot_conclude(tmp_path):
    save_tiny_byte_model(tmp_path / "tiny", "gpt2")
    h = workbench.load(str(tmp_path / "tiny"), device="cpu")
    s = TextVerifySettings(max_items=8, max_new_tokens=8)
    r = verify_texts(h, read_qa(FORGET), read_qa(RETAIN), settings=s, progress=False)
    assert r.verdict == "undecided"
    assert r.cannot_conclude[: len(NO_REFERENCE)] == NO_REFERENCE
    assert any("no original model was given" in c for c in r.cannot_conclude)
    assert {"relearn", "logit lens", "answers int8", "answers int4"} <= {c.check for c in r.checks}
    assert all(c.status == "not tested" and math.isnan(c.p_value) for c in r.checks)
    assert 0 <= r.states["edited"]["forget_answer_probability"] < 0.5
    json.dumps(r.to_dict())


def test_the_cli_verifies_files(tmp_path, capsys):
    save_tiny_byte_model(tmp_path / "tiny", "llama")
    files = {}
    for name, path in (("forget", FORGET), ("retain", RETAIN)):  # a few items: a random byte model is slow to answer
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(qa.to_dict()) + "\n" for qa in read_qa(path)[:6]))
    args = ["verify", "--model", str(tmp_path / "tiny"), "--forget", str(files["forget"]), "--retain"]
    assert main([*args, str(files["retain"]), "--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "undecided" and out["reference"] is None and out["items"]["forget"] == 6
    assert out["cannot_conclude"][0].startswith("whether the forget set is removed")
    checks = {c["check"] for c in out["checks"]}
    assert {"logit lens", "paraphrased questions", "answers int8", "answers int4"} <= checks
    assert "relearn steps 0" in out["cannot_conclude"][-1]  # --quick runs no relearning attack


def test_the_cli_refuses_bad_files_before_loading(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"neither": 1}\n')
    assert main(["verify", "--model", "world:nope", "--forget", str(bad), "--retain", RETAIN]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("workbench: --forget:") and "bad.jsonl:1" in err and "\n" not in err
    assert main(["verify", "--model", "world:nope", "--forget", FORGET, "--retain", RETAIN, "--choices", FORGET]) == 2
    assert capsys.readouterr().err.startswith("workbench: --choices:")
    assert main(["verify", "--retain", RETAIN]) == 2
    assert "--forget" in capsys.readouterr().err
