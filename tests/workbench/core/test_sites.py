"""SiteMap on tiny random GPT-2, Llama and GPT-NeoX models: paths, parameter names, MLP weights."""

import doctest

import pytest
import torch
import torch.nn.functional as F
import transformers
from tiny_models import D_MLP, FAMILIES
from tiny_models import tiny_model as _tiny
from transformers import AutoModelForCausalLM
from transformers.pytorch_utils import Conv1D

import workbench.core.sites
from workbench.core.sites import COMPONENTS, SiteMap, UnsupportedArchitecture, site_map


def tiny_model(family: str, seed: int = 0) -> torch.nn.Module:
    return _tiny(family, n_layers=3, vocab_size=100, seed=seed, bos_token_id=0, eos_token_id=1)


def capture(model, modules, ids, pre=()):
    """Outputs of ``modules`` (and inputs of ``pre``) during one forward, via plain torch hooks."""
    got, handles = {}, []
    for path in modules:

        def hook(mod, args, out, path=path):
            got[path] = out[0] if isinstance(out, tuple) else out

        handles.append(model.get_submodule(path).register_forward_hook(hook))
    for path in pre:
        handles.append(
            model.get_submodule(path).register_forward_pre_hook(
                lambda mod, args, path=path: got.__setitem__(("in", path), args[0])
            )
        )
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for h in handles:
            h.remove()
    return got


IDS = torch.tensor([[0, 5, 17, 42, 8, 99, 3], [0, 11, 12, 13, 14, 15, 16]])


@pytest.mark.parametrize("family", FAMILIES)
def test_detects_family_and_sizes(family):
    sm = site_map(tiny_model(family))
    assert (sm.family, sm.n_layers, sm.d_model, sm.d_mlp, sm.n_heads) == (family, 3, 32, D_MLP[family], 4)
    model = tiny_model(family)
    assert sm.context_length == model.config.max_position_embeddings and sm.context_length > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_paths_resolve_to_the_right_modules(family):
    model = tiny_model(family)
    sm = site_map(model)
    assert sm.module(model, None, "embed") is model.get_input_embeddings()
    assert model.get_submodule(sm.unembed_path) is model.get_output_embeddings()
    assert isinstance(model.get_submodule(sm.final_norm_path), torch.nn.Module)
    for layer in range(sm.n_layers):
        block = sm.module(model, layer, "resid")
        assert sm.module(model, layer, "mlp") in block.children()
        assert sm.module(model, layer, "attn") in block.children()
        assert sm.module(model, layer - sm.n_layers, "mlp") is sm.module(model, layer, "mlp")
        out = model.get_submodule(sm.mlp_out_path(layer))
        assert isinstance(out, Conv1D) == sm.weight_is_transposed()
        assert sm.key_module_path(layer) == sm.mlp_out_path(layer)
        assert sm.mlp_out_weight(model, layer) is out.weight
        mlp_in = sm.mlp_in_paths(layer)
        assert len(mlp_in) == (2 if family == "llama" else 1)
        assert all(p.startswith(sm.module_path(layer, "mlp") + ".") for p in mlp_in)
        for path in sm.mlp_in_paths(layer) + [sm.attn_out_path(layer)]:
            model.get_submodule(path)
    with pytest.raises(IndexError):
        sm.module_path(sm.n_layers, "mlp")
    with pytest.raises(IndexError):
        sm.module_path(None, "resid")
    with pytest.raises(ValueError, match="unknown component"):
        sm.module_path(0, "ffn")


@pytest.mark.parametrize("family", FAMILIES)
def test_read_and_add_mlp_out_round_trip(family):
    model = tiny_model(family)
    sm = site_map(model)
    layer = 1
    mlp, key_mod = sm.module_path(layer, "mlp"), sm.key_module_path(layer)
    before = capture(model, [mlp], IDS, pre=[key_mod])
    key = before[("in", key_mod)]
    w = sm.read_mlp_out(model, layer)
    assert w.shape == (sm.d_model, sm.d_mlp)
    bias = model.get_submodule(key_mod).bias
    assert torch.allclose(F.linear(key, w, bias), before[mlp], atol=1e-5)  # out x in orientation

    original = w.clone()
    w.add_(1.0)  # a copy: the model must not change
    assert torch.equal(sm.read_mlp_out(model, layer), original)

    param = sm.mlp_out_weight(model, layer)
    torch.manual_seed(1)
    delta = torch.randn(sm.d_model, sm.d_mlp) * 0.1
    sm.add_to_mlp_out(model, layer, delta)
    assert sm.mlp_out_weight(model, layer) is param and param.requires_grad
    assert torch.allclose(sm.read_mlp_out(model, layer), original + delta, atol=1e-6)
    after = capture(model, [mlp], IDS, pre=[key_mod])
    assert torch.equal(after[("in", key_mod)], key)  # the key is upstream of the edit
    assert torch.allclose(after[mlp] - before[mlp], key @ delta.T, atol=1e-5)

    with pytest.raises(ValueError, match="expected"):
        sm.add_to_mlp_out(model, layer, delta.T)


