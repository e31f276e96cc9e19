"""Truth ratio, forget quality and model utility: the definition by hand, and the retain models as the answer."""

import math

import pytest
import torch

import workbench
from edit.forget_request import forget_request
from workbench.core.metrics import candidate_logprobs
from workbench.verify.suppression import suppress_output
from workbench.verify.truth_ratio import (
    TruthRatioSettings,
    UtilitySettings,
    forget_quality,
    forget_truth_score,
    harmonic_mean,
    model_utility,
    truth_ratios,
)


@pytest.fixture(scope="module")
def request05(world):
    return forget_request(world, "forget05")


@pytest.fixture(scope="module")
def reference(request05):
    return truth_ratios(workbench.load("world:retain-forget05", device="cpu"), request05.forget)


def test_ratio_by_hand(handle, world):
    # An employer fact: two-token objects, so the per-token normalisation matters.
    fact = next(f for f in world.facts() if f.relation == "employer")
    cands = list(world.relation("employer").candidates)
    prompts = [ph.prompt(fact.subject) for ph in world.phrasings("employer", held_out=True)]
    lp = candidate_logprobs(handle.model, handle.tokenizer, prompts, cands) / 2  # every employer is two tokens
    true = cands.index(fact.object)
    wrong = [i for i in range(len(cands)) if i != true]
    expected = math.exp(float((lp[:, wrong].mean(1) - lp[:, true]).mean()))
    got = float(truth_ratios(handle, [fact])[0])
    assert got == pytest.approx(expected, rel=1e-4)
    trained = float(truth_ratios(handle, [fact], TruthRatioSettings(held_out=False))[0])
    assert trained < 1e-3 and got < 1e-3


def test_forget_quality_tells_the_original_from_exact_unlearning(handle, request05, reference):
    original = truth_ratios(handle, request05.forget)
    assert original.shape == (90,) and float(original.max()) < 0.01
    assert forget_quality(original, reference) < 1e-20
    # A second model trained without the same people, another seed: what exact unlearning gives.
    seed1 = truth_ratios(workbench.load("world:retain-forget05-seed1", device="cpu"), request05.forget)
    assert forget_quality(seed1, reference) > 0.1
    assert forget_quality(reference, reference) == 1.0
    assert forget_truth_score(original) < 0.01 < 0.1 < forget_truth_score(reference)


def test_forget_quality_catches_output_suppression(handle, request05, reference):
    # Suppression overshoots: the true object becomes far less likely than any wrong one (R >> 1),
    # which a model that never saw the people does not do.
    with suppress_output(handle, request05.forget):
        suppressed = truth_ratios(handle, request05.forget)
    assert float(suppressed.median()) > 10 * float(reference.median())
    assert forget_quality(suppressed, reference) < 1e-3


def test_model_utility(handle, world, request05):
    u = model_utility(handle, request05.retain, UtilitySettings(max_facts=24))
    assert u["facts"] == 24 and u["accuracy"] == 1.0
    assert u["probability"] > 0.99 and u["truth_ratio"] > 0.99 and u["utility"] > 0.99
    assert u["utility"] == pytest.approx(harmonic_mean([u["probability"], u["accuracy"], u["truth_ratio"]]))
    # Facts the model no longer gives out pull utility to zero through accuracy.
    people = request05.retain[:12]
    with suppress_output(handle, people):
        low = model_utility(handle, people)
    assert low["accuracy"] < 0.1 and low["truth_ratio"] < 0.5 and low["utility"] < 0.1


def test_small_pieces():
    assert harmonic_mean([0.5, 0.5]) == pytest.approx(0.5)
    assert forget_truth_score(torch.tensor([1.0])) == 1.0
    assert forget_quality([0.1, 0.2, 0.3], [10.0, 20.0, 30.0]) < 0.2


def test_needs_a_world():
    from tiny_models import tiny_handle

    with pytest.raises(ValueError, match="no fact world"):
        truth_ratios(tiny_handle("gpt2"), [workbench.make_world().facts()[0]])
