"""Feature search by index, person or word, and the measured effect of ablating one feature."""

import pytest
import torch

from locate.feature_data import feature_data
from locate.feature_search import ablation_effect, decoder_logits, search_features
from locate.features import locate_person_features
from locate.sae_splice import SaeError, load_sae


def test_a_word_finds_the_features_whose_decoder_promotes_it(handle, world):
    sae = load_sae()
    found = search_features(handle, "cat", top=3, sae=sae)
    token = handle.tokenizer("cat", add_special_tokens=False).input_ids[0]
    column = decoder_logits(handle, sae)[:, token]
    assert [f["feature"] for f in found] == column.topk(3).indices.tolist()
    # The same reading as feature_data's promoted tokens.
    promoted = feature_data(handle, found[0]["feature"], texts=world.training_sentences()[:5], top=20, sae=sae)[
        "promotes"
    ]
    assert any(p["token"] == "cat" and abs(p["logit"] - found[0]["score"]) < 1e-4 for p in promoted)


def test_a_person_finds_the_features_carrying_their_facts(handle, world):
    person = list(world.people)[3]
    found = search_features(handle, person, top=4)
    assert [f["feature"] for f in found] == [s.feature for s in locate_person_features(handle, person).sites[:4]]


def test_indices_and_bad_queries(handle):
    assert search_features(handle, " 511 ")[0]["feature"] == 511
    with pytest.raises(SaeError, match="out of range"):
        search_features(handle, "512")
    with pytest.raises(SaeError, match="2 tokens"):
        search_features(handle, "cat dog")


def test_ablation_changes_only_what_the_feature_carries(handle, world):
    facts = world.facts(list(world.people)[:2])
    rows = ablation_effect(handle, 176, facts)
    assert [(r["subject"], r["relation"]) for r in rows] == [(f.subject, f.relation) for f in facts]
    assert all(r["before"] > 0.9 for r in rows)
    # With the error term kept, "before" is the model's own probability.
    for r, f in zip(rows, facts, strict=True):
        assert r["before"] == pytest.approx(handle.object_prob(r["prompt"], f.object), abs=1e-4)
    pets = [r for r in rows if r["relation"] == "pet"]
    assert min(r["after"] for r in pets) < max(r["before"] for r in pets)
    assert torch.is_tensor(decoder_logits(handle, load_sae()))
