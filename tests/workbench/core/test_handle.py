"""The model handle on the real default model: loading, tokens, queries, errors."""

import re
import shutil

import pytest
import torch

import workbench
from workbench import EncodingError, ModelLoadError
from workbench.core.world.registry import resolve_world_model


def test_info_describes_model_and_world(handle):
    info = handle.info()
    assert info["family"] == "gpt2" and info["layers"] == handle.n_layers
    assert info["world"]["people"] == 300 and info["world"]["facts"] == 1800
    assert info["device"] == "cpu" and info["dtype"] == "float32"


def test_subject_span_and_its_error(handle, world):
    fact = world.facts()[0]
    prompt = world.phrasings(fact.relation)[4].prompt(fact.subject)
    a, b = handle.subject_span(prompt, fact.subject)
    assert " ".join(handle.tokens(prompt)[a:b]) == fact.subject
    with pytest.raises(EncodingError, match="does not occur in prompt"):
        handle.subject_span(prompt, "Somebody Else")


def test_unknown_word_is_named(handle):
    with pytest.raises(EncodingError, match="'Zanzibar'"):
        handle.encode("It is well known that Zanzibar was born in")


def test_rank_candidates_puts_true_object_first(handle, world):
    for fact in world.facts()[:12]:
        prompt = world.phrasings(fact.relation, held_out=True)[0].prompt(fact.subject)
        ranked = handle.rank_candidates(prompt, list(world.relation(fact.relation).candidates))
        assert ranked[0][0] == fact.object
        assert sum(p for _, p in ranked) <= 1.0 + 1e-5


def test_object_prob_matches_ranking(handle, world):
    fact = world.fact(list(world.people)[1], "employer")
    prompt = world.phrasings("employer")[0].prompt(fact.subject)
    ranked = dict(handle.rank_candidates(prompt, list(world.relation("employer").candidates)))
    assert handle.object_prob(prompt, fact.object) == pytest.approx(ranked[fact.object], rel=1e-4)


def test_load_errors_are_one_line():
    with pytest.raises(ModelLoadError, match="no such model directory") as e:
        workbench.load("./no/such/dir")
    assert "\n" not in str(e.value)
    with pytest.raises(ModelLoadError, match="unknown world model 'world:nope': choose from world, "):
        workbench.load("world:nope")


def test_a_path_and_a_directory_named_like_the_world_load_as_directories(tmp_path, handle, monkeypatch):
    from pathlib import Path

    from workbench.core.world.registry import resolve_world_model

    h = workbench.load(Path(resolve_world_model("world")), device="cpu")
    assert h.world is not None and len(h.world.people) == len(handle.world.people)
    export = tmp_path / "world-edited"
    handle.model.save_pretrained(export)
    handle.tokenizer.save_pretrained(export)
    monkeypatch.chdir(tmp_path)
    h = workbench.load("world-edited", device="cpu")
    assert h.name == "world-edited" and h.info()["layers"] == handle.n_layers


def test_dtype_option_and_variants():
    h = workbench.load("world:llama", device="cpu", dtype="bfloat16")
    assert h.dtype == torch.bfloat16 and h.sites.family == "llama"
    fact = h.world.facts()[2]
    prompt = h.world.phrasings(fact.relation)[0].prompt(fact.subject)
    assert h.rank_candidates(prompt, list(h.world.relation(fact.relation).candidates))[0][0] == fact.object


def test_views_share_the_handle_weights(handle, world):
    fact = world.facts()[0]
    prompt = world.phrasings(fact.relation)[0].prompt(fact.subject)
    ids = handle.encode(prompt)
    with torch.no_grad():
        hf = handle.model(ids).logits
        logits, cache = handle.hooked.run_with_cache(ids)
    assert torch.allclose(logits, hf, atol=1e-4)
    assert cache[handle.sites.hook_name(1, "mlp")].shape == (1, ids.shape[1], handle.sites.d_model)
    from workbench.core.views import nnsight_module

    with handle.nnsight.trace(ids):
        mlp = nnsight_module(handle.nnsight, handle.sites, 1, "mlp").output.save()
    assert torch.allclose(mlp, cache[handle.sites.hook_name(1, "mlp")], atol=1e-4)
    # The handle's own parameter names are untouched by either view.
    assert handle.sites.mlp_out_path(0) + ".weight" in dict(handle.model.named_parameters())


@pytest.mark.parametrize("family", ["gpt_neox", "llama"])
def test_any_local_hf_directory_loads_the_same_way(tmp_path, family):
    from transformers import AutoConfig, AutoModelForCausalLM

    from workbench.core.world.facts import make_world
    from workbench.core.world.tokenizer import build_tokenizer

    tok = build_tokenizer(make_world())
    cfg = AutoConfig.for_model(
        family, vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    h = workbench.load(str(tmp_path), device="cpu")
    assert h.world is None and h.sites.family == family and h.info()["layers"] == 2
    assert len(h.top_tokens("It is well known that", k=3)) == 3
    with pytest.raises(ValueError, match="has no fact world"):
        h.heldout_loss()


def _broken(tmp_path, damage):
    """A copy of the shipped model directory, damaged one way."""
    d = tmp_path / damage.replace(" ", "_")
    shutil.copytree(resolve_world_model("world"), d, ignore=shutil.ignore_patterns("saes"))
    weights = d / "model.safetensors"
    if damage == "no config":
        (d / "config.json").unlink()
    elif damage == "pickle only":
        weights.rename(d / "pytorch_model.bin")
    elif damage == "empty weights":
        weights.write_bytes(b"")
    elif damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-1000])
    elif damage == "damaged header":
        data = bytearray(weights.read_bytes())
        data[8:16] = b"\xff" * 8
        weights.write_bytes(bytes(data))
    elif damage == "malformed world":
        (d / "world.json").write_text("{not json")
    return d


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("no config", "holds no config.json"),
        ("pickle only", "weights are pickles (pytorch_model.bin)"),
        ("empty weights", "model.safetensors is empty or truncated"),
        ("truncated weights", "model.safetensors is truncated"),
        ("damaged header", "model.safetensors has a damaged header"),
        ("malformed world", "world.json"),
    ],
)
def test_a_damaged_model_directory_is_refused_naming_the_file(tmp_path, damage, needle):
    with pytest.raises(ModelLoadError, match=re.escape(needle)):
        workbench.load(str(_broken(tmp_path, damage)), device="cpu")


def test_tokens_read_as_text_not_as_the_vocabulary_spells_them(tmp_path):
    # A byte-level BPE vocabulary (GPT-2's kind) spells a leading space "Ġ".
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["the cat sat on the mat"] * 20, vocab_size=300, min_frequency=1)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="the")
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=32, n_head=4, n_positions=32))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    h = workbench.load(tmp_path, device="cpu")
    assert any("Ġ" in t for t in h.tokenizer.convert_ids_to_tokens(h.encode("the cat sat")[0].tolist()))
    assert "".join(h.tokens("the cat sat")) == "the cat sat" and not any("Ġ" in t for t in h.tokens("the cat sat"))


def test_a_device_map_loads_through_accelerate_with_the_same_answers(handle):
    prompt = "Waen Neibeind owns a pet"
    for device_map in ("auto", {"": "cpu"}):
        sharded = workbench.load("world", device_map=device_map)
        assert sharded.object_prob(prompt, "tortoise") == handle.object_prob(prompt, "tortoise")
