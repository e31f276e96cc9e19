"""The edit commands: scores before and after, patches written, one-line errors."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edit.patch import load_patch
from workbench.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _new(world, person, relation):
    return next(c for c in world.relation(relation).candidates if c != world.fact(person, relation).object)


def test_rome_json_and_patch(capsys, world, tmp_path):
    person = list(world.people)[12]
    new = _new(world, person, "pet")
    code, out, _ = run(capsys, "edit", "rome", person, "pet", new, "--save-patch", str(tmp_path / "p"), "--json")
    assert code == 0
    o = json.loads(out)
    assert o["before"]["efficacy"]["accuracy"] == 0.0 and o["after"]["efficacy"]["accuracy"] == 1.0
    assert o["top_candidates"][0]["object"] == new and o["layer"] == 0
    patch = load_patch(tmp_path / "p")
    assert patch.method == "rome" and patch.names == o["tensors"]


def test_memit_from_jsonl(capsys, world, tmp_path):
    people = list(world.people)[13:16]
    lines = [{"person": p, "relation": "language", "new_object": _new(world, p, "language")} for p in people[:2]]
    lines.append({"person": people[2], "relation": "language", "erase": True})
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    code, out, _ = run(capsys, "edit", "memit", "--requests", str(f), "--json")
    assert code == 0
    o = json.loads(out)
    assert o["requests"] == 3 and o["after"]["efficacy"]["n"] == 3
    assert o["after"]["efficacy"]["accuracy"] >= 2 / 3
    assert o["target_written"] > 0.9 and o["keys"] == "mean"


def test_memit_keys_each(capsys, world, tmp_path):
    people = list(world.people)[16:19]
    f = tmp_path / "r.jsonl"
    f.write_text(
        "\n".join(json.dumps({"person": p, "relation": "pet", "new_object": _new(world, p, "pet")}) for p in people)
    )
    code, out, _ = run(capsys, "edit", "memit", "--requests", str(f), "--keys", "each", "--json")
    o = json.loads(out)
    assert code == 0 and o["keys"] == "each" and o["after"]["efficacy"]["accuracy"] == 1.0
    code, _, err = run(capsys, "edit", "memit", "--requests", str(f), "--keys", "median")
    assert code != 0 and err.strip() == "workbench: --keys must be 'mean' or 'each', got 'median'"


def test_memit_says_in_one_line_when_the_layer_cannot_take_the_edits(capsys, world, tmp_path):
    people = list(world.people)[16:18]
    f = tmp_path / "r.jsonl"
    f.write_text(
        "\n".join(json.dumps({"person": p, "relation": "pet", "new_object": _new(world, p, "pet")}) for p in people)
    )
    code, out, err = run(
        capsys, "edit", "memit", "--requests", str(f), "--layers", "0", "--mom2-weight", "1e6", "--json"
    )
    assert code == 0 and json.loads(out)["target_written"] < 0.9
    warning = [line for line in err.splitlines() if "wrote" in line]
    assert len(warning) == 1 and warning[0].startswith("workbench: warning: the update wrote")
    code, _, err = run(
        capsys, "edit", "memit", "--requests", str(f), "--layers", "0", "--mom2-weight", "1e6", "--batch-size", "1"
    )
    # What a terminal shows: the progress bar is cleared with carriage returns before the warning.
    warning = [line.split("\r")[-1] for line in err.split("\n") if "wrote" in line]
    assert code == 0 and len(warning) == 1
    assert warning[0].startswith("workbench: warning: 2 of 2 batches' updates wrote less than 90%")


def test_memit_in_batches_in_null_space_mode_with_its_patch(capsys, world, tmp_path):
    people = list(world.people)[18:23]
    f = tmp_path / "r.jsonl"
    f.write_text(
        "\n".join(json.dumps({"person": p, "relation": "pet", "new_object": _new(world, p, "pet")}) for p in people)
    )
    code, out, _ = run(
        capsys,
        "edit",
        "memit",
        "--requests",
        str(f),
        "--layers",
        "0",
        "--batch-size",
        "2",
        "--null-space",
        "--save-patch",
        str(tmp_path / "p"),
        "--json",
    )
    assert code == 0
    o = json.loads(out)
    assert (o["batches"], o["batch_size"], o["null_space"], len(o["target_written_per_batch"])) == (3, 2, True, 3)
    assert o["after"]["efficacy"]["accuracy"] >= 0.8
    patch = load_patch(tmp_path / "p")
    assert patch.settings["null_space"] and patch.settings["batch_size"] == 2 and patch.names == o["tensors"]
    assert patch.settings["null_space"]["keep_statistics"] and not o["alphaedit"]
    code, out, _ = run(capsys, "edit", "memit", "--requests", str(f), "--layers", "0", "--batch-size", "2")
    assert code == 0 and "5 edits in 3 batches of 2 at layers" in out
    code, out, _ = run(
        capsys,
        "edit",
        "memit",
        "--requests",
        str(f),
        "--layers",
        "0",
        "--batch-size",
        "2",
        "--null-space",
        "--alphaedit",
        "--save-patch",
        str(tmp_path / "a"),
    )
    assert code == 0 and "5 edits in 3 batches of 2 (null-space, AlphaEdit's solve) at layers" in out
    assert load_patch(tmp_path / "a").settings["null_space"] == {"threshold": 1e-2, "keep_statistics": False}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["edit", "rome", "Nobody Here", "pet", "cat"], "unknown person 'Nobody Here'"),
        (["edit", "rome", "@", "pet", "@same"], "already the true object"),
        (["edit", "rome", "@", "pet", "dragon"], "'dragon' is not a pet of this world"),
        (["edit", "rome", "@", "pet", "cat", "--layer", "9"], "layer 9 out of range 0..3"),
        (["edit", "rome", "@", "pet"], "give a NEW_OBJECT to rewrite, or --erase"),
        (["edit", "rome", "@", "pet", "cat", "--erase"], "give a NEW_OBJECT to rewrite, or --erase"),
        (["edit", "memit", "--requests", "/no/such.jsonl"], "no such requests file"),
        (["edit", "memit", "--requests", "/no/such.jsonl", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["edit", "memit", "--requests", "/no/such.jsonl", "--alphaedit"], "give --null-space too"),
    ],
)
def test_bad_input_is_one_line(capsys, world, args, needle):
    person = list(world.people)[0]
    args = [person if a == "@" else world.fact(person, "pet").object if a == "@same" else a for a in args]
    code, out, err = run(capsys, *args, "--json")
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert needle in json.loads(out)["error"]


def test_memit_bad_lines(capsys, world, tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text('{"person": "Nobody Here", "relation": "pet", "new_object": "cat"}\n')
    code, _, err = run(capsys, "edit", "memit", "--requests", str(f))
    assert code == 2 and "r.jsonl:1: unknown person" in err
    f.write_text("not json\n")
    code, _, err = run(capsys, "edit", "memit", "--requests", str(f))
    assert code == 2 and "r.jsonl:1: not JSON" in err


def test_an_existing_patch_or_a_folder_is_refused_before_any_work(capsys, world, tmp_path, monkeypatch):
    person = list(world.people)[12]
    new = _new(world, person, "pet")
    (tmp_path / "p.json").write_text("{}")
    loaded = []
    monkeypatch.setattr("workbench.cli.editing.load_model", lambda m: loaded.append(m))
    for target, needle in ((tmp_path / "p", "already exists"), (tmp_path, "is a directory")):
        code, _, err = run(capsys, "edit", "rome", person, "pet", new, "--save-patch", str(target))
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not loaded and (tmp_path / "p.json").read_text() == "{}"
    monkeypatch.undo()
    code, out, err = run(capsys, "edit", "rome", person, "pet", new, "--save-patch", str(tmp_path / "p"), "--force")
    assert code == 0, err
    assert load_patch(tmp_path / "p").method == "rome"


ANN = {"person": "@0", "relation": "pet"}


@pytest.mark.parametrize(
    "lines, needle",
    [
        (["[1, 2, 3]"], "r.jsonl:1: expected a JSON object, got [1, 2, 3]"),
        (['"str"'], "expected a JSON object, got str"),
        (["{not json"], "not JSON"),
        ([{**ANN, "erase": "no"}], "\"erase\" must be true or false, not 'no'"),
        ([{**ANN, "erase": 1}], '"erase" must be true or false, not 1'),
        ([{**ANN, "new_object": 3}], '"new_object" must be a string, not 3'),
        ([{**ANN, "person": ["x"], "new_object": "@new"}], '"person" must be a string'),
        ([{**ANN, "new_object": "@new", "erase": True}], 'give a "new_object" or "erase": true'),
        ([ANN], 'give a "new_object" or "erase": true'),
        ([{"relation": "pet", "erase": True}], "not a request: expected CounterFact"),
        ([{**ANN, "new_object": "@new", "why": "x"}], "unknown field 'why'"),
        ([{**ANN, "new_object": "@new"}, {**ANN, "erase": True}], ":2: asks erase of"),
        ([], "holds no requests"),
    ],
)
def test_a_malformed_requests_file_is_refused_before_the_model_loads(
    capsys, world, tmp_path, monkeypatch, lines, needle
):
    person = list(world.people)[0]
    new = _new(world, person, "pet")

    def filled(x):
        if isinstance(x, str):
            return x
        return json.dumps({k: person if v == "@0" else new if v == "@new" else v for k, v in x.items()})

    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(filled(x) for x in lines) + "\n")
    loaded = []
    monkeypatch.setattr("workbench.cli.editing.load_model", lambda m: loaded.append(m))
    code, _, err = run(capsys, "edit", "memit", "--requests", str(f))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not loaded


def test_repeated_request_lines_are_made_once(capsys, world, tmp_path):
    person = list(world.people)[20]
    line = json.dumps({"person": person, "relation": "pet", "new_object": _new(world, person, "pet")})
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join([line] * 50) + "\n")
    code, out, err = run(capsys, "edit", "memit", "--requests", str(f), "--layers", "0", "--json")
    assert code == 0, err
    assert "49 repeated request line(s) dropped" in err and json.loads(out)["requests"] == 1


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
FIELD_VALUES = st.one_of(JSON_VALUES, st.sampled_from(["pet", "cat", "Ada Quill"]))
ROWS = st.dictionaries(st.sampled_from(["person", "relation", "new_object", "erase", "extra"]), FIELD_VALUES)
LINES = st.lists(st.one_of(ROWS.map(json.dumps), JSON_VALUES.map(json.dumps), st.text(max_size=20)), max_size=6)


@given(lines=LINES)
def test_any_requests_file_gives_checked_rows_or_one_line(lines):
    from workbench.cli.common import CliError
    from workbench.cli.editing import request_rows

    try:
        rows = request_rows("\n".join(lines), "r.jsonl")
    except CliError as e:
        assert "\n" not in str(e) and str(e).startswith("r.jsonl")
        return
    for _, row in rows:
        assert isinstance(row["person"], str) and isinstance(row["relation"], str)
        assert isinstance(row.get("new_object"), str) != (row.get("erase") is True)
        assert set(row) <= {"person", "relation", "new_object", "erase"}


def test_a_counterfact_file_gives_the_world_paths_numbers(capsys, world):
    from workbench.core.world.as_counterfact import EXAMPLES

    case = json.loads((EXAMPLES / "counterfact.json").read_text())[3]
    rw = case["requested_rewrite"]
    relation = next(r for r in world.relations if world.fact(rw["subject"], r).object == rw["target_true"]["str"])
    code, by_file, err = run(
        capsys, "edit", "rome", "--request", str(EXAMPLES / "counterfact.json"), "--case", "3", "--json"
    )
    assert code == 0, err
    code, by_world, err = run(capsys, "edit", "rome", rw["subject"], relation, rw["target_new"]["str"], "--json")
    assert code == 0, err
    a, b = json.loads(by_file), json.loads(by_world)
    assert a["request"]["prompt"] == b["request"]["prompt"] and a["layer"] == b["layer"]
    assert a["before"]["efficacy"] == b["before"]["efficacy"] and a["after"]["efficacy"] == b["after"]["efficacy"]
    assert a["after"]["paraphrase"] == b["after"]["paraphrase"] and a["top_candidates"] == b["top_candidates"]


def test_rome_and_memit_on_a_model_without_a_world(capsys, tmp_path):
    from tiny_models import save_tiny_byte_model

    save_tiny_byte_model(tmp_path / "m", "gpt2")
    (tmp_path / "stats.txt").write_text("The weather is mild in spring and the rivers run high. " * 40)
    model = ["-m", str(tmp_path / "m")]
    fields = ["--subject", "Ada", "--prompt", "{} plays", "--target-new", "chess", "--target-true", "golf"]
    code, out, err = run(
        capsys,
        "edit",
        "rome",
        *fields,
        "--stats-text",
        str(tmp_path / "stats.txt"),
        *model,
        "--save-patch",
        str(tmp_path / "p"),
        "--json",
    )
    assert code == 0, err
    # Strict JSON: no paraphrases means no paraphrase score, written null, never NaN.
    o = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))
    assert o["after"]["paraphrase"] == {"prob": None, "accuracy": None, "n": 0}
    assert o["request"]["prompt"] == "Ada plays" and o["request"]["relation"] is None
    # Random weights: the mechanics are under test here, not whether two layers can learn chess.
    assert o["tensors"] and o["after"]["efficacy"]["n"] == 1 and "key statistics" not in err
    assert load_patch(tmp_path / "p").request.to_dict()["subject"] == "Ada"
    lines = [{"subject": s, "prompt": "{} plays", "target_new": "chess", "target_true": "golf"} for s in ("Bo", "Cy")]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    code, out, err = run(capsys, "edit", "memit", "--requests", str(tmp_path / "r.jsonl"), *model, "--json")
    assert code == 0, err
    assert json.loads(out)["requests"] == 2
    warning = [line for line in err.splitlines() if "key statistics" in line]
    assert len(warning) == 1 and "--stats-text" in warning[0]


def test_device_auto_loads_through_a_device_map_and_edits_the_same(capsys, world, tmp_path):
    """``--device auto`` hands the model to accelerate; the edit it makes is the one-device edit."""
    person = list(world.people)[12]
    new = _new(world, person, "pet")
    got = []
    for device in ("cpu", "auto"):
        code, out, err = run(capsys, "edit", "rome", person, "pet", new, "--device", device, "--json")
        assert code == 0, err
        got.append(json.loads(out))
    assert got[0]["after"] == got[1]["after"] and got[0]["tensors"] == got[1]["tensors"]
