"""The forget command: figures before, after and of the retain model; patches; one-line refusals."""

import json

import pytest

from edit.patch import load_patch
from workbench.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_split_json_with_reference_and_patch(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "forget",
        "--split",
        "forget01",
        "--method",
        "ssd",
        "--retain-facts",
        "40",
        "--save-patch",
        str(tmp_path / "p"),
        "--json",
    )
    assert code == 0
    o = json.loads(out)
    assert o["before"]["forget"] == 1.0 and o["after"]["forget"] <= 0.15 and o["after"]["retain"] >= 0.95
    assert o["reference_model"] == "world:retain-forget01" and o["reference"]["retain"] == 1.0
    assert load_patch(tmp_path / "p").names == o["tensors"]


def test_person_table(capsys, world):
    person = list(world.people)[50]
    code, out, _ = run(capsys, "forget", person, "--method", "ssd", "--retain-facts", "30")
    assert code == 0
    assert f"forget {person} with ssd" in out and "neighbours" in out and "retain model" not in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["forget", "Nobody Here"], "unknown person or split 'Nobody Here'"),
        (["forget", "--split", "forget09"], "unknown person or split 'forget09'"),
        (["forget", ""], "nothing to forget"),
        (["forget"], "name a PERSON or give --split"),
        (["forget", "@", "--method", "sgd"], "unknown method 'sgd'"),
        (["forget", "@", "--retain", "@"], "overlaps the retain set"),
        (["forget", "@", "--retain", "Nobody Here"], "unknown person 'Nobody Here' in --retain"),
    ],
)
def test_refusals_are_one_line(capsys, world, args, needle):
    person = list(world.people)[0]
    code, out, err = run(capsys, *[person if a == "@" else a for a in args])
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_forget_texts_from_files_on_a_model_without_a_world(capsys, tmp_path):
    from tiny_models import save_tiny_byte_model

    from workbench.core.world.as_counterfact import EXAMPLES

    save_tiny_byte_model(tmp_path / "m", "gpt2")
    args = ["forget", "--forget", str(EXAMPLES / "tofu_forget05.json"), "--retain", str(EXAMPLES / "tofu_retain.json")]
    code, out, err = run(capsys, *args, "--method", "ga", "-m", str(tmp_path / "m"), "--retain-facts", "20", "--json")
    assert code == 0, err
    o = json.loads(out)
    assert o["request"]["forget_texts"] == 90 and o["request"]["retain_texts"] == 200
    assert o["after"]["forget_text_loss"] > o["before"]["forget_text_loss"] and o["tensors"]


def test_the_method_help_names_every_registered_method():
    from edit.forget import METHODS

    help_text = _method_help()
    assert all(name in help_text.split(" | ") or f"{name}." in help_text for name in METHODS), help_text


def _method_help() -> str:
    import inspect

    from workbench.cli.forgetting import forget_cmd

    return inspect.signature(forget_cmd).parameters["method"].default.help


def test_a_method_refuses_data_it_cannot_take_before_any_scoring(capsys, tmp_path, monkeypatch):
    """dpo on plain texts, sisa on a single model: one line, and no figure was computed first."""
    import edit.forget

    def no_scoring(*a, **k):
        raise AssertionError("scored before refusing")

    monkeypatch.setattr(edit.forget, "forget_figures", no_scoring)
    forget_file, retain_file = tmp_path / "f.jsonl", tmp_path / "r.jsonl"
    forget_file.write_text('{"text": "Ada plays chess on Sundays."}\n')
    retain_file.write_text('{"text": "Bo plays golf on Mondays."}\n')
    code, _, err = run(capsys, "forget", "--forget", str(forget_file), "--retain", str(retain_file), "--method", "dpo")
    assert code == 2 and "needs questions with answers" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "forget", "--split", "forget01", "--method", "sisa")
    assert code == 2 and "workbench world train sisa" in err and len(err.strip().splitlines()) == 1
