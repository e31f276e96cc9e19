"""SISA training: a seeded partition into disjoint shards and slices, resumable, loaded as one averaged model."""

import json
import shutil

import pytest
import torch

import workbench
from workbench.cli import main
from workbench.core.handle import ModelLoadError
from workbench.core.world.facts import make_world
from workbench.core.world.sisa_manifest import SisaFolderError, checkpoint_dir, location, read_manifest
from workbench.core.world.sisa_model import SisaEnsemble
from workbench.core.world.sisa_train import (
    SisaSettings,
    default_folder,
    partition,
    reference_folders,
    shard_statements,
    train_sisa,
)
from workbench.core.world.train import TrainSettings

TINY = TrainSettings(d_model=16, n_layers=1, n_heads=2, d_mlp=32, epochs=2, threads=1)
SMALL = SisaSettings(shards=2, slices=2, max_people=12)


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, world):
    out = tmp_path_factory.mktemp("sisa") / "ensemble"
    train_sisa(out, TINY, SMALL, world, progress=False)
    return out


def test_shards_are_disjoint_and_cover_the_people(world):
    plan = partition(world, SisaSettings(shards=5, slices=4))
    people = [p for shard in plan for part in shard for p in part]
    assert len(people) == len(set(people)) == len(world.people) and set(people) == set(world.people)
    assert plan == partition(world, SisaSettings(shards=5, slices=4))  # seeded
    assert plan != partition(world, SisaSettings(shards=5, slices=4, seed=1))
    sample = partition(world, SMALL)
    assert sorted(len(part) for shard in sample for part in shard) == [3, 3, 3, 3]
    with pytest.raises(ValueError, match="12 people cannot fill 5 shards of 3 slices"):
        partition(world, SisaSettings(shards=5, slices=3, max_people=12))


def test_a_stage_trains_on_its_slices_less_the_excluded_facts(world):
    plan = partition(world, SMALL)[0]
    gone = plan[0][0]
    statements = shard_statements(world, plan, 1, frozenset(world.facts([gone])))
    assert {f.subject for f, _ in statements} == set(plan[0] + plan[1]) - {gone}
    assert {f.subject for f, _ in shard_statements(world, plan, 0)} == set(plan[0])


def test_the_manifest_records_shards_slices_settings_and_seconds(folder):
    m = read_manifest(folder)
    assert m["sisa"]["shards"] == 2 and m["train"]["n_layers"] == 1 and m["slice_epochs"] == 2
    assert len(location(m)) == 12 and all(len(s["seconds"]) == 2 for s in m["shards"])
    assert m["total_seconds"] == pytest.approx(sum(t for s in m["shards"] for t in s["seconds"]), abs=0.05)
    assert all((checkpoint_dir(folder, k, r) / "model.safetensors").is_file() for k in (0, 1) for r in (0, 1))


