"""Attribution patching on the default world model: same baselines as the exact trace, and a good estimate."""

import pytest
import torch
from scipy.stats import spearmanr

from locate.attribution_patching import attribute, attribute_many
from locate.causal_trace import TraceError, TraceSettings, trace

FEW = TraceSettings(samples=3, seed=2)


def _facts(world, n, phrasing=0):
    return [
        (world.phrasings(f.relation)[phrasing].prompt(f.subject), f.subject, f.object)
        for f in world.facts()[: 6 * n : 6]
    ]


def _flat(result):
    return torch.cat([result.scores[c].flatten() for c in ("resid", "mlp", "attn")])


def test_baselines_and_shapes_match_the_exact_trace(handle, world):
    fact = _facts(world, 1)[0]
    exact, approx = trace(handle, *fact, FEW), attribute(handle, *fact, FEW)
    assert approx.clean == pytest.approx(exact.clean, abs=1e-5)
    assert approx.corrupted == pytest.approx(exact.corrupted, abs=1e-5)
    assert approx.subject_span == exact.subject_span and approx.tokens == exact.tokens
    assert {c: s.shape for c, s in approx.scores.items()} == {c: s.shape for c, s in exact.scores.items()}
    loc = approx.to_location()
    assert loc.method == "attribution_patching" and loc.grids.keys() == exact.to_location().grids.keys()


@pytest.mark.parametrize("component,layer,token", [("mlp", 1, -1), ("resid", 0, -1), ("attn", 0, -1)])
def test_each_cell_is_the_derivative_of_a_partial_restoration(handle, world, component, layer, token):
    # The estimate is d/da P(corrupt + a (clean - corrupt)) at a = 0: check it by finite differences.
    prompt, subject, obj = _facts(world, 1)[0]
    s = TraceSettings(samples=1, noise=1.0, seed=3)
    approx = attribute(handle, prompt, subject, obj, s)
    t = len(approx.tokens) + token
    bridge, name = handle.hooked, handle.sites.hook_name(layer, component)
    ids, obj_ids = handle.encode_fact(prompt, obj)
    ids = torch.tensor([ids + obj_ids[:-1]])
    a, b = approx.subject_span
    # The noise the locator drew: seed 3, one sample, scaled by the embedding matrix's std.
    wte = handle.sites.module(handle.model, None, "embed").weight.detach()
    noise = torch.randn(1, b - a, wte.shape[1], generator=torch.Generator().manual_seed(3))
    corrupt_embeds = wte[ids[0, a:b]] + 1.0 * wte.std() * noise[0]

    def corrupt(x, hook):
        x = x.clone()
        x[:, a:b] = corrupt_embeds
        return x

    embed = handle.sites.hook_name(None, "embed")
    clean = bridge.run_with_cache(ids, names_filter=lambda n: n == name)[1][name][0, t]
    with bridge.hooks(fwd_hooks=[(embed, corrupt)]):
        state = bridge.run_with_cache(ids, names_filter=lambda n: n == name)[1][name][0, t]

    def prob(alpha):
        def nudge(x, hook):
            x = x.clone()
            x[:, t] = state + alpha * (clean - state)
            return x

        logits = bridge.run_with_hooks(ids, fwd_hooks=[(embed, corrupt), (name, nudge)])
        n = len(ids[0]) - len(obj_ids) + 1
        logp = torch.log_softmax(logits[0, n - 1 :].double(), -1)[torch.arange(len(obj_ids)), obj_ids]
        return float(logp.sum().exp())

    eps = 1e-2
    with torch.no_grad():
        derivative = (prob(eps) - prob(-eps)) / (2 * eps)
        assert prob(0.0) == pytest.approx(approx.corrupted, abs=1e-5)
    estimate = float(approx.indirect_effect(component)[t, layer])
    assert abs(derivative) > 1e-3
    assert estimate == pytest.approx(derivative, abs=2e-3, rel=2e-2)


def test_ranks_sites_like_the_exact_trace_at_full_noise(handle, world):
    rhos = [
        spearmanr(_flat(trace(handle, *f, FEW)), _flat(attribute(handle, *f, FEW))).statistic for f in _facts(world, 4)
    ]
    assert sum(rhos) / len(rhos) > 0.7, rhos


def test_many_equals_one_at_a_time_across_shapes(handle, world):
    facts = _facts(world, 3) + _facts(world, 3, phrasing=1)  # two prompt shapes, several objects
    together = attribute_many(handle, facts, FEW, batch_size=7)  # 7 rows: chunks of two facts
    for f, r in zip(facts, together, strict=True):
        alone = attribute(handle, *f, FEW)
        assert r.prompt == f[0] and r.subject_span == alone.subject_span
        torch.testing.assert_close(_flat(r), _flat(alone), atol=1e-5, rtol=0)
    assert attribute_many(handle, [], FEW) == []


def test_window_sums_its_layers(handle, world):
    fact = _facts(world, 1)[0]
    one = attribute(handle, *fact, FEW, components=("mlp",))
    three = attribute(handle, *fact, TraceSettings(samples=3, seed=2, window=3), components=("mlp",))
    ie = one.indirect_effect("mlp")
    # Layer 1 with window 3 restores layers 0..2.
    assert float(three.indirect_effect("mlp")[:, 1].sum()) == pytest.approx(float(ie[:, 0:3].sum()), abs=1e-5)


def test_counterfactual_corruption(handle, world):
    fact = _facts(world, 1)[0]
    s = TraceSettings(corruption="counterfactual")
    exact, approx = trace(handle, *fact, s), attribute(handle, *fact, s)
    assert approx.replacement == exact.replacement
    assert approx.corrupted == pytest.approx(exact.corrupted, abs=1e-5)


def test_bad_input_is_a_trace_error(handle, world):
    with pytest.raises(TraceError, match="unknown component"):
        attribute(handle, *_facts(world, 1)[0], FEW, components=("ffn",))
