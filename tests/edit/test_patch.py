"""Patch files: round trip, bitwise revert, refusal on another base or tampered tensors."""

import pytest

import workbench
from edit.edit import EditError, tensor_hash
from edit.patch import load_patch, save_patch
from edit.request import world_request
from edit.rome import RomeSettings, rome


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
