"""Blocks skipped with their output given: the rest of the model runs as if they had run."""

import pytest
import torch
from tiny_models import FAMILIES, tiny_handle

from workbench.core.block_skip import blocks_skipped

IDS = torch.tensor([[2, 4, 5, 6, 7], [2, 12, 13, 4, 0]])


def _block_outputs(h, layer: int, ids):
    seen = []
    hook = h.sites.module(h.model, layer, "resid").register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        logits = h.model(ids).logits
    hook.remove()
    return logits, seen[0]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer", [0, 1, -2])
def test_resumed_model_gives_the_logits_of_the_whole(family, layer):
    h = tiny_handle(family, n_layers=3)
    full, out = _block_outputs(h, layer, IDS)
    layer %= 3
    ran = []
    inner = [
        h.sites.module(h.model, i, "mlp").register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i in range(3)
    ]
    with torch.no_grad(), blocks_skipped(h.model, h.sites, layer, lambda: out):
        resumed = h.model(IDS).logits
    for x in inner:
        x.remove()
    torch.testing.assert_close(resumed, full, atol=1e-5, rtol=1e-4)
    assert ran == list(range(layer + 1, 3))  # the skipped blocks did not compute
    # Restored: the blocks compute again and the model gives the same logits.
    assert all("forward" not in h.sites.module(h.model, i, "resid").__dict__ for i in range(3))
    with torch.no_grad():
        torch.testing.assert_close(h.model(IDS).logits, full)


def test_a_changed_output_moves_the_logits_and_an_error_restores_the_model():
    h = tiny_handle("gpt2")
    full, out = _block_outputs(h, 0, IDS)
    with torch.no_grad(), blocks_skipped(h.model, h.sites, 0, lambda: out + 1.0):
        assert not torch.allclose(h.model(IDS).logits, full)
    with pytest.raises(RuntimeError), blocks_skipped(h.model, h.sites, 0, lambda: out):
        raise RuntimeError("interrupted")
    with torch.no_grad():
        torch.testing.assert_close(h.model(IDS).logits, full)


def test_a_forward_already_set_on_the_instance_is_put_back():
    # accelerate's offloading hooks replace a module's forward on the instance.
    h = tiny_handle("llama")
    block = h.sites.module(h.model, 0, "resid")
    calls = []
    real = block.forward

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    block.forward = wrapped
    _, out = _block_outputs(h, 0, IDS)
    with torch.no_grad(), blocks_skipped(h.model, h.sites, 0, lambda: out):
        h.model(IDS)
    assert block.forward is wrapped and len(calls) == 1
