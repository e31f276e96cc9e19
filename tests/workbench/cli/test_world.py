"""``workbench world``: a person's facts as one JSON object."""

import json

from workbench.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_world_facts_json(capsys, world):
    person = world.split("forget01").forget[0]
    code, out, _ = run(capsys, "world", "facts", person, "--json")
    o = json.loads(out)
    assert code == 0 and o["in_forget_splits"] == ["forget01", "forget05", "forget10"]
    assert {r["relation"] for r in o["facts"]} == set(world.relations)
