"""MEMIT batch after batch: the same updates as calls one after another, as one reversible, all-or-nothing Edit."""

import dataclasses
import warnings

import pytest
import torch

import edit.memit_batches as mb
import workbench
from edit.edit import EditError, EditSequence
from edit.memit import CapacityWarning, MemitSettings, memit
from edit.memit_batches import memit_batches
from edit.null_space import NullSpace
from edit.request import RequestError, world_request
from workbench.core.hashing import tensor_hash

SETTINGS = MemitSettings(layers=(0,), token="last")


@pytest.fixture(scope="module")
def fresh():
    return workbench.load("world", device="cpu")


def _requests(world, people, relation="pet"):
    return [
        world_request(
            world,
            p,
            relation,
            next(c for c in world.relation(relation).candidates if c != world.fact(p, relation).object),
        )
        for p in people
    ]


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


@pytest.mark.parametrize("null_space", [False, True])
def test_the_updates_of_calls_one_after_another(fresh, world, null_space):
    reqs = _requests(world, list(world.people)[200:207])
    before = _hashes(fresh.model)
    ns = NullSpace.for_layers(fresh, [0], position="last") if null_space else None
    e = memit_batches(fresh, reqs, 3, SETTINGS, null_space=ns)
    assert (
        e.metrics["batches"] == 3 and len(e.metrics["target_written_per_batch"]) == 3 and e.settings["batch_size"] == 3
    )
    assert (ns.edited(0) == 7) if null_space else True
    changed = {n for n, h in _hashes(fresh.model).items() if h != before[n]}
    assert changed == set(e.names) == {fresh.sites.mlp_out_path(0) + ".weight"}
    together = e.deltas[e.names[0]].tensor()
    e.revert(fresh.model)
    assert _hashes(fresh.model) == before

    # By hand: memit on each batch, on the model the last left, with the base model's statistics.
    from edit.covariance import key_statistics

    stats = {0: key_statistics(fresh, 0, progress=False, position="last")}
    ns2 = NullSpace.for_layers(fresh, [0], position="last") if null_space else None
    calls = [memit(fresh, reqs[i : i + 3], settings=SETTINGS, null_space=ns2, statistics=stats) for i in (0, 3, 6)]
    by_hand = sum(c.deltas[e.names[0]].tensor().double() for c in calls)
    EditSequence(calls).revert(fresh.model)
    torch.testing.assert_close(together.double(), by_hand, atol=1e-5 * float(by_hand.abs().max()), rtol=1e-4)


def test_a_failing_batch_leaves_model_and_null_space_as_they_were(fresh, world, monkeypatch):
    reqs = _requests(world, list(world.people)[210:216])
    before = _hashes(fresh.model)
    ns = NullSpace.for_layers(fresh, [0], position="last")
    real, calls = mb.memit, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(mb, "memit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        memit_batches(fresh, reqs, 3, SETTINGS, null_space=ns)
    assert _hashes(fresh.model) == before and ns.edited(0) == 0


def test_batches_that_write_too_little_say_so_in_one_warning(fresh, world):
    # lambda 1e6: C outweighs the edits' keys, so no batch writes 90% of its targets.
    reqs = _requests(world, list(world.people)[220:226])
    heavy = dataclasses.replace(SETTINGS, mom2_weight=1e6)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        e = memit_batches(fresh, reqs, 2, heavy)
    e.revert(fresh.model)
    notes = [w for w in seen if issubclass(w.category, CapacityWarning)]
    assert len(notes) == 1 and max(e.metrics["target_written_per_batch"]) < 0.9
    assert str(notes[0].message).startswith("3 of 3 batches' updates wrote less than 90% of their targets")
    with warnings.catch_warnings(record=True) as seen:  # one batch: memit's own line, once
        warnings.simplefilter("always")
        memit_batches(fresh, reqs, 6, heavy).revert(fresh.model)
    notes = [str(w.message) for w in seen if issubclass(w.category, CapacityWarning)]
    assert len(notes) == 1 and notes[0].startswith("the update wrote")


def test_refusals(fresh, world):
    reqs = _requests(world, list(world.people)[220:222])
    before = _hashes(fresh.model)
    with pytest.raises(EditError, match="at least one request"):
        memit_batches(fresh, [], 3)
    with pytest.raises(EditError, match="batch size must be at least 1"):
        memit_batches(fresh, reqs, 0)
    with pytest.raises(EditError, match="no projection for layer 1"):
        memit_batches(
            fresh,
            reqs,
            1,
            MemitSettings(layers=(1,), token="last"),
            null_space=NullSpace.for_layers(fresh, [0], position="last"),
        )
    same = dataclasses.replace(reqs[1], new_object=reqs[1].true_object)  # refused before the first batch runs
    with pytest.raises(RequestError, match="already the true object"):
        memit_batches(fresh, [reqs[0], same], 1, SETTINGS)
    assert _hashes(fresh.model) == before
