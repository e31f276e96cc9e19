"""The world tokenizer saves as a standard HF fast tokenizer and encodes names as two tokens."""

from transformers import AutoTokenizer

from workbench.core.world.facts import make_world
from workbench.core.world.tokenizer import build_tokenizer


def test_tokenizer_round_trip(tmp_path):
    world = make_world()
    tok = build_tokenizer(world)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    s = world.training_sentences()[5]
    assert again(s).input_ids == tok(s).input_ids
    assert again.decode(again(s).input_ids, skip_special_tokens=True) == s
    assert again.unk_token_id not in again(s).input_ids


def test_names_two_tokens_and_bos_first():
    world = make_world()
    tok = build_tokenizer(world)
    for name in list(world.people)[:20]:
        ids = tok(name).input_ids
        assert ids[0] == tok.bos_token_id and len(ids) == 3
