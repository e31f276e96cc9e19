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


def test_world_train_stops_after_steps_and_says_how_to_resume(capsys, tmp_path):
    code, out, _ = run(capsys, "world", "train", "gpt2", "--out", str(tmp_path), "--epochs", "1", "--steps", "2")
    assert code == 0 and "gpt2: stopped at step 2 of " in out and "run the command again to resume" in out
    assert (tmp_path / "gpt2" / "training_progress.pt").exists()
    code, out, err = run(capsys, "world", "train", "gpt2", "--out", str(tmp_path), "--epochs", "2", "--steps", "1")
    assert code != 0 and "saved by a run with other settings (epochs: 1, not 2)" in err


def test_world_train_sisa_refuses_steps(capsys):
    code, _, err = run(capsys, "world", "train", "sisa", "--shards", "2", "--steps", "3")
    assert code != 0 and "--steps goes with the shipped models" in err


def test_world_train_refuses_a_device_it_cannot_train_on_in_one_line(capsys, tmp_path):
    for args, message in [
        (("gpt2", "--device", "gpu", "--steps", "1"), "--device 'gpu' is not a device"),
        (("gpt2", "--device", "meta", "--steps", "1"), "world models train on cpu or cuda, not 'meta'"),
        (("sisa", "--shards", "2", "--device", "cuda"), "`world train sisa` trains on the CPU"),
    ]:
        code, _, err = run(capsys, "world", "train", *args, "--out", str(tmp_path / "m"))
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, (args, err)


def test_world_train_names_the_v2_builds_among_its_choices(capsys):
    code, _, err = run(capsys, "world", "train", "v3-gpt2", "--steps", "1")
    assert code != 0 and "unknown world model 'v3-gpt2'" in err and "v2-gpt2" in err and "v2-retain-forget05" in err
