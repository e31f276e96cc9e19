"""Shipped models' readings kept on disk: read once, the same when read back, never served for an edited model."""

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from edit.edit import Delta, Edit
from workbench.verify import readings_cache, report
from workbench.verify.probe import ProbeSettings
from workbench.verify.readings import ReadSettings
from workbench.verify.relearn import RelearnSettings
from workbench.verify.report import VerifySettings

LIGHT = replace(
    VerifySettings.quick(),
    heldout_texts=100,
    read=ReadSettings(probe=ProbeSettings(train_people=20), relearn=RelearnSettings(max_people=1), bits=(8,)),
)


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(report, "_SHIPPED_CACHE", {})
    return tmp_path


def test_a_shipped_model_is_read_once_and_the_same_from_disk(fresh_cache, world, monkeypatch):
    person = world.split("forget01").forget[0]
    facts, retain = world.facts([person]), [f for f in world.facts() if f.subject != person]
    measured = []
    real = report._measure
    monkeypatch.setattr(report, "_measure", lambda *a: measured.append(1) or real(*a))
    first = report._shipped_readings("world:retain-forget01", facts, retain, LIGHT)
    report._SHIPPED_CACHE.clear()  # a new session: only the disk remembers
    again = report._shipped_readings("world:retain-forget01", facts, retain, LIGHT)
    assert len(measured) == 1 and len(list((fresh_cache / "readings").glob("*.safetensors"))) == 1
    (r1, f1), (r2, f2) = first, again
    assert r1.tables.keys() == r2.tables.keys() and r1.prior == r2.prior and r2.facts == facts
    for check, t in r1.tables.items():
        u = r2.tables[check]
        assert all(torch.equal(getattr(t, k), getattr(u, k)) for k in ("logprob", "length", "true", "fact")), check
    assert json.dumps(f1, sort_keys=True) == json.dumps(f2, sort_keys=True)
    f2["utility"]["accuracy"] = -1.0  # what a caller is handed is its own copy
    assert report._shipped_readings("world:retain-forget01", facts, retain, LIGHT)[1]["utility"]["accuracy"] >= 0
    # Another question (here: other settings) is read afresh.
    monkeypatch.setattr(report, "_measure", lambda *a: measured.append(2) or first)
    report._shipped_readings("world:retain-forget01", facts, retain, replace(LIGHT, heldout_texts=50))
    assert measured == [1, 2]


def test_an_unreadable_entry_is_read_afresh(fresh_cache, handle):
    key = readings_cache.entry_key(handle.model, ("q",))
    assert readings_cache.load_entry(key, []) is None
    (fresh_cache / "readings").mkdir()
    (fresh_cache / "readings" / f"{key}.json").write_text("{not json")
    (fresh_cache / "readings" / f"{key}.safetensors").write_bytes(b"\x00" * 8)
    assert readings_cache.load_entry(key, []) is None
    # Valid metadata beside a damaged or foreign tensor file.
    meta = {"model": "m", "checks": ["surface"], "prior": 0.1, "figures": {}}
    (fresh_cache / "readings" / f"{key}.json").write_text(json.dumps(meta))
    assert readings_cache.load_entry(key, []) is None
    save_file({"other": torch.zeros(1)}, str(fresh_cache / "readings" / f"{key}.safetensors"))
    assert readings_cache.load_entry(key, []) is None


def test_the_key_follows_every_weight(handle):
    name = handle.sites.param_names(3, "mlp")[-1]
    before = readings_cache.entry_key(handle.model, ("q",))
    nudge = Edit("noop", {}, {name: Delta(dense=torch.full_like(handle.model.get_parameter(name), 1e-6))})
    with nudge.applied_to(handle.model):
        assert readings_cache.entry_key(handle.model, ("q",)) != before
    assert readings_cache.entry_key(handle.model, ("q",)) == before


def test_an_edited_or_hooked_model_is_not_taken_for_the_shipped_one(handle):
    assert report._shipped_as(handle) == "world"
    name = handle.sites.param_names(0, "mlp")[-1]
    nudge = Edit("noop", {}, {name: Delta(dense=torch.full_like(handle.model.get_parameter(name), 1e-6))})
    with nudge.applied_to(handle.model):
        assert report._shipped_as(handle) is None
    hook = handle.sites.module(handle.model, 0, "mlp").register_forward_hook(lambda m, i, o: o)
    try:
        assert report._shipped_as(handle) is None
    finally:
        hook.remove()
    assert report._shipped_as(handle) == "world"
