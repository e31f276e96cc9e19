"""Masked elements as flat leaves: the masked part of the full gradient, exact writes and restores."""

import torch
from tiny_models import tiny_model

from edit.masked_elements import masked_elements


def _loss(model):
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    return model(input_ids=ids, labels=ids).loss


def test_gradients_are_the_masked_part_of_the_full_gradient():
    model = tiny_model("gpt2")  # tied embeddings: one tensor, two uses
    names = ["transformer.wte.weight", "transformer.h.0.mlp.c_fc.weight", "transformer.h.1.attn.c_attn.bias"]
    params = {n: model.get_parameter(n) for n in names}
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=g) < 0.1 for n, p in params.items()}
    masks[names[2]] = torch.ones_like(masks[names[2]])  # a whole tensor: held without an index
    full = dict(zip(names, torch.autograd.grad(_loss(model), list(params.values())), strict=True))
    me = masked_elements(model, masks)
    assert me.index[names[2]] is None and len(me.index[names[0]]) == int(masks[names[0]].sum())
    with me.gathering_gradients():
        _loss(model).backward(inputs=list(params.values()))
    for n in names:
        assert torch.equal(me.values[n].grad, full[n][masks[n]])
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_writes_touch_only_the_masked_elements_and_restore_bitwise():
    model = tiny_model("llama")
    name = "model.layers.0.mlp.down_proj.weight"
    p = model.get_parameter(name)
    before = p.detach().clone()
    mask = torch.zeros_like(p, dtype=torch.bool)
    mask[3, ::5] = True
    me = masked_elements(model, {name: mask})
    with torch.no_grad():
        me.values[name] += 1.0
    me.write()
    assert torch.equal(p.detach()[~mask], before[~mask]) and torch.equal(p.detach()[mask], before[mask] + 1.0)
    me.write(me.originals)
    assert torch.equal(p.detach(), before)


def test_frozen_parameters_and_stale_gradients_are_put_back():
    model = tiny_model("gpt_neox")
    frozen = "gpt_neox.layers.0.mlp.dense_h_to_4h.weight"
    stale = "gpt_neox.layers.1.mlp.dense_4h_to_h.weight"
    model.get_parameter(frozen).requires_grad_(False)
    model.get_parameter(stale).grad = torch.ones_like(model.get_parameter(stale))
    masks = {n: torch.ones_like(model.get_parameter(n), dtype=torch.bool) for n in (frozen, stale)}
    me = masked_elements(model, masks)
    with me.gathering_gradients():
        _loss(model).backward(inputs=list(me.params.values()))
    assert me.values[frozen].grad.abs().sum() > 0 and me.values[stale].grad.abs().sum() > 0
    assert not model.get_parameter(frozen).requires_grad and model.get_parameter(frozen).grad is None
    assert bool((model.get_parameter(stale).grad == 1).all())