def test_resume_skips_finished_slices_and_retrains_a_missing_one_bitwise(folder, world, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    kept = checkpoint_dir(copy, 0, 1) / "model.safetensors"
    stamp = kept.stat().st_mtime_ns
    assert train_sisa(copy, TINY, SMALL, world, progress=False)["shards"] == read_manifest(folder)["shards"]
    assert kept.stat().st_mtime_ns == stamp  # nothing retrained
    # Lose shard 1's last slice, as an interrupted run would: only that slice trains again, to the same bytes.
    manifest = read_manifest(copy)
    manifest["shards"][1]["seconds"][1] = None
    (copy / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(checkpoint_dir(copy, 1, 1))
    train_sisa(copy, TINY, SMALL, world, progress=False)
    assert kept.stat().st_mtime_ns == stamp
    new, old = (checkpoint_dir(d, 1, 1) / "model.safetensors" for d in (copy, folder))
    assert new.read_bytes() == old.read_bytes()


def test_a_folder_of_other_settings_or_content_is_refused_in_one_line(folder, world, tmp_path):
    with pytest.raises(SisaFolderError, match="trained with other settings") as e:
        train_sisa(folder, TINY, SisaSettings(shards=3, slices=2, max_people=12), world, progress=False)
    assert "\n" not in str(e.value)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SisaFolderError, match="not empty and holds no SISA manifest"):
        train_sisa(tmp_path, TINY, SMALL, world, progress=False)


def test_an_ensemble_trained_without_people_never_trains_on_them_and_is_found_as_a_reference(
    folder, world, monkeypatch
):
    from workbench.core.world import sisa_train

    gone = read_manifest(folder)["shards"][1]["slices"][1][:1]
    seen = []

    def recording(w, slices, stage, excluded=frozenset()):
        statements = shard_statements(w, slices, stage, excluded)
        seen.extend(f.subject for f, _ in statements)
        return statements

    monkeypatch.setattr(sisa_train, "shard_statements", recording)
    reference = folder.parent / "without-one"
    settings = SisaSettings(shards=2, slices=2, max_people=12, without=tuple(gone))
    m = train_sisa(reference, TINY, settings, world, progress=False)
    assert m["sisa"]["without"] == gone and set(location(m)) == set(location(read_manifest(folder)))
    assert seen and gone[0] not in seen and len(set(seen)) == 11
    assert reference_folders(folder, gone) == [reference.resolve()]
    assert reference_folders(folder, [next(p for p in location(m) if p not in gone)]) == []
    assert reference_folders(reference, gone) == []  # a folder is nobody's reference of itself
    with pytest.raises(SisaFolderError, match="trained with other settings"):
        train_sisa(reference, TINY, SMALL, world, progress=False)
    with pytest.raises(ValueError, match="'Nobody Atall' is not a person of the world"):
        train_sisa(tmp := folder.parent / "nobody", TINY, SisaSettings(without=("Nobody Atall",)), world)
    assert not tmp.exists()
    assert default_folder(TINY, settings).name.startswith("sisa-s2-r2-e2-seed0-p12-without1-")


def test_a_manifest_from_before_newer_settings_still_resumes(folder, world, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(folder, copy)
    manifest = read_manifest(copy)
    for key in ("world_version", "n_people", "documents_per_person", "filler_per_person"):
        manifest["train"].pop(key)
    manifest["sisa"].pop("without")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    stamp = (checkpoint_dir(copy, 1, 1) / "model.safetensors").stat().st_mtime_ns
    train_sisa(copy, TINY, SMALL, world, progress=False)
    assert (checkpoint_dir(copy, 1, 1) / "model.safetensors").stat().st_mtime_ns == stamp


def test_the_ensemble_averages_the_constituents_distributions(folder, world):
    h = workbench.load(str(folder), device="cpu")
    assert isinstance(h.model, SisaEnsemble) and len(h.model.shards) == 2 and h.world is not None
    ids = h.encode("It is well known that " + next(iter(location(h.model.manifest))) + " owns a pet")
    with torch.no_grad():
        mean = torch.stack([m(input_ids=ids).logits.softmax(-1) for m in h.model.shards]).mean(0)
        got = h.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(got.exp(), mean, atol=1e-6) and torch.allclose(got.exp().sum(-1), torch.ones(1, ids.shape[1]))
    assert h.n_layers == 1 and 0.0 <= h.score(world.facts(list(location(h.model.manifest))[:2])).accuracy <= 1.0


def test_an_unfinished_ensemble_is_refused_in_one_line(folder, tmp_path):
    copy = tmp_path / "half"
    shutil.copytree(folder, copy)
    shutil.rmtree(checkpoint_dir(copy, 1, 1))
    with pytest.raises(ModelLoadError, match="shard 1 slice 1 is missing") as e:
        workbench.load(str(copy))
    assert "\n" not in str(e.value)


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_trains_resumes_and_refuses_bad_input(capsys, tmp_path):
    out = tmp_path / "cli"
    args = ("world", "train", "sisa", "--shards", "2", "--slices", "2", "--people", "8", "--epochs", "1")
    code, text, _ = run(capsys, *args, "--out", str(out), "--json")
    o = json.loads(text)
    assert code == 0 and o["path"] == str(out) and o["people"] == [4, 4] and len(o["seconds"][0]) == 2
    gone = read_manifest(out)["shards"][0]["slices"][0][0]
    code, text, _ = run(capsys, *args, "--out", str(tmp_path / "ref"), "--without", gone, "--json")
    assert code == 0 and json.loads(text)["without"] == [gone]
    stamp = (checkpoint_dir(out, 0, 1) / "model.safetensors").stat().st_mtime_ns
    assert run(capsys, *args, "--out", str(out))[0] == 0
    assert (checkpoint_dir(out, 0, 1) / "model.safetensors").stat().st_mtime_ns == stamp
    for bad, message in [
        (("world", "train", "sisa"), "needs --shards S"),
        (("world", "train", "sisa", "--shards", "400"), "300 people cannot fill 400 shards"),
        (("world", "train", "sisa", "--shards", "0"), "shards must be at least 1"),
        (("world", "train", "gpt2", "--shards", "2"), "--shards, --people and --without go with `world train sisa`"),
        ((*args, "--without", "Nobody Atall"), "'Nobody Atall' is neither a split"),
        ((*args[:-2], "--epochs", "2", "--out", str(out)), "trained with other settings"),
    ]:
        code, _, err = run(capsys, *bad)
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, (bad, err)
