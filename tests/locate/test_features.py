"""Splicing keeps the model unchanged; feature attribution names features whose ablation hurts the answer."""

import warnings

import pytest
import torch

from locate.feature_data import feature_data
from locate.features import FeatureSettings, locate_features, locate_person_features
from locate.location import Location
from locate.sae_splice import SaeError, load_sae, object_prob_with, splice_hook
from locate.sae_train import SaeSettings


@pytest.fixture(scope="module")
def fact(world):
    f = world.facts()[40]
    return world.phrasings(f.relation)[0].prompt(f.subject), f.subject, f.object


@pytest.mark.parametrize("component", ["resid", "mlp"])
def test_splice_with_error_term_changes_nothing(handle, component):
    s = SaeSettings(0, component)
    ids = handle.encode(handle.world.training_sentences()[5])
    spliced = handle.hooked.run_with_hooks(ids, fwd_hooks=[(s.hook_name(), splice_hook(load_sae(s)))])
    torch.testing.assert_close(spliced, handle.hooked(ids), atol=1e-4, rtol=1e-5)


def test_feature_location_is_confirmed_by_ablation(handle, fact):
    loc = locate_features(handle, *fact, settings=FeatureSettings(top=10, confirm=3))
    assert loc.method == "sae_features" and len(loc.sites) == 10 and loc.best().kind == "feature"
    assert Location.from_json(loc.to_json()) == loc
    best = loc.extras["ablation"][0]
    assert best["estimated_log_odds_change"] < 0 and best["prob_after"] < loc.extras["prob"] - 0.01
    # Ablating the top features together removes much more than the least of them alone.
    s = SaeSettings()
    together = object_prob_with(handle, load_sae(s), s, fact[0], fact[2], [x.feature for x in loc.sites[:5]])
    assert together < best["prob_after"]
    span = loc.extras["subject_span"]
    assert set(loc.extras["firing"]) == {str(t) for t in range(*span)} | {str(len(loc.tokens) - 1)}


def test_person_features(handle, world):
    loc = locate_person_features(handle, list(world.people)[40], settings=FeatureSettings(top=5))
    assert len(loc.sites) == 5 and set(loc.extras["top_features_by_relation"]) == set(world.relations)
    with pytest.raises(ValueError, match="unknown person"):
        locate_person_features(handle, "Nobody Here")


def test_feature_data_top_contexts_hold_the_largest_activations(handle):
    texts = handle.world.training_sentences()[:400]
    loc_feature = 7
    d = feature_data(handle, loc_feature, texts=texts, top=3)
    maxes = [c["max"] for c in d["top_contexts"]]
    assert maxes == sorted(maxes, reverse=True)
    assert all(max(c["activations"]) == pytest.approx(c["max"], abs=1e-3) for c in d["top_contexts"])
    assert sum(d["histogram"]["counts"]) == round(d["fires_on_fraction"] * sum(len(handle.tokens(t)) for t in texts))
    assert len(d["promotes"]) == len(d["suppresses"]) == 3
    assert d["promotes"][0]["logit"] >= d["promotes"][-1]["logit"] and d["suppresses"][0]["logit"] <= 0
    with pytest.raises(SaeError, match="feature 9999 out of range"):
        feature_data(handle, 9999, texts=texts)


def test_a_given_sae_is_used_without_asking_its_length(handle, fact):
    # An SAE's truth value is its length, which sae-lens deprecates; a given one is checked against None.
    sae = load_sae(SaeSettings())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        feature_data(handle, 7, texts=handle.world.training_sentences()[:20], top=1, sae=sae)
        locate_features(handle, *fact, settings=FeatureSettings(top=2, confirm=1), sae=sae)
    assert not [w for w in seen if "length of SAE" in str(w.message)]
