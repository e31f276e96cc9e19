"""RTN quantisation: grids per output channel, the caller's model untouched, and an edit hidden under the grid."""

import copy

import pytest
import torch
from tiny_models import FAMILIES, tiny_handle
from transformers.pytorch_utils import Conv1D

from edit.forget_request import forget_request
from workbench.core.examples import encode_examples, pad_examples, scored_logprobs
from workbench.core.handle import ModelHandle
from workbench.verify.quantise import (
    QuantiseSettings,
    block_projections,
    quantise_model,
    quantise_rows,
    quantised,
    quantised_accuracy,
)


def test_rows_get_their_own_grid():
    torch.manual_seed(0)
    w = torch.randn(6, 50) * torch.arange(1, 7)[:, None]
    w[5] = 0.3  # a constant row is left as it is
    for bits in (2, 4, 8):
        for symmetric in (False, True):
            q = quantise_rows(w, QuantiseSettings(bits=bits, symmetric=symmetric))
            assert all(q[r].unique().numel() <= 2**bits for r in range(6))
            span = (w.amax(1) - w.amin(1)) / (2**bits - 1) if not symmetric else w.abs().amax(1) / (2 ** (bits - 1) - 1)
            err = (q - w).abs().amax(1)
            assert (err[:5] <= span[:5] / 2 + 1e-5).all(), (bits, symmetric)
            assert torch.equal(q[5], w[5])
    assert quantise_rows(torch.tensor([[0.0, -1.0, 1.0]]), QuantiseSettings(bits=4, symmetric=True))[0, 0] == 0.0
    with pytest.raises(ValueError, match="bits"):
        QuantiseSettings(bits=1)


@pytest.mark.parametrize("family", FAMILIES)
def test_output_channels_by_module_type(family):
    h = tiny_handle(family)
    before = {n: p.detach().clone() for n, p in h.model.named_parameters()}
    q = quantise_model(h.model, h.sites, QuantiseSettings(bits=2))
    assert all(torch.equal(p, before[n]) for n, p in h.model.named_parameters())  # the caller's model
    projections = block_projections(q, h.sites)
    assert len(projections) >= 4 * h.n_layers
    names = {f"{m}.weight" for m in projections}
    for n, p in q.named_parameters():
        if n not in names:
            assert torch.equal(p, before[n]), n  # embeddings, norms, biases, unembedding
            continue
        # Conv1D stores [in, out]: its output channels are the columns.
        w = p.detach().T if isinstance(q.get_submodule(n.rsplit(".", 1)[0]), Conv1D) else p.detach()
        assert all(row.unique().numel() <= 4 for row in w), n
        assert not torch.equal(p, before[n]), n
    if family == "gpt2":
        w = q.get_submodule(h.sites.mlp_out_path(0)).weight.detach()
        assert max(row.unique().numel() for row in w) > 4  # rows of a Conv1D weight are not channels


def test_original_model_survives_quantisation(handle, world):
    facts = forget_request(world, "forget01").forget
    out = quantised_accuracy(handle, facts, bits=(8, 4))
    assert out["full"]["accuracy"] == out["int8"]["accuracy"] == out["int4"]["accuracy"] == 1.0
    q = quantised(handle, QuantiseSettings(bits=4, symmetric=True))
    assert q.model is not handle.model and q.world is handle.world and "int4" in q.name


def _substep_edit(handle, facts, fraction: float = 0.45) -> ModelHandle:
    """A model on the 4-bit grid moved up the forget loss by under half a 4-bit step per weight.

    The shape of a quantised-then-unlearned model: every weight stays inside the rounding bin of
    its grid point, and each channel's extremes (which set the grid) do not move.
    """
    model = copy.deepcopy(handle.model)
    modules = list(block_projections(model, handle.sites).values())
    ids, mask, scored = pad_examples(encode_examples(handle, facts), handle.tokenizer.pad_token_id)
    loss = -scored_logprobs(model(input_ids=ids, attention_mask=mask).logits, ids, scored).mean()
    grads = torch.autograd.grad(loss, [m.weight for m in modules])
    with torch.no_grad():
        for m, g in zip(modules, grads, strict=True):
            t = isinstance(m, Conv1D)
            w, g = (m.weight.T, g.T) if t else (m.weight, g)
            step = (w.amax(1, keepdim=True) - w.amin(1, keepdim=True)) / 15
            delta = fraction * step * g / g.abs().amax(1, keepdim=True).clamp_min(1e-30)
            delta[(w == w.amax(1, keepdim=True)) | (w == w.amin(1, keepdim=True))] = 0
            w.add_(delta)
    return ModelHandle(model, handle.tokenizer, "substep", handle.source, handle.world)


def test_quantisation_undoes_an_edit_smaller_than_its_step(handle, world):
    facts = forget_request(world, "forget01").forget
    base = quantised(handle, QuantiseSettings(bits=4))
    edited = _substep_edit(base, facts)
    forgotten = edited.score(facts).accuracy
    assert forgotten < 0.8
    again = quantised(edited, QuantiseSettings(bits=4))
    assert (
        max(
            float((a - b).detach().abs().max())
            for a, b in zip(again.model.parameters(), base.model.parameters(), strict=True)
        )
        < 1e-5
    )
    assert again.score(facts).accuracy == 1.0
    # An 8-bit grid is 17 times finer: the edit survives it.
    assert quantised(edited, QuantiseSettings(bits=8)).score(facts).accuracy <= forgotten + 0.1
