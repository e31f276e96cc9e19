"""Causal tracing on the default world model: batched == reference == nnsight, and sane numbers."""

import doctest

import pytest
import torch
from tiny_models import FAMILIES, tiny_handle

import locate.causal_trace
from locate.causal_trace import TraceError, TraceSettings, trace, trace_nnsight, trace_reference
from locate.location import Location
from workbench.core.tokens import EncodingError

FEW = TraceSettings(samples=2, seed=1)


@pytest.fixture(scope="module")
def fact(handle):
    f = handle.world.facts()[0]
    return handle.world.phrasings(f.relation)[0].prompt(f.subject), f.subject, f.object


@pytest.fixture(scope="module")
def multi_token_fact(handle):
    # Some objects are two tokens: the trace must teacher-force them.
    for f in handle.world.facts():
        prompt = handle.world.phrasings(f.relation)[1].prompt(f.subject)
        if len(handle.encode_fact(prompt, f.object)[1]) > 1:
            return prompt, f.subject, f.object
    pytest.skip("no multi-token object in the world")


@pytest.fixture(scope="module")
def batched(handle, fact):
    return trace(handle, *fact, FEW)


def test_batched_equals_reference(handle, fact, batched):
    ref = trace_reference(handle, *fact, FEW)
    assert ref.clean == pytest.approx(batched.clean, abs=1e-5)
    assert ref.corrupted == pytest.approx(batched.corrupted, abs=1e-5)
    for c in ("resid", "mlp", "attn"):
        torch.testing.assert_close(ref.scores[c], batched.scores[c], atol=1e-5, rtol=0)


def test_batched_equals_reference_with_a_window_on_a_multi_token_object(handle, multi_token_fact):
    s = TraceSettings(samples=1, window=3, batch_size=7)  # odd chunks cross cell boundaries
    ref = trace_reference(handle, *multi_token_fact, s, components=("mlp",))
    fast = trace(handle, *multi_token_fact, s, components=("mlp",))
    torch.testing.assert_close(ref.scores["mlp"], fast.scores["mlp"], atol=1e-5, rtol=0)
    assert fast.clean == pytest.approx(handle.object_prob(multi_token_fact[0], multi_token_fact[2]), abs=1e-5)


def test_nnsight_equals_hooked(handle, fact, batched):
    nn = trace_nnsight(handle, *fact, FEW)
    assert nn.corrupted == pytest.approx(batched.corrupted, abs=1e-5)
    for c in ("resid", "mlp", "attn"):
        torch.testing.assert_close(nn.scores[c], batched.scores[c], atol=1e-5, rtol=0)


def test_clean_beats_corrupted_and_restoring_everything_recovers_it(handle, fact, batched):
    assert batched.clean == pytest.approx(handle.object_prob(fact[0], fact[2]), abs=1e-5)
    assert batched.clean > 0.9 and batched.corrupted < batched.clean - 0.3
    # The last layer's residual at the last prompt token is the whole input to the unembedding.
    assert float(batched.scores["resid"][-1, -1]) == pytest.approx(batched.clean, abs=1e-4)
    # Before the subject nothing was corrupted, so restoring it changes nothing.
    a, _ = batched.subject_span
    torch.testing.assert_close(
        batched.scores["mlp"][:a], torch.full_like(batched.scores["mlp"][:a], batched.corrupted), atol=1e-5, rtol=0
    )
    assert batched.scores["mlp"].shape == (len(batched.tokens), handle.n_layers)


def test_where_the_world_model_keeps_its_facts(handle, world):
    # Not ROME's picture of GPT-2 (subject's last token, mid-layer MLPs): in this 4-layer model,
    # layer-0 attention copies the name to the prompt's last token and layer-0's MLP there does the
    # lookup. benchmarks/causal_trace.py measures it on 12 facts; here on one fact per relation.
    for relation in world.relations:
        f = world.facts(relations=[relation])[3]
        r = trace(handle, world.phrasings(relation)[0].prompt(f.subject), f.subject, f.object, FEW, components=("mlp",))
        ie, last_subject = r.indirect_effect("mlp"), r.subject_span[1] - 1
        assert float(ie[last_subject].max()) < 0.1, relation
        assert int(ie[-1].argmax()) == 0 and float(ie[-1, 0]) > 0.5 * (r.clean - r.corrupted), relation


