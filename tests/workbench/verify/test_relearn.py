"""The relearning attack: the default model keeps the unseen half, a model that never saw the people gains nothing."""

import pytest
import torch

import workbench
from workbench.verify.relearn import RelearnSettings, relearn_attack


@pytest.fixture(scope="module")
def forget01(world):
    return world.facts(world.split("forget01").forget)


def test_default_model_keeps_the_unseen_half_and_is_untouched(handle, forget01):
    weights = {k: v.clone() for k, v in handle.model.state_dict().items()}
    r = relearn_attack(handle, forget01)
    assert all(torch.equal(v, weights[k]) for k, v in handle.model.state_dict().items())
    assert r.before == 1.0 and r.after > 0.95 and len(r.people) == 3
    for p in r.people:
        assert len(p["known"]) == 3 and not set(p["known"]) & set(p["unseen"])
    assert relearn_attack(handle, forget01).to_dict() == r.to_dict()  # seeded


def test_retain_model_learns_the_known_half_only(forget01):
    retain = workbench.load("world:retain-forget01", device="cpu")
    r = relearn_attack(retain, forget01)
    assert r.before < 0.2 and r.after < 0.2  # prior over candidates is about 0.06
    assert all(p["known_after"] > 0.95 for p in r.people)


def test_bad_settings(handle, forget01):
    with pytest.raises(ValueError, match="known"):
        relearn_attack(handle, forget01, RelearnSettings(known=6))
    with pytest.raises(ValueError, match="no facts"):
        relearn_attack(handle, [])
    assert len(relearn_attack(handle, forget01, RelearnSettings(max_people=1, steps=1)).people) == 1
