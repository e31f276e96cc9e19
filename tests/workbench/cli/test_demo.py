"""``workbench demo``: the three steps on one fact, as one JSON object."""

import json

from workbench.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_json(capsys):
    code, out, _ = run(capsys, "demo", "--json")
    o = json.loads(out)
    assert code == 0 and o["top_candidates"][0]["object"] == o["fact"]["object"]
    assert o["summary"]["heldout_accuracy"] >= 0.95
    assert o["causal_trace"]["clean"] > o["causal_trace"]["corrupted"]
    assert set(o["causal_trace"]["strongest"]) == {"resid", "mlp", "attn"}
    assert o["edit"]["top_after"]["object"] == o["edit"]["new_object"] and o["edit"]["reverted_bitwise"]