def test_same_seed_same_numbers_other_seed_other_numbers(handle, fact, batched):
    again = trace(handle, *fact, FEW, components=("attn",))
    torch.testing.assert_close(again.scores["attn"], batched.scores["attn"], atol=0, rtol=0)
    other = trace(handle, *fact, TraceSettings(samples=2, seed=2), components=("attn",))
    assert other.corrupted != batched.corrupted


def test_counterfactual_corruption(handle, fact):
    r = trace(handle, *fact, TraceSettings(corruption="counterfactual"))
    assert r.replacement and r.replacement != fact[1]
    # Deterministic: the corrupted run is exactly the model on the other person's prompt.
    assert r.corrupted == pytest.approx(handle.object_prob(fact[0].replace(fact[1], r.replacement), fact[2]), abs=1e-5)
    assert r.corrupted < 0.1 < 0.9 < r.clean
    assert r.settings.samples == 10  # ignored for this corruption, not rewritten
    chosen = trace(
        handle, *fact, TraceSettings(corruption="counterfactual", counterfactual=r.replacement), components=("mlp",)
    )
    torch.testing.assert_close(chosen.scores["mlp"], r.scores["mlp"], atol=1e-6, rtol=0)


def test_to_location(handle, batched):
    loc = batched.to_location()
    assert loc.method == "causal_trace" and loc.tokens == batched.tokens
    assert len(loc.sites) == 3 * len(batched.tokens) * handle.n_layers
    best = loc.best()
    assert best.score == pytest.approx(
        float(batched.scores[best.component][best.token, best.layer]) - batched.corrupted
    )
    assert Location.from_json(loc.to_json()) == loc
    assert loc.grids["mlp"] == batched.scores["mlp"].tolist()


def test_errors(handle, fact):
    prompt, subject, obj = fact
    with pytest.raises(EncodingError, match="does not occur"):
        trace(handle, prompt, "Nobody Here", obj, FEW)
    with pytest.raises(TraceError, match="unknown component"):
        trace(handle, prompt, subject, obj, FEW, components=("mlp", "neurons"))
    with pytest.raises(TraceError, match="window"):
        trace(handle, prompt, subject, obj, TraceSettings(window=handle.n_layers + 1))
    with pytest.raises(TraceError, match="window"):
        trace_reference(handle, prompt, subject, obj, TraceSettings(window=0))
    with pytest.raises(TraceError, match="corruption"):
        trace_nnsight(handle, prompt, subject, obj, TraceSettings(corruption="shuffle"))
    with pytest.raises(ValueError, match="Bob"):  # not a word the world's tokenizer knows
        trace(handle, prompt, subject, obj, TraceSettings(corruption="counterfactual", counterfactual="Bob"))
    with pytest.raises(TraceError, match="does not tokenize like"):
        trace(
            handle, prompt, subject, obj, TraceSettings(corruption="counterfactual", counterfactual=subject.split()[0])
        )
    # All are ValueErrors, for callers that catch bad input broadly.
    assert issubclass(TraceError, ValueError) and issubclass(EncodingError, ValueError)


def test_docstring_examples():
    assert doctest.testmod(locate.causal_trace, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_batched_equals_reference_and_nnsight(family):
    # Key-value reuse and position handling differ by family (learned positions, rotary).
    h = tiny_handle(family, n_layers=3)
    args = ("the cat sat on a mat in", "cat sat", "Paris")
    s = TraceSettings(samples=2, window=2, batch_size=5)
    fast, ref, nn = (fn(h, *args, s) for fn in (trace, trace_reference, trace_nnsight))
    for c in ("resid", "mlp", "attn"):
        torch.testing.assert_close(fast.scores[c], ref.scores[c], atol=1e-5, rtol=0)
        torch.testing.assert_close(nn.scores[c], ref.scores[c], atol=1e-5, rtol=0)


def test_an_unfilled_key_value_cache_is_an_error_not_a_wrong_grid():
    from transformers import DynamicCache

    from locate.causal_trace import _rows_of

    with pytest.raises(TraceError, match="did not fill the key-value cache"):
        _rows_of(DynamicCache(), torch.tensor([0]), 3)
