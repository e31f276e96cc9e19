"""The bridge and nnsight views: offline, weight-sharing, and faithful to the Hugging Face model."""

import doctest
import socket

import pytest
import torch
import transformers
from tiny_models import FAMILIES, tiny_tokenizer
from tiny_models import tiny_word_model as tiny_model
from transformers import AutoModelForCausalLM

import workbench.core.views
from workbench.core.sites import UnsupportedArchitecture, site_map
from workbench.core.views import envoy_at, hooked_view, nnsight_module, nnsight_view

TEXTS = ["the cat sat on a mat", "Paris is the capital of France", "the dog is in Rome"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt fails the test: the views must work offline."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def encode(tok, text):
    return torch.tensor([tok(text).input_ids])


def hf_logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def bridge_logits(bridge, ids):
    with torch.no_grad():
        return bridge(ids)


def random_edit(model, names, seed=1, scale=0.2):
    """Perturb the named parameters in place, as an editor would."""
    params = dict(model.named_parameters())
    torch.manual_seed(seed)
    with torch.no_grad():
        for n in names:
            params[n].add_(torch.randn_like(params[n]) * scale)


@pytest.mark.parametrize("family", FAMILIES)
def test_bridge_matches_hf_logits_and_tokens(family):
    model, tok = tiny_model(family), tiny_tokenizer()
    bridge = hooked_view(model, tok)
    for text in TEXTS:
        ids = encode(tok, text)
        assert torch.equal(bridge.to_tokens(text).cpu(), ids)  # BOS once, from the tokenizer
        assert torch.allclose(bridge_logits(bridge, ids), hf_logits(model, ids), atol=1e-5)
    batch = torch.cat([encode(tok, t)[:, :6] for t in TEXTS])
    assert torch.allclose(bridge_logits(bridge, batch), hf_logits(model, batch), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_bridge_shares_weights_and_leaves_the_model_alone(family):
    model, tok = tiny_model(family), tiny_tokenizer()
    names = [n for n, _ in model.named_parameters()]
    objects = [p for _, p in model.named_parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attn_impl, tok_kwargs, padding = model.config._attn_implementation, dict(tok.init_kwargs), tok.padding_side
    bridge = hooked_view(model, tok)
    bridge_logits(bridge, encode(tok, TEXTS[0]))

    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    own = {n: p for n, p in bridge.named_parameters() if p.untyped_storage().data_ptr() not in storages}
    # The only tensor the bridge adds is a zero bias on the unembedding; no weight is copied.
    assert set(own) <= {"lm_head._original_component.bias"}, sorted(own)
    assert all(not p.any() for p in own.values())

    assert [n for n, _ in model.named_parameters()] == names
    assert all(a is b for a, b in zip(objects, (p for _, p in model.named_parameters()), strict=True))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # nothing folded
    assert not any("forward" in m.__dict__ for m in model.modules())
    assert model.config._attn_implementation == attn_impl
    assert (tok.init_kwargs, tok.padding_side) == (tok_kwargs, padding)
    site_map(model)  # paths still resolve on the caller's model


@pytest.mark.parametrize("family", FAMILIES)
def test_in_place_edits_reach_the_bridge(family):
    model, tok = tiny_model(family), tiny_tokenizer()
    sm = site_map(model)
    bridge = hooked_view(model, tok)
    ids = encode(tok, TEXTS[1])
    before = hf_logits(model, ids)

    torch.manual_seed(2)
    sm.add_to_mlp_out(model, 1, torch.randn(sm.d_model, sm.d_mlp) * 0.3)
    after_mlp = hf_logits(model, ids)
    assert (after_mlp - before).abs().max() > 1e-2
    assert torch.allclose(bridge_logits(bridge, ids), after_mlp, atol=1e-5)

    # Attention too, including NeoX's fused query_key_value that the bridge splits per head.
    random_edit(model, sm.param_names(0, "attn"))
    after_attn = hf_logits(model, ids)
    assert (after_attn - after_mlp).abs().max() > 1e-2
    assert torch.allclose(bridge_logits(bridge, ids), after_attn, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_bridge_cache_equals_hf_module_outputs(family):
    model, tok = tiny_model(family), tiny_tokenizer()
    sm = site_map(model)
    bridge = hooked_view(model, tok)
    ids = encode(tok, TEXTS[2])

    got, handles = {}, []

    def keep(key):
        return lambda mod, args, out: got.__setitem__(key, out[0] if isinstance(out, tuple) else out)

    def keep_input(key):
        return lambda mod, args: got.__setitem__(key, args[0])

    for layer in range(sm.n_layers):
        for comp in ("resid", "mlp", "attn"):
            handles.append(sm.module(model, layer, comp).register_forward_hook(keep(sm.hook_name(layer, comp))))
        handles.append(
            model.get_submodule(sm.key_module_path(layer)).register_forward_pre_hook(
                keep_input(sm.key_hook_name(layer))
            )
        )
    handles.append(sm.module(model, None, "embed").register_forward_hook(keep(sm.hook_name(None, "embed"))))
    with torch.no_grad():
        model(ids)
        _, cache = bridge.run_with_cache(ids)
    for h in handles:
        h.remove()

    assert len(got) == 4 * sm.n_layers + 1
    for name, want in got.items():
        assert name in bridge.hook_dict and name in cache, name
        assert cache[name].shape == want.shape, name
        assert torch.allclose(cache[name], want, atol=1e-5), name


@pytest.mark.parametrize("family", FAMILIES)
def test_nnsight_reads_the_same_activations(family):
    model, tok = tiny_model(family), tiny_tokenizer()
    sm = site_map(model)
    padding = tok.padding_side
    lm = nnsight_view(model, tok)
    ids = encode(tok, TEXTS[0])

    layer = 1
    mlp, key_path = sm.module_path(layer, "mlp"), sm.key_module_path(layer)
    got = {}
    handles = [
        model.get_submodule(mlp).register_forward_hook(lambda m, a, o: got.__setitem__("mlp", o)),
        model.get_submodule(key_path).register_forward_pre_hook(lambda m, a: got.__setitem__("key", a[0])),
    ]
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    with lm.trace(ids):
        key = envoy_at(lm, key_path).input.save()  # nnsight wants reads in execution order
        out = nnsight_module(lm, sm, layer, "mlp").output.save()
        resid = nnsight_module(lm, sm, -1, "resid").output.save()
        logits = lm.output.logits.save()
    assert torch.allclose(out, got["mlp"], atol=1e-6)
    assert torch.allclose(key, got["key"], atol=1e-6)
    assert torch.allclose(logits, hf_logits(model, ids), atol=1e-5)
    assert (resid[0] if isinstance(resid, tuple) else resid).shape == (1, ids.shape[1], sm.d_model)

    # Shared weights: an in-place edit shows in the next trace; the caller's objects stay untouched.
    sm.add_to_mlp_out(model, layer, torch.ones(sm.d_model, sm.d_mlp) * 0.1)
    with lm.trace(ids):
        edited = nnsight_module(lm, sm, layer, "mlp").output.save()
    assert torch.allclose(edited - out, got["key"] @ (torch.ones(sm.d_mlp, sm.d_model) * 0.1), atol=1e-5)
    assert not any("forward" in m.__dict__ for m in model.modules())
    assert tok.padding_side == padding


def test_unsupported_architecture_fails_before_booting():
    opt = AutoModelForCausalLM.from_config(
        transformers.OPTConfig(
            num_hidden_layers=1,
            hidden_size=16,
            ffn_dim=32,
            num_attention_heads=2,
            vocab_size=50,
            word_embed_proj_dim=16,
        )
    )
    with pytest.raises(UnsupportedArchitecture, match="'opt'"):
        hooked_view(opt, tiny_tokenizer())


def test_docstring_examples_run():
    assert doctest.testmod(workbench.core.views).failed == 0
