"""Patch files: round trip, bitwise revert (also from the file alone), composition, refusals."""

import json

import pytest
import torch

import workbench
from edit.edit import Delta, Edit, EditError, EditSequence
from edit.memit import MemitSettings, memit
from edit.patch import describe_patch, load_patch, revert_patch, save_patch
from edit.request import world_request
from edit.rome import RomeSettings, rome
from workbench.core.hashing import tensor_hash


@pytest.fixture()
def fresh():
    return workbench.load("world", device="cpu")


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


def _edit(h, i=3):
    w = h.world
    p = list(w.people)[i]
    new = next(c for c in w.relation("pet").candidates if c != w.fact(p, "pet").object)
    return rome(h, world_request(w, p, "pet", new), settings=RomeSettings(layer=0, token="last"), apply=False)


def test_round_trip_applies_like_the_original_and_reverts_bitwise(fresh, tmp_path):
    e = _edit(fresh)
    base = _hashes(fresh.model)
    e.apply(fresh.model)
    edited = _hashes(fresh.model)
    e.revert(fresh.model)
    save_patch(e, tmp_path / "a.patch")
    back = load_patch(tmp_path / "a.patch")
    assert back.location == e.location and back.settings["layer"] == 0
    back.apply(fresh.model)
    assert _hashes(fresh.model) == edited and back.hashes_after == e.hashes_after
    back.revert(fresh.model)
    assert _hashes(fresh.model) == base


def test_refuses_another_base_and_tampering(fresh, tmp_path):
    e = _edit(fresh)
    save_patch(e, tmp_path / "a.patch")
    other = workbench.load("world:retain-forget05", device="cpu")
    with pytest.raises(EditError, match="differs from the weights"):
        load_patch(tmp_path / "a.patch").apply(other.model)
    raw = (tmp_path / "a.patch.safetensors").read_bytes()
    (tmp_path / "a.patch.safetensors").write_bytes(raw[:-4] + bytes(4))
    with pytest.raises(EditError, match="does not match its manifest"):
        load_patch(tmp_path / "a.patch")
    with pytest.raises(EditError, match="no patch at"):
        load_patch(tmp_path / "missing.patch")


MLP = "transformer.h.1.mlp.c_proj.weight"


def _nudge(scale, seed):
    g = torch.Generator().manual_seed(seed)
    return Edit(
        f"nudge{seed}",
        {},
        {MLP: Delta(left=torch.randn(512, 1, generator=g) * scale, right=torch.randn(128, 1, generator=g))},
    )


def test_a_rome_patch_reverts_from_disk_bitwise_and_stays_small(fresh, tmp_path):
    base = _hashes(fresh.model)
    e = _edit(fresh).apply(fresh.model)
    edited = _hashes(fresh.model)
    save_patch(e, tmp_path / "r.patch")
    name = e.names[0]
    w = fresh.model.get_parameter(name).detach().clone()
    assert tensor_hash(w - e.deltas[name].tensor()) != base[name]  # why plain subtraction is not a revert
    assert revert_patch(tmp_path / "r.patch", fresh.model).method == "rome"
    assert _hashes(fresh.model) == base
    load_patch(tmp_path / "r.patch").apply(fresh.model)
    assert _hashes(fresh.model) == edited
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert size < w.numel() * w.element_size() / 5
    info = describe_patch(tmp_path / "r.patch")
    assert info["revertible_from_file"] and info["tensors"][0]["rank"] == 1 and info["bytes"] == size


def test_patches_compose_in_order_and_revert_last_first(fresh, tmp_path):
    base = _hashes(fresh.model)
    a, b = _nudge(0.2, 1).apply(fresh.model), _nudge(0.1, 2).apply(fresh.model)
    both = _hashes(fresh.model)
    save_patch(a, tmp_path / "a")
    save_patch(b, tmp_path / "b")
    b.revert(fresh.model)
    a.revert(fresh.model)
    with pytest.raises(EditError, match="differs from the weights this nudge2 edit was made on"):
        EditSequence([load_patch(tmp_path / "b"), load_patch(tmp_path / "a")]).apply(fresh.model)
    assert _hashes(fresh.model) == base
    EditSequence([load_patch(tmp_path / "a"), load_patch(tmp_path / "b")]).apply(fresh.model)
    assert _hashes(fresh.model) == both
    with pytest.raises(EditError, match=f"{MLP} is not what this nudge1 patch produced"):
        revert_patch(tmp_path / "a", fresh.model)
    assert _hashes(fresh.model) == both
    revert_patch(tmp_path / "b", fresh.model)
    revert_patch(tmp_path / "a", fresh.model)
    assert _hashes(fresh.model) == base


def test_revert_data_from_a_base_and_old_patches(fresh, tmp_path):
    e = _nudge(0.2, 3)
    with pytest.raises(EditError, match="names no base"):  # never applied, no base: it names no base
        save_patch(e, tmp_path / "n")
    assert not list(tmp_path.iterdir())
    e.apply(fresh.model).revert(fresh.model)
    save_patch(e, tmp_path / "n")  # its base is named, but neither applied nor given: no revert data
    assert not describe_patch(tmp_path / "n")["revertible_from_file"]
    manifest = json.loads((tmp_path / "n.json").read_text())
    manifest["format"] = "knowledge-workbench/patch/1"
    (tmp_path / "n.json").write_text(json.dumps(manifest))
    old = load_patch(tmp_path / "n").apply(fresh.model)  # an old file still loads and applies
    with pytest.raises(EditError, match="holds no revert data"):
        revert_patch(tmp_path / "n", fresh.model)
    old.revert(fresh.model)
    base = _hashes(fresh.model)
    save_patch(e, tmp_path / "b", base=fresh.model)
    load_patch(tmp_path / "b").apply(fresh.model)
    revert_patch(tmp_path / "b", fresh.model)
    assert _hashes(fresh.model) == base
    e.hashes_before = {MLP: "0" * 64}
    with pytest.raises(EditError, match="of the given base differs from the weights this nudge3 edit was made on"):
        save_patch(e, tmp_path / "c", base=fresh.model)