@pytest.mark.parametrize("family", FAMILIES)
def test_param_names_match_named_parameters(family):
    model = tiny_model(family)
    sm = site_map(model)
    names = [n for n, _ in model.named_parameters()]
    covered = set(sm.param_names(None, "embed"))
    assert sm.param_names(None, "embed") == [sm.module_path(None, "embed") + ".weight"]
    for layer in range(sm.n_layers):
        resid, mlp, attn = (sm.param_names(layer, c) for c in ("resid", "mlp", "attn"))
        assert resid == [n for n in names if n.startswith(sm.module_path(layer, "resid") + ".")]
        assert set(mlp) <= set(resid) and set(attn) <= set(resid) and not set(mlp) & set(attn)
        assert sm.mlp_out_path(layer) + ".weight" in mlp
        assert all(p + ".weight" in mlp for p in sm.mlp_in_paths(layer))
        assert sm.attn_out_path(layer) + ".weight" in attn
        assert set(resid) - set(mlp) - set(attn), "layer norms belong to the block only"
        covered |= set(resid)
    rest = set(names) - covered
    assert all(n.startswith((sm.final_norm_path, sm.unembed_path, "transformer.wpe")) for n in rest), rest
    with pytest.raises(ValueError, match="site_map"):
        SiteMap(family, 3, 32, D_MLP[family], 4).param_names(0, "mlp")


@pytest.mark.parametrize("family", FAMILIES)
def test_qkv_matches_the_attention_projections(family):
    model = tiny_model(family)
    sm = site_map(model)
    x = torch.randn(2, 5, sm.d_model)
    (wq, bq), (wk, bk), (wv, bv) = sm.qkv(model, 2)
    q, k, v = (F.linear(x, w, b) for w, b in ((wq, bq), (wk, bk), (wv, bv)))
    block = sm.module(model, 2, "attn")
    with torch.no_grad():
        if family == "gpt2":
            ref = block.c_attn(x).split(sm.d_model, dim=-1)
        elif family == "llama":
            ref = block.q_proj(x), block.k_proj(x), block.v_proj(x)
        else:  # NeoX interleaves per head: [q_h k_h v_h] for each head h
            fused = block.query_key_value(x).view(2, 5, sm.n_heads, -1).chunk(3, dim=-1)
            ref = tuple(t.flatten(-2) for t in fused)
    for got, want in zip((q, k, v), ref, strict=True):
        assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_hook_names(family):
    sm = site_map(tiny_model(family))
    assert sm.hook_name(2, "resid") == "blocks.2.hook_resid_post"
    assert sm.hook_name(-1, "mlp") == "blocks.2.hook_mlp_out"
    assert sm.hook_name(0, "attn") == "blocks.0.hook_attn_out"
    assert sm.hook_name(None, "embed") == "hook_embed"
    assert sm.key_hook_name(1) == "blocks.1.mlp.hook_post"
    assert set(COMPONENTS) == {"resid", "mlp", "attn", "embed"}


@pytest.mark.parametrize(
    "config",
    [
        transformers.MistralConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=48,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=100,
        ),
        transformers.Qwen2Config(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=48,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=100,
        ),
    ],
    ids=["mistral", "qwen2"],
)
def test_llama_like_families(config):
    model = AutoModelForCausalLM.from_config(config)
    sm = site_map(model)
    assert (sm.family, sm.d_mlp) == ("llama", 48)
    assert sm.param_names(1, "attn")[0] == "model.layers.1.self_attn.q_proj.weight"


def test_unsupported_architecture():
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
    with pytest.raises(UnsupportedArchitecture, match=r"'opt' is not supported; supported: gpt2, gpt_neox, llama"):
        site_map(opt)
    assert issubclass(UnsupportedArchitecture, ValueError)
    base = transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedArchitecture, match="ForCausalLM"):
        site_map(base)  # the headless model has no transformer.h
    with pytest.raises(UnsupportedArchitecture, match="None"):
        site_map(torch.nn.Linear(2, 2))


def test_docstring_examples_run():
    assert doctest.testmod(workbench.core.sites).failed == 0
