"""The entry point: one-line errors with exit status 2, every command registered, ``python -m``."""

import json
import subprocess
import sys

import pytest

from workbench.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["info", "--model", "./missing/model"], "no such model directory"),
        (["info", "--model", "world:nope"], "unknown world model"),
        (["ask", "It is well known that Zanzibar works for"], "'Zanzibar'"),
        (["world", "facts", "Nobody Here"], "unknown person 'Nobody Here'"),
        (["world", "train", "gpt5"], "unknown world model 'gpt5'"),
        (["ask"], "Missing argument"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_is_one_line(capsys, args, needle):
    code, out, err = run(capsys, *args, "--json")
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in json.loads(out)["error"]


def test_installed_entry_point_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "ask", "Zanzibar Zed works for"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().startswith("workbench: the tokenizer cannot encode")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("module", ["workbench", "workbench.cli"])
def test_python_dash_m_has_every_command(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    commands = ("info", "ask", "demo", "export", "audit", "forget", "trace", "fisher", "features", "verify")
    for command in (*commands, "world", "edit", "patch", "sae"):
        assert f" {command} " in out.stdout, command


def test_ctrl_c_says_interrupted_and_exits_130(capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("workbench.cli.model.load_model", interrupted)
    code, out, err = run(capsys, "info")
    assert code == 130 and err.strip().splitlines()[-1] == "workbench: interrupted" and out.strip() == ""