def test_the_request_is_written_as_before_and_read_back_as_its_record(fresh, tmp_path):
    e = _edit(fresh)
    (asked,) = e.request.requests
    path = save_patch(e, tmp_path / "q.patch")
    text = path.read_text()
    manifest = json.loads(text)
    # The whole file is what it was when the request was stored as the request's own dict.
    assert text == json.dumps({**manifest, "request": asked.to_dict()}, indent=1, default=str)
    back = load_patch(path)
    assert back.request == e.request and back.request.kind == "rewrite"
    again = json.loads(save_patch(back, tmp_path / "again.patch").read_text())
    assert json.dumps(again["request"]) == json.dumps(manifest["request"])
    assert describe_patch(path)["request"] == manifest["request"]


def test_a_one_request_memit_edit_saves_and_loads(fresh, tmp_path):
    # Its deltas are one column wide, with the long stride that a byte view refuses.
    w = fresh.world
    p = list(w.people)[5]
    new = next(c for c in w.relation("pet").candidates if c != w.fact(p, "pet").object)
    e = memit(fresh, [world_request(w, p, "pet", new)], settings=MemitSettings(layers=(0,), token="last"), apply=False)
    assert any(d.rank == 1 for d in e.deltas.values())
    back = load_patch(save_patch(e, tmp_path / "one.patch"))
    assert {n: tensor_hash(d.tensor()) for n, d in back.deltas.items()} == {
        n: tensor_hash(d.tensor()) for n, d in e.deltas.items()
    }


@pytest.mark.parametrize("keep", [0, 1], ids=["no base hashes", "some base hashes"])
def test_a_patch_that_does_not_name_its_whole_base_is_refused(fresh, tmp_path, keep):
    e = _edit(fresh)
    e.deltas["transformer.wte.weight"] = Delta(dense=torch.zeros_like(fresh.model.transformer.wte.weight))
    manifest_path = save_patch(e, tmp_path / "p.patch", base=fresh.model)
    manifest = json.loads(manifest_path.read_text())
    assert len(manifest["hashes_before"]) == 2
    manifest["hashes_before"] = dict(list(manifest["hashes_before"].items())[:keep])
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(EditError, match="names no base hash"):
        load_patch(tmp_path / "p.patch")


def test_an_edit_that_names_part_of_its_base_writes_nothing(fresh):
    e = _edit(fresh)
    name = e.names[0]
    e.deltas["transformer.wte.weight"] = Delta(dense=torch.ones_like(fresh.model.transformer.wte.weight))
    e.hashes_before = {name: tensor_hash(fresh.model.get_parameter(name))}
    before = _hashes(fresh.model)
    with pytest.raises(EditError, match="names no base hash for transformer.wte.weight"):
        e.apply(fresh.model)
    assert _hashes(fresh.model) == before


def test_a_patch_is_not_overwritten_unless_asked_and_is_written_whole(fresh, tmp_path, monkeypatch):
    e = _edit(fresh).apply(fresh.model)
    first = save_patch(e, tmp_path / "x.patch")
    kept = first.read_bytes(), first.with_suffix(".safetensors").read_bytes()
    with pytest.raises(EditError, match="already exists"):
        save_patch(e, tmp_path / "x.patch")
    with pytest.raises(EditError, match="is a directory"):
        save_patch(e, tmp_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("edit.patch.save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_patch(e, tmp_path / "x.patch", overwrite=True)
    # The old patch is whole and nothing half-written lies beside it.
    assert (first.read_bytes(), first.with_suffix(".safetensors").read_bytes()) == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.patch.json", "x.patch.safetensors"]
    monkeypatch.undo()
    assert save_patch(e, tmp_path / "x.patch", overwrite=True) == first
    assert load_patch(first).names == e.names
    e.revert(fresh.model)


BAD_VALUES = [None, 3, "text", [], {}, [1, 2], {"x": 1}]


def test_every_damaged_manifest_field_is_a_one_line_refusal(fresh, tmp_path):
    e = _edit(fresh).apply(fresh.model)
    good = json.loads(save_patch(e, tmp_path / "g.patch").read_text())
    e.revert(fresh.model)
    tensors = (tmp_path / "g.patch.safetensors").read_bytes()
    name = e.names[0]
    damaged = [{k: v for k, v in good.items() if k != field} for field in good if field not in ("format",)]
    damaged += [{**good, field: bad} for field in good if field != "format" for bad in BAD_VALUES]
    damaged += [{**good, "deltas": {name: bad}} for bad in BAD_VALUES]
    damaged += [{**good, "deltas": {name: {**good["deltas"][name], "sha256": {"middle": "0" * 64}}}}]
    damaged += [{**good, "deltas": {"other.weight": good["deltas"][name]}}]
    loaded = []
    for i, manifest in enumerate(damaged):
        (tmp_path / f"d{i}.json").write_text(json.dumps(manifest))
        (tmp_path / f"d{i}.safetensors").write_bytes(tensors)
        try:
            load_patch(tmp_path / f"d{i}").apply(fresh.model).revert(fresh.model)
        except EditError as err:
            assert "\n" not in str(err)
        else:
            loaded.append({k: v for k, v in manifest.items() if good.get(k) != v} or set(good) - set(manifest))
    # What may load: descriptions that change nothing the patch does or checks.
    described = {"method", "request", "settings", "metrics", "location", "hashes_after"}
    assert all(set(x) <= described for x in loaded), loaded
