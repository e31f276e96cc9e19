"""``workbench info`` and ``workbench ask``: one JSON object with --json."""

import json

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
