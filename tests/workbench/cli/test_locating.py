"""The locate commands: one JSON object with --json, one-line errors with exit status 2."""

import json

import pytest

from locate.location import Location
from workbench.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("method", ["causal", "attribution"])
def test_trace_json(capsys, world, method):
    person = list(world.people)[5]
    code, out, _ = run(capsys, "trace", person, "pet", "--method", method, "--samples", "2", "--json")
    assert code == 0
    o = json.loads(out)
    fact = world.fact(person, "pet")
    assert o["method"] == {"causal": "causal_trace", "attribution": "attribution_patching"}[method]
    assert o["object"] == fact.object and o["clean"] > o["corrupted"]
    assert set(o["grids"]) == {"resid", "mlp", "attn"}
    assert len(o["grids"]["mlp"]) == len(o["tokens"]) and len(o["grids"]["mlp"][0]) == 4
    best = o["best"]
    assert o["grids"][best["component"]][best["token"]][best["layer"]] - o["corrupted"] == pytest.approx(best["effect"])


def test_trace_text_marks_the_subject(capsys, world):
    person = list(world.people)[5]
    code, out, _ = run(capsys, "trace", person, "pet", "--samples", "1", "--phrasing", "2")
    assert code == 0 and "best site:" in out
    assert sum(line.startswith("*") for line in out.splitlines()) == 3 * 2  # two subject tokens, three grids


@pytest.mark.parametrize(
    "args, needle",
    [
        (["trace", "Nobody Here", "pet"], "unknown person 'Nobody Here'"),
        (["trace", "@person", "favourite_colour"], "unknown relation 'favourite_colour'"),
        (["trace", "@person", "pet", "--prompt", "the cat was born in"], "does not occur in prompt"),
        (["trace", "@person", "pet", "--window", "9"], "window 9 out of range 1..4"),
        (["trace", "@person", "pet", "--method", "magic"], "unknown trace method 'magic'"),
        (["trace", "@person", "pet", "--phrasing", "40"], "phrasing 40 out of range"),
        (["trace", "@person", "pet", "--corruption", "blur"], "unknown corruption 'blur'"),
    ],
)
def test_trace_bad_input_is_one_line(capsys, world, args, needle):
    args = [list(world.people)[0] if a == "@person" else a for a in args]
    code, out, err = run(capsys, *args, "--json")
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in json.loads(out)["error"]


def test_fisher_json_writes_a_location(capsys, world, tmp_path):
    person, out = list(world.people)[5], tmp_path / "mask.json"
    code, stdout, _ = run(
        capsys, "fisher", person, "--max-examples", "60", "--top-fraction", "0.001", "--out", str(out), "--json"
    )
    assert code == 0
    o = json.loads(stdout)
    assert o["examples"] == {"forget": 54, "retain": 60}
    assert o["selected_elements"] == pytest.approx(0.001 * o["total_elements"], abs=1)
    loc = Location.load(out)
    assert loc.method == "fisher" and sum(len(m) for m in loc.masks.values()) == o["selected_elements"]
    assert {(c["layer"], c["component"]) for c in o["components"]} >= {(0, "mlp"), (3, "attn")}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["fisher", "Nobody Here"], "unknown split or person 'Nobody Here'"),
        (["fisher", "forget05", "--top-fraction", "2"], "--top-fraction must be in (0, 1]"),
        (["fisher", "forget05", "--granularity", "atoms"], "unknown --granularity 'atoms'"),
    ],
)
def test_fisher_bad_input_is_one_line(capsys, args, needle):
    code, out, err = run(capsys, *args, "--json")
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert needle in json.loads(out)["error"]


def test_features_json(capsys, world):
    person = list(world.people)[8]
    code, out, _ = run(capsys, "features", person, "school", "--top", "4", "--json")
    assert code == 0
    o = json.loads(out)
    assert len(o["features"]) == 4 and o["sae"] == "blocks.0.hook_resid_post"
    assert o["extras"]["ablation"][0]["feature"] == o["features"][0]["feature"]
    code, out, _ = run(
        capsys, "features", person, "--feature", str(o["features"][0]["feature"]), "--top", "2", "--json"
    )
    assert code == 0 and len(json.loads(out)["top_contexts"]) == 2


@pytest.mark.parametrize(
    "args, needle",
    [
        (["features", "Nobody Here", "pet"], "unknown person 'Nobody Here'"),
        (["features", "@", "hobby"], "unknown relation 'hobby'"),
        (["features", "@", "pet", "--layer", "5"], "layer 5 out of range 0..3"),
        (["features", "@", "pet", "--layer", "3"], "no SAE at"),
        (["features", "@", "--feature", "100000"], "feature 100000 out of range"),
    ],
)
def test_features_bad_input_is_one_line(capsys, world, args, needle):
    args = [list(world.people)[0] if a == "@" else a for a in args]
    code, out, err = run(capsys, *args, "--json")
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_trace_refuses_a_prompt_longer_than_the_context(capsys, world):
    fact = world.facts()[0]
    prompt = "It is well known that " * 30 + world.phrasings(fact.relation)[0].prompt(fact.subject)
    code, out, err = run(capsys, "trace", fact.subject, fact.relation, "--prompt", prompt, "--json")
    assert code == 2 and "reads at most 128" in err and len(err.strip().splitlines()) == 1


def test_trace_of_a_free_prompt_on_a_model_without_a_world(capsys, tmp_path):
    from tiny_models import save_tiny_byte_model

    save_tiny_byte_model(tmp_path / "m", "gpt_neox")
    args = ["trace", "--subject", "Paris", "--prompt", "Paris is the capital of", "--object", " France"]
    code, out, err = run(capsys, *args, "-m", str(tmp_path / "m"), "--samples", "2", "--json")
    assert code == 0, err
    o = json.loads(out)
    assert o["subject"] == "Paris" and "".join(o["tokens"][1:]) == "Paris is the capital of"
    a, b = o["subject_span"]
    assert "".join(o["tokens"][a:b]) == "Paris" and set(o["grids"]) == {"resid", "mlp", "attn"}
