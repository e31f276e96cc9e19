"""The CLI: one JSON object with --json, one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from workbench.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_json(capsys):
    code, out, _ = run(capsys, "info", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["family"] == "gpt2" and info["world"]["people"] == 300


def test_ask_json_names_true_object_first(capsys, world):
    fact = world.facts()[9]
    prompt = world.phrasings(fact.relation, held_out=True)[1].prompt(fact.subject)
    code, out, _ = run(capsys, "ask", prompt, "--json", "-k", "3")
    assert code == 0
    o = json.loads(out)
    assert (o["person"], o["relation"], o["true_object"]) == (fact.subject, fact.relation, fact.object)
    assert o["top_candidates"][0]["object"] == fact.object and len(o["top_tokens"]) == 3


def test_world_facts_json(capsys, world):
    person = world.split("forget01").forget[0]
    code, out, _ = run(capsys, "world", "facts", person, "--json")
    o = json.loads(out)
    assert code == 0 and o["in_forget_splits"] == ["forget01", "forget05", "forget10"]
    assert {r["relation"] for r in o["facts"]} == set(world.relations)


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


def test_demo_json(capsys):
    code, out, _ = run(capsys, "demo", "--json")
    o = json.loads(out)
    assert code == 0 and o["top_candidates"][0]["object"] == o["fact"]["object"]
    assert o["summary"]["heldout_accuracy"] >= 0.95
    assert o["causal_trace"]["clean"] > o["causal_trace"]["corrupted"]
    assert set(o["causal_trace"]["strongest"]) == {"resid", "mlp", "attn"}
    assert o["edit"]["top_after"]["object"] == o["edit"]["new_object"] and o["edit"]["reverted_bitwise"]


@pytest.mark.parametrize("module", ["workbench", "workbench.cli"])
def test_python_dash_m_has_every_command(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for command in ("trace", "edit", "forget", "verify", "export", "audit", "patch"):
        assert f" {command} " in out.stdout, command
