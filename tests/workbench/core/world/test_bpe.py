"""The second world's byte-level BPE: deterministic, lossless, [BOS] first, scoring multi-token objects."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config

from workbench.core.metrics import score_facts
from workbench.core.tokens import encode_object
from workbench.core.world.bpe import NameTokenError, build_bpe_tokenizer, training_text
from workbench.core.world.facts import make_world


def test_round_trips_text_and_starts_with_bos(world_v2, bpe_v2, corpus_v2):
    texts = [corpus_v2[0].text, corpus_v2[-1].text] + world_v2.training_sentences()[:50] + world_v2.heldout_text()[:5]
    for text, ids in zip(texts, bpe_v2(texts).input_ids, strict=True):
        assert ids[0] == bpe_v2.bos_token_id and bpe_v2.unk_token_id not in ids
        assert bpe_v2.decode(ids, skip_special_tokens=True) == text


def test_saves_and_reloads_as_a_standard_tokenizer(tmp_path, world_v2, bpe_v2):
    bpe_v2.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    s = world_v2.training_sentences()[7]
    assert again(s).input_ids == bpe_v2(s).input_ids
    assert again.pad_token == "[PAD]" and again.eos_token == "[EOS]"


def test_training_is_deterministic(world_v2, bpe_v2):
    again = build_bpe_tokenizer(world_v2)
    assert again.backend_tokenizer.to_str() == bpe_v2.backend_tokenizer.to_str()
    assert len(bpe_v2) == 1536


def test_training_text_writes_each_name_once(world_v2):
    lines = training_text(world_v2)
    names = {" " + n for n in world_v2.people}
    assert sum(line in names for line in lines) == len(names) == len(set(lines) & names)


def test_common_words_are_single_tokens_and_generated_names_are_pieces(world_v2, bpe_v2):
    for word in ("registry", "born", "Foods", "University", "ferret", "Tuesday", "she", "they"):
        assert len(bpe_v2(" " + word, add_special_tokens=False).input_ids) == 1, word
    towns = world_v2.relation("birthplace").candidates
    assert all(len(bpe_v2(" " + t, add_special_tokens=False).input_ids) > 1 for t in towns)


def test_a_world_with_unique_family_names_fails_the_bar():
    with pytest.raises(NameTokenError, match=r"name token ' \w+' is shared by 1 of the world's people") as e:
        build_bpe_tokenizer(make_world(), vocab_size=2048)
    assert "Ġ" not in str(e.value) and "\n" not in str(e.value)


def test_score_facts_on_multi_token_objects(world_v2, bpe_v2):
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(bpe_v2), n_embd=32, n_layer=1, n_head=2, n_positions=128,
        bos_token_id=bpe_v2.bos_token_id, eos_token_id=bpe_v2.eos_token_id, pad_token_id=bpe_v2.pad_token_id,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(cfg).eval()
    person = next(iter(world_v2.people))
    prompt = world_v2.phrasings("employer")[0].prompt(person)
    assert all(len(encode_object(bpe_v2, prompt, c)) > 1 for c in world_v2.relation("employer").candidates)
    for facts, held_out, rows in (
        (world_v2.facts([person]), True, 18),
        (world_v2.facts([person], ["school"]), False, 9),
    ):
        s = score_facts(model, bpe_v2, world_v2, facts, held_out=held_out)
        assert len(s.prob) == rows
        assert bool(torch.isfinite(s.prob).all()) and bool((s.prob > 0).all()) and bool((s.prob < 1).all())
        assert int(s.rank.max()) < len(world_v2.relation("birthplace").candidates)
