"""Collateral damage: groups are disjoint, a no-op moves nothing, a real change is seen and undone."""

import math

import torch

from edit.edit import Delta, Edit
from workbench.verify.collateral import GROUPS, CollateralSettings, collateral, collateral_groups

SMALL = CollateralSettings(max_facts=30, kl_prompts=64, heldout_texts=200)


def test_groups_are_disjoint_and_sampled(world):
    fact = world.facts()[0]
    groups = collateral_groups(world, [fact], SMALL)
    assert list(groups) == list(GROUPS)
    assert groups["edited"] == groups["paraphrase"] == [fact]
    assert len(groups["same_person"]) == 5 and all(f.subject == fact.subject for f in groups["same_person"])
    assert all(f.object == fact.object and f.relation == fact.relation for f in groups["same_object"])
    assert all(f.object != fact.object and f.relation == fact.relation for f in groups["same_relation"])
    assert all(f.relation != fact.relation and f.subject != fact.subject for f in groups["other"])
    rest = [f for g in GROUPS[2:] for f in groups[g]]
    assert len(rest) == len(set(rest)) and fact not in rest
    assert all(len(groups[g]) <= 30 for g in GROUPS)
    assert collateral_groups(world, [fact], SMALL) == groups  # seeded


def test_noise_edit_is_measured_and_its_state_kept(handle, world):
    name = "transformer.h.1.mlp.c_proj.weight"
    before = handle.model.get_parameter(name).detach().clone()
    noise = torch.randn(before.shape, generator=torch.Generator().manual_seed(0)) * 0.5
    edit = Edit("noise", {}, {name: Delta(dense=noise)})
    fact = world.facts()[0]
    c = collateral(handle, edit, [fact], SMALL)
    assert not edit.applied and torch.equal(handle.model.get_parameter(name), before)
    assert c.groups["edited"].n == 1 and c.groups["other"].n == 30
    assert c.groups["edited"].prob_before > 0.99 and c.groups["edited"].accuracy_before == 1.0
    assert c.kl > 0.0 and c.heldout_loss_after != c.heldout_loss_before
    g = c.groups["other"]
    assert math.isclose(g.change, g.prob_after - g.prob_before, abs_tol=1e-5)
    assert {r["group"] for r in c.facts} == {g for g in GROUPS if c.groups[g].n}
    assert len(c.facts) == sum(c.groups[g].n for g in GROUPS)
    edit.apply(handle.model)  # an applied edit is measured the same way and left applied
    try:
        again = collateral(handle, edit, [fact], SMALL)
        assert edit.applied
    finally:
        edit.revert(handle.model)
    assert again.to_dict()["groups"] == c.to_dict()["groups"] and math.isclose(again.kl, c.kl, rel_tol=1e-4)
