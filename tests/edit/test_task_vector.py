"""Task-vector negation: fine-tune on the forget set in a mask, subtract alpha x the change, revert bitwise."""

import json
from dataclasses import replace

import pytest
import torch
from mask_checks import assert_forgotten_inside_the_mask, hashes

from edit.forget import METHODS
from edit.forget_request import ForgetError, forget_request
from edit.task_vector import TaskVectorSettings, task_vector
from locate.location import Location, Site
from workbench.cli import main

FAST = TaskVectorSettings(steps=10, lr=1e-2, check_samples=10, fisher_examples=64)


@pytest.fixture(scope="module")
def person(world):
    return forget_request(world, list(world.people)[11])


def test_person_is_forgotten_inside_the_mask_and_reverted(handle, person):
    before = hashes(handle.model)
    originals = {n: p.detach().clone() for n, p in handle.model.named_parameters()}
    e = task_vector(handle, person, settings=FAST, progress=False)
    try:
        assert_forgotten_inside_the_mask(handle, person, e, before, originals)
        m = e.metrics
        assert m["finetune_steps"] == 10 and m["finetune_loss"][-1] < m["finetune_loss"][0] and m["tau_norm"] > 0
        assert e.method == "task-vector" and e.settings["alpha"] == 2.0
    finally:
        e.revert(handle.model)
    assert hashes(handle.model) == before


def test_the_edit_is_minus_alpha_tau_on_a_given_location(handle, person):
    w = handle.sites.mlp_out_path(0) + ".weight"
    loc = Location("manual", sites=[Site("parameter", param=w)], masks={w: list(range(0, 128 * 512, 7))})
    s = TaskVectorSettings(steps=3, alpha=1.0, check_samples=5)
    before = hashes(handle.model)
    one = task_vector(handle, person, loc, s, apply=False, progress=False)
    two = task_vector(
        handle, person, loc, TaskVectorSettings(steps=3, alpha=2.0, check_samples=5), apply=False, progress=False
    )
    assert hashes(handle.model) == before and one.names == two.names == [w] and one.location is loc
    delta = one.deltas[w].dense.flatten()
    outside = torch.ones_like(delta, dtype=torch.bool)
    outside[::7] = False
    assert delta[~outside].any() and not delta[outside].any()
    # The fine-tuning is seeded, so alpha only scales the same tau (exactly: by a power of two).
    assert torch.equal(two.deltas[w].dense, 2 * one.deltas[w].dense)


def test_settings_refuse_bad_values():
    with pytest.raises(ForgetError, match="alpha must be > 0"):
        TaskVectorSettings(alpha=-1.0)
    with pytest.raises(ForgetError, match="lr must be > 0"):
        TaskVectorSettings(lr=0.0)


def test_forget_command(capsys, world, monkeypatch):
    # The command takes the registry's settings; a smaller budget keeps the test short.
    small = {"steps": 10, "lr": 1e-2, "check_samples": 10, "fisher_examples": 64}
    monkeypatch.setitem(METHODS, "task-vector", replace(METHODS["task-vector"], fixed=small))
    person = list(world.people)[11]
    code = main(["forget", person, "--method", "task-vector", "--retain-facts", "30", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    o = json.loads(out)
    assert o["method"] == "task-vector" and o["after"]["forget"] < o["before"]["forget"] and o["tensors"]
