"""``workbench verify``: a patch file in, the verdict out; every bad input one line."""

import json

import pytest

import workbench
from edit.forget import forget
from edit.forget_figures import FigureSettings
from edit.patch import save_patch
from workbench.cli import main


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


@pytest.fixture(scope="module")
def ssd_patch(tmp_path_factory, world):
    h = workbench.load("world", device="cpu")
    person = world.split("forget01").forget[0]
    res = forget(
        h, person, "ssd", figures=FigureSettings(retain_facts=20, neighbour_facts=20), reference=False, progress=False
    )
    return str(save_patch(res.edit, tmp_path_factory.mktemp("p") / "one.patch")), person


def test_verify_a_patch_as_json_and_as_html(ssd_patch, capsys, tmp_path):
    patch, person = ssd_patch
    assert main(["verify", "--patch", patch, "--quick", "--html", str(tmp_path / "r.html"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "ssd" and out["kind"] == "forget" and out["baseline"]["model"] == "world:retain-forget01"
    assert out["verdict"] == out["verdict_details"]["overall"] in ("removed", "suppressed", "not forgotten")
    assert [i["item"] for i in out["verdict_details"]["items"]] == [person]
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>") and out["html"].endswith("r.html")


def test_verify_the_model_as_it_is_in_text(capsys, world):
    person = world.split("forget01").forget[1]
    assert main(["verify", "--person", person, "--quick"]) == 0
    text = capsys.readouterr().out
    assert "NOT FORGOTTEN" in text and "surface" in text and "baseline: world:retain-forget01" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["verify"], "nothing to verify"),
        (["verify", "--split", "forget01", "--person", "x"], "not both"),
        (["verify", "--patch", "/no/such.patch"], "no patch at"),
        (["verify", "--person", "Nobody Here"], "unknown person"),
        (["verify", "--split", "forget99", "--quick"], "unknown person or split"),
    ],
)
def test_bad_input_is_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_patch_for_another_model_is_refused(ssd_patch, capsys):
    assert main(["verify", "--patch", ssd_patch[0], "--model", "world:retain-forget05"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another model" in err[0]


def test_export_with_verify_ships_the_report_and_the_card_states_the_verdict(ssd_patch, capsys, tmp_path):
    out = tmp_path / "shipped"
    assert main(["export", "--patch", ssd_patch[0], "--out", str(out), "--verify", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    verdict = json.loads((out / "verification.json").read_text(), parse_constant=_no_constant)["verdict"]
    assert result["verdict"] == verdict and result["report_kind"] == "forget" and "verification.html" in result["files"]
    assert verdict in (out / "README.md").read_text()
    assert main(["audit", str(out)]) == 0


def test_export_verify_refusals(ssd_patch, capsys, tmp_path):
    assert main(["export", "--patch", ssd_patch[0], "--out", str(tmp_path / "x"), "--quick"]) == 2
    assert "--quick goes with --verify" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--reference", "world:nope"], "--reference: unknown world model 'world:nope'"),
        (["--reference", "/no/such/model"], "--reference: cannot load model '/no/such/model'"),
        (["--html", "/no/such/folder/r.html"], "--html: no folder /no/such/folder"),
        (["--html", "@tmp"], "is a directory; name a file"),
    ],
)
def test_bad_outputs_and_references_are_refused_before_any_work(capsys, tmp_path, monkeypatch, args, needle):
    loaded = []
    monkeypatch.setattr("workbench.cli.verifying.load_model", lambda m: loaded.append(m))
    args = [str(tmp_path) if a == "@tmp" else a for a in args]
    code = main(["verify", "--split", "forget01", *args])
    _, err = capsys.readouterr()
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not loaded
