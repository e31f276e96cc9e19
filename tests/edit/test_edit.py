"""The Edit object: reversible bitwise, touches only its declared tensors, all or nothing."""

import pytest
import torch

import workbench
from edit.edit import Delta, Edit, EditError, EditSequence, restored_on_failure
from workbench.core.hashing import tensor_hash


@pytest.fixture()
def model():
    return workbench.load("world", device="cpu").model


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


def _rank_one(model, name, seed=0, scale=0.1):
    p = model.get_parameter(name)
    g = torch.Generator().manual_seed(seed)
    return Delta(left=scale * torch.randn(p.shape[0], 1, generator=g), right=torch.randn(p.shape[1], 1, generator=g))


def test_apply_touches_only_declared_tensors_and_revert_is_bitwise(model):
    sites = workbench.load("world").sites
    names = [sites.mlp_out_path(1) + ".weight", sites.mlp_out_path(2) + ".weight"]
    before = _hashes(model)
    originals = {n: model.get_parameter(n).detach().clone() for n in names}
    e = Edit("test", {"why": "check"}, {n: _rank_one(model, n, i) for i, n in enumerate(names)})
    e.apply(model)
    after = _hashes(model)
    assert {n for n in before if before[n] != after[n]} == set(names)
    assert e.hashes_before == {n: before[n] for n in names} and e.hashes_after == {n: after[n] for n in names}
    for n in names:
        torch.testing.assert_close(
            model.get_parameter(n).detach() - originals[n], e.deltas[n].tensor(), atol=1e-6, rtol=0
        )
    e.revert(model)
    assert _hashes(model) == before and not e.applied


def test_non_finite_delta_leaves_the_model_unchanged(model):
    names = [n for n, _ in model.named_parameters()][:3]
    bad = {n: Delta(dense=torch.zeros_like(model.get_parameter(n))) for n in names}
    bad[names[-1]].dense[0] = float("inf")  # the last tensor fails after the first two were computed
    before = _hashes(model)
    with pytest.raises(EditError, match="non-finite values"):
        Edit("bad", {}, bad).apply(model)
    assert _hashes(model) == before


def test_refusals(model):
    name = "transformer.h.0.mlp.c_proj.weight"
    with pytest.raises(EditError, match="no parameter 'nope'"):
        Edit("x", {}, {"nope": Delta(dense=torch.zeros(1))}).apply(model)
    with pytest.raises(EditError, match="has shape"):
        Edit("x", {}, {name: Delta(dense=torch.zeros(3))}).apply(model)
    with pytest.raises(EditError, match="either dense or a pair"):
        Delta()
    e = Edit("x", {}, {name: _rank_one(model, name)})
    with pytest.raises(EditError, match="not applied"):
        e.revert(model)
    e.apply(model)
    with pytest.raises(EditError, match="already applied"):
        e.apply(model)
    e.revert(model)


def test_an_edit_only_applies_to_the_weights_it_was_made_on(model):
    name = "transformer.h.0.mlp.c_proj.weight"
    first, second = (Edit(m, {}, {name: _rank_one(model, name, i)}) for i, m in enumerate("ab"))
    second.hashes_before = {name: tensor_hash(model.get_parameter(name))}
    first.apply(model)
    with pytest.raises(EditError, match="differs from the weights"):
        second.apply(model)
    first.revert(model)
    second.apply(model).revert(model)


def test_sequence_applies_in_order_and_reverts_bitwise(model):
    name = "transformer.h.2.mlp.c_proj.weight"
    before = _hashes(model)
    a = Edit("a", {}, {name: _rank_one(model, name, 1)}).apply(model)
    b = Edit("b", {}, {name: _rank_one(model, name, 2)}, hashes_before={name: tensor_hash(model.get_parameter(name))})
    b.apply(model)
    after = _hashes(model)
    EditSequence([a, b]).revert(model)
    assert _hashes(model) == before
    EditSequence([a, b]).apply(model)
    assert _hashes(model) == after
    EditSequence([a, b]).revert(model)
    with pytest.raises(EditError, match="differs from the weights"):
        EditSequence([b, a]).apply(model)
    assert _hashes(model) == before


def test_interrupt_inside_an_editor_restores_the_weights(model):
    name = "transformer.h.1.mlp.c_fc.weight"
    before = _hashes(model)
    with pytest.raises(KeyboardInterrupt), restored_on_failure(model, [name]):
        model.get_parameter(name).data.mul_(3.0)
        raise KeyboardInterrupt
    assert _hashes(model) == before


def test_applied_to_reverts_on_error(model):
    name = "transformer.h.0.mlp.c_proj.weight"
    before = _hashes(model)
    with pytest.raises(RuntimeError), Edit("x", {}, {name: _rank_one(model, name)}).applied_to(model):
        assert _hashes(model) != before
        raise RuntimeError("boom")
    assert _hashes(model) == before
