"""Min-K% and Min-K%++ by hand, and membership AUC: the original model against exact unlearning."""

import random

import pytest
import torch
from tiny_models import FAMILIES, tiny_handle

import workbench
from edit.forget_request import forget_request
from workbench.core.metrics import sequence_logprobs
from workbench.verify.membership import (
    MembershipSettings,
    TextSettings,
    mia_auc,
    mia_texts,
    min_k,
    min_k_plus_plus,
    privacy_leak,
    roc_auc,
    token_scores,
)
from workbench.verify.suppression import suppress_output


@pytest.fixture(scope="module")
def texts05(world):
    return mia_texts(world, forget_request(world, "forget05").forget)


def test_token_scores_by_hand():
    h = tiny_handle("gpt2")
    text = "the cat sat on a mat"
    ids = h.tokenizer(text).input_ids
    plain = token_scores(h, [text], plus_plus=False)[0]
    assert len(plain) == len(ids) - 1
    assert float(plain.sum()) == pytest.approx(float(sequence_logprobs(h.model, [ids[:1]], [ids[1:]])[0]), abs=1e-4)
    with torch.no_grad():
        logp = torch.log_softmax(h.model(torch.tensor([ids])).logits[0, :-1], -1)
    mu = (logp.exp() * logp).sum(-1)
    sigma = ((logp.exp() * logp**2).sum(-1) - mu**2).sqrt()
    expected = (logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])] - mu) / sigma
    assert torch.allclose(token_scores(h, [text], plus_plus=True)[0], expected, atol=1e-4)
    # k = 1 averages every token; the default takes int(0.2 * 6) = 1 token, the least likely.
    assert float(min_k(h, [text], MembershipSettings(k=1.0))[0]) == pytest.approx(float(plain.mean()), abs=1e-6)
    assert float(min_k(h, [text])[0]) == pytest.approx(float(plain.min()), abs=1e-6)
    assert float(min_k_plus_plus(h, [text])[0]) == pytest.approx(float(expected.min()), abs=1e-4)


def test_ignored_substring(handle, world):
    fact = world.facts()[0]
    text = fact.sentence(world.phrasings(fact.relation)[0])
    full, named = token_scores(handle, [text, (text, fact.subject)], plus_plus=False)
    assert len(named) == len(full) - 2
    # The two name tokens are never training targets, and the least likely tokens of the sentence.
    assert torch.equal(named, full[2:]) and float(full[:2].max()) < float(named.min())
    with pytest.raises(ValueError, match="does not occur"):
        token_scores(handle, [(text, "Nobody Here")], plus_plus=False)


def test_roc_auc_counts_pairs():
    rng = random.Random(0)
    a, b = [rng.random() for _ in range(30)], [rng.random() + 0.2 for _ in range(40)]
    pairs = sum((x > y) + 0.5 * (x == y) for x in a for y in b) / (len(a) * len(b))
    assert roc_auc(a, b) == pytest.approx(pairs)
    assert roc_auc([1.0, 1.0], [1.0]) == 0.5
    assert privacy_leak(0.5, 0.5) == 0.0


def test_original_model_leaks_exact_unlearning_does_not(handle, texts05):
    forget, holdout = texts05
    assert len(forget) == len(holdout) == 810
    retain = workbench.load("world:retain-forget05", device="cpu")
    for method in ("min_k", "min_k++"):
        original, reference = mia_auc(handle, forget, holdout, method), mia_auc(retain, forget, holdout, method)
        assert original > 0.95, method
        assert abs(reference - 0.5) < 0.1, method
        assert privacy_leak(original, reference) > 0.5


def test_suppression_overshoots_below_chance(handle, texts05, world):
    # Pushing the true objects below every other candidate is itself a tell: AUC well under 0.5.
    with suppress_output(handle, forget_request(world, "forget05").forget):
        assert mia_auc(handle, *texts05, "min_k") < 0.4


def test_text_settings(world):
    facts = world.facts()[:2]
    forget, holdout = mia_texts(world, facts, TextSettings(held_out=True))
    assert len(forget) == 6 and all(f[0] != h[0] and f[1] == h[1] for f, h in zip(forget, holdout, strict=True))
    assert mia_texts(world, facts, TextSettings(seed=1))[1] != mia_texts(world, facts)[1]


@pytest.mark.parametrize("family", FAMILIES)
def test_families(family):
    h = tiny_handle(family)
    s = min_k_plus_plus(h, ["the cat sat on a mat", "Paris is the capital of France"])
    assert s.shape == (2,) and torch.isfinite(s).all()


def test_errors(handle):
    with pytest.raises(ValueError, match="unknown membership score"):
        mia_auc(handle, ["cat dog"], ["dog cat"], "zlib")
    with pytest.raises(ValueError, match="k must be"):
        MembershipSettings(k=0)
    with pytest.raises(ValueError, match="scored token"):
        token_scores(handle, [("cat dog", "cat dog")], plus_plus=False)
