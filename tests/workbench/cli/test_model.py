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


def test_a_prompt_longer_than_the_context_is_refused_in_one_line(capsys, world):
    fact = world.facts()[0]
    prompt = "It is well known that " * 30 + world.phrasings(fact.relation)[0].prompt(fact.subject)
    code, out, err = run(capsys, "ask", prompt, "--json")
    assert code == 2 and "reads at most 128" in err and len(err.strip().splitlines()) == 1
    assert "reads at most 128" in json.loads(out)["error"]
