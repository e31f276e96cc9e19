"""SAE feature ablation: the runtime form forgets, the baked edit tracks it, touches one tensor and reverts."""

import pytest
import torch

from edit.edit import EditError
from edit.forget_request import ForgetError, forget_request
from edit.sae_ablation import (
    Ablation,
    AblationError,
    AblationSettings,
    ablated,
    ablation_from,
    ablation_of,
    choose_features,
    compare_forms,
    run_ablated,
    sae_ablate,
    score_ablated,
)
from locate.location import Location, Site
from locate.sae_train import SaeSettings

PERSON = "Brur Theistuv"
# Small samples keep the file fast; the defaults are measured in benchmarks/sae_ablation.py.
QUICK = AblationSettings(retain_facts=100, phrasings=3, bake_texts=1000)


@pytest.fixture(scope="module")
def request_(world):
    return forget_request(world, PERSON)


@pytest.fixture(scope="module")
def location(handle, request_):
    return choose_features(handle, request_, QUICK)


@pytest.fixture(scope="module")
def retain_sample(request_):
    return list(request_.retain[::45])  # 40 facts of many people


def test_runtime_ablation_forgets_the_person_and_keeps_most_others(handle, request_, location, retain_sample):
    ablation = ablation_from(location, QUICK)
    assert ablation.hook_name == "blocks.0.hook_mlp_out" and 0 < len(ablation.features) <= QUICK.features_per_person
    assert handle.score(list(request_.forget)).accuracy == 1.0
    forget = score_ablated(handle, ablation, request_.forget)
    retain = score_ablated(handle, ablation, retain_sample)
    # Measured: forget 0.56 (mean P 0.58), retain 0.93. Features are shared by many people, so
    # ablating them costs some retained facts too.
    assert forget.accuracy <= 0.7 and float(forget.prob.mean()) <= 0.75
    assert retain.accuracy >= 0.85
    # Nothing stays behind once the block is left.
    assert handle.score(list(request_.forget)).accuracy == 1.0


def test_no_features_changes_nothing_and_both_views_agree(handle, location):
    ids = handle.encode(handle.world.training_sentences()[3])
    plain = handle.model(ids).logits
    with ablated(handle, Ablation(SaeSettings(0, "mlp"), ())):
        assert torch.equal(handle.model(ids).logits, plain)
    ablation = ablation_from(location)
    with ablated(handle, ablation):
        hf = handle.model(ids).logits
    assert not torch.allclose(hf, plain, atol=1e-2)
    torch.testing.assert_close(run_ablated(handle, ablation, ids), hf, atol=1e-4, rtol=1e-4)


def test_baked_edit_touches_one_tensor_reverts_and_tracks_the_runtime_form(handle, request_, location, tmp_path):
    before = {n: p.detach().clone() for n, p in handle.model.named_parameters()}
    e = sae_ablate(handle, request_, location=location, settings=QUICK, progress=False)
    try:
        assert e.applied and e.names == ["transformer.h.0.mlp.c_proj.weight"]
        assert e.deltas[e.names[0]].rank == len(ablation_of(e).features)
        changed = [n for n, p in handle.model.named_parameters() if not torch.equal(p, before[n])]
        assert changed == e.names
        assert e.metrics["bake_explained"] > 0.95
        # The bake survives export: a plain checkpoint gives the baked model's logits.
        from transformers import AutoModelForCausalLM

        handle.model.save_pretrained(tmp_path)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
        ids = handle.encode(handle.world.phrasings("pet")[0].prompt(PERSON))
        torch.testing.assert_close(reloaded(ids).logits, handle.model(ids).logits)
    finally:
        e.revert(handle.model)
    assert all(torch.equal(p, before[n]) for n, p in handle.model.named_parameters())
    c = compare_forms(handle, e, request_, retain_facts=20, neighbour_facts=20)
    assert not e.applied
    for name in ("forget", "forget_heldout"):
        runtime, baked = c[name]["runtime"], c[name]["baked"]
        assert c[name]["original"]["accuracy"] == 1.0
        assert abs(runtime["accuracy"] - baked["accuracy"]) <= 0.1
        assert abs(runtime["mean_prob"] - baked["mean_prob"]) <= 0.05
        # Measured 0.004 nats against the ablation's own 4.1: the bake is a thousand times closer.
        assert c[name]["kl_runtime_baked"] < 0.05 and c[name]["kl_runtime_original"] > 2.0


def test_a_nan_bake_leaves_the_model_unchanged(handle, request_, location):
    before = {n: p.detach().clone() for n, p in handle.model.named_parameters()}
    with pytest.raises(EditError):
        sae_ablate(
            handle,
            request_,
            location=location,
            progress=False,
            settings=AblationSettings(bake_texts=50, bake_ridge=float("nan")),
        )
    assert all(torch.equal(p, before[n]) for n, p in handle.model.named_parameters())


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda h: sae_ablate(h, "Nobody Here", progress=False), ForgetError, "unknown person"),
        (
            lambda h: sae_ablate(
                h, PERSON, Location("m", sites=[Site("feature", 0, "mlp", feature=9999)]), progress=False
            ),
            AblationError,
            "feature 9999 out of range",
        ),
        (
            lambda h: sae_ablate(h, PERSON, settings=AblationSettings(sae=SaeSettings(1, "mlp")), progress=False),
            AblationError,
            "no SAE at blocks.1.hook_mlp_out",
        ),
        (lambda h: ablated(h, Ablation(SaeSettings(0, "resid"), (512,))).__enter__(), AblationError, "out of range"),
        (lambda h: Ablation(mode="clamp_negative", value=2.0), AblationError, "negative value"),
        (
            lambda h: sae_ablate(h, PERSON, Location("m", sites=[Site("activation", 0, "mlp", 3)]), progress=False),
            AblationError,
            "no feature sites",
        ),
    ],
)
def test_bad_input_is_one_line_value_error(handle, make, error, words):
    before = {n: p.detach().clone() for n, p in handle.model.named_parameters()}
    with pytest.raises(error, match=words) as info:
        make(handle)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    assert all(torch.equal(p, before[n]) for n, p in handle.model.named_parameters())
