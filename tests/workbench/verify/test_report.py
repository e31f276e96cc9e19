"""verify() on cases whose answer is known: the retain models, the full model, a built suppression, real edits."""

import json
from dataclasses import replace

import pytest
import torch

import workbench
from edit.edit import EditSequence
from edit.forget import forget
from edit.forget_figures import FigureSettings
from edit.request import world_request
from edit.rome import RomeSettings, rome
from workbench.core.hashing import tensor_hash
from workbench.verify.relearn import RelearnSettings
from workbench.verify.report import Report, VerifyError, VerifySettings, reference_model, verify
from workbench.verify.suppression import ConstructedSuppression

QUICK = VerifySettings.quick()


@pytest.fixture(scope="module")
def forget01(world):
    return world.facts(world.split("forget01").forget)


def assert_round_trip(r: Report) -> None:
    """The report's JSON reads back to the same JSON, and its records hold the figures its JSON does."""
    text = r.to_json()
    assert Report.from_json(text).to_json() == text
    d = json.loads(text)
    assert [(c.check, c.status) for c in r.checks] == [(c["check"], c["status"]) for c in d["checks"]]
    assert (r.verdict.overall, r.baseline.model) == (d["verdict"], d["baseline"]["model"])
    assert (r.verdict.reason, r.verdict.overall) == (d["reason"], d["verdict_details"]["overall"])
    assert r.retained.accuracy_after == d["retained"]["accuracy_after"]
    for name, state in r.states.by_name().items():
        figures = d["states"][name]
        assert (state.utility.accuracy, state.heldout_loss) == (figures["utility"]["accuracy"], figures["heldout_loss"])


def test_the_retain_model_has_removed_its_own_split():
    r = verify(workbench.load("world:retain-forget01", device="cpu"), forget="forget01", settings=QUICK, progress=False)
    assert r.verdict.overall == "removed" and r.baseline.model == "world:retain-forget01"
    assert {c.status for c in r.checks} == {"consistent"} and r.collateral is None


@pytest.mark.slow
def test_a_retain_model_from_another_seed_is_indistinguishable_from_the_reference():
    # Not the same model: its lucky guesses differ, and the tests must not call that knowledge.
    light = replace(QUICK, read=replace(QUICK.read, relearn=RelearnSettings(max_people=5), bits=(4,)))
    r = verify(
        workbench.load("world:retain-forget05-seed1", device="cpu"), forget="forget05", settings=light, progress=False
    )
    assert r.verdict.overall == "removed", r.verdict.reason
    assert all(i.verdict == "removed" for i in r.verdict.items) and len(r.verdict.items) == 15
    fq = next(c for c in r.checks if c.check == "forget quality")
    assert fq.edited > 0.05 and fq.status == "consistent"


def test_the_full_model_has_not_forgotten(handle):
    r = verify(handle, forget="forget01", settings=QUICK, progress=False)
    assert r.verdict.overall == "not forgotten"
    assert all(c.status == "recovered" for c in r.checks if c.check != "membership AUC")
    assert {i.verdict for i in r.verdict.items} == {"not forgotten"}
    assert r.states.by_name().keys() == {"edited", "retain"}  # nothing was edited: no "original" to show
    assert r.states.original is None and r.to_dict()["states"].keys() == {"edited", "retain"}
    assert_round_trip(r)


def test_an_output_suppression_is_caught_by_the_lens_and_the_probe(handle, forget01):
    r = verify(handle, ConstructedSuppression(handle, forget01), settings=QUICK, progress=False)
    assert r.verdict.overall == "suppressed", r.verdict.reason
    status = {c.check: c.status for c in r.checks}
    assert status["surface"] == "consistent" and status["paraphrase"] == "consistent"
    assert status["lens L1"] == status["probe L0"] == status["probe L1"] == "recovered"
    assert "attacks do" in r.verdict.reason and r.method == "constructed suppression"


def test_an_unlearning_edit_keeps_its_state_and_renders_everywhere(handle, tmp_path):
    res = forget(
        handle,
        "forget01",
        "ssd",
        figures=FigureSettings(retain_facts=20, neighbour_facts=20),
        reference=False,
        progress=False,
    )
    try:
        after = {n: tensor_hash(handle.model.get_parameter(n)) for n in res.edit.names}
        r = verify(handle, res.edit, settings=QUICK, progress=False)
        assert res.edit.applied and after == {n: tensor_hash(handle.model.get_parameter(n)) for n in res.edit.names}
    finally:
        res.edit.revert(handle.model)
    assert r.method == "ssd" and r.kind == "forget" and r.verdict.overall == "removed", r.verdict.reason
    assert r.states.by_name().keys() == {"edited", "original", "retain"}
    assert r.collateral.groups["edited"].prob_after < 0.1 and r.retained.accuracy_after == 1.0
    assert_round_trip(r)
    back = json.loads(r.to_json())
    assert back["verdict"] == "removed" and back["checks"][0]["check"] == "surface"
    assert {"overall", "reason"} <= back["verdict_details"].keys() and back["not_guaranteed"]
    page = r.write_html(tmp_path / "r.html").read_text()
    assert page.count("plotly.js v") == 1 and 'id="report"' in page and "removed" in page
    assert set(r.figures()) == {"checks", "layers", "truth_ratios", "collateral"}
    assert "wb-verdict" in r._repr_html_() and "removed" in repr(r)


def test_a_rewrite_is_verified_against_the_original_model(handle, world):
    p = list(world.people)[5]
    new = next(c for c in world.relation("pet").candidates if c != world.fact(p, "pet").object)
    e = rome(handle, world_request(world, p, "pet", new), settings=RomeSettings(layer=0, token="last"))
    try:
        r = verify(handle, e, settings=QUICK, progress=False)
    finally:
        e.revert(handle.model)
    assert r.kind == "rewrite" and r.verdict.overall == "rewritten" and r.baseline.model is None
    assert r.rewrite.edited.counterfact.efficacy.prob == 1.0
    assert r.rewrite.original.generation.old == 1.0 and r.rewrite.edited.generation.new == 1.0
    assert {c.check: c.edited for c in r.checks}["surface"] == 0.0
    assert_round_trip(r)
    assert "rewritten" in r.to_html()


def test_a_sequence_of_rewrites_is_verified_as_one(handle, world):
    people = list(world.people)[5:7]
    edits = []
    for p in people:
        new = next(c for c in world.relation("pet").candidates if c != world.fact(p, "pet").object)
        edits.append(rome(handle, world_request(world, p, "pet", new), settings=RomeSettings(layer=0, token="last")))
    seq = EditSequence(edits)
    try:
        r = verify(handle, seq, settings=QUICK, progress=False)
        assert seq.applied
    finally:
        seq.revert(handle.model)
    assert r.method == "rome" and [i.subject for i in r.verdict.items] == people
    assert r.rewrite.edited.efficacy == [True, True] and r.collateral.groups["edited"].n == 2
    # Both outputs give the new object; whatever a check still reads of the old one is named.
    assert r.verdict.overall in ("rewritten", "partly rewritten")
    assert all(i.verdict == "rewritten" or i.old_returns_under for i in r.verdict.items)


def test_what_cannot_be_verified_is_refused_in_one_line(handle, world):
    from tiny_models import tiny_handle

    from edit.edit import Delta, Edit

    with pytest.raises(VerifyError, match="nothing to verify"):
        verify(handle, progress=False)
    with pytest.raises(VerifyError, match="no fact world"):
        verify(tiny_handle("gpt2"), forget="forget01", progress=False)
    vague = Edit("x", {"name": "some text"}, {"lm_head.weight": Delta(dense=torch.zeros(1))})
    with pytest.raises(VerifyError, match="does not say which world facts"):
        verify(handle, vague, progress=False)
    people = list(world.people)
    mixed = {
        "requests": [
            world_request(world, people[0], "pet").to_dict(),
            world_request(
                world, people[1], "pet", "cat" if world.fact(people[1], "pet").object != "cat" else "dog"
            ).to_dict(),
        ]
    }
    with pytest.raises(VerifyError, match="mixes rewrites and erasures"):
        verify(handle, Edit("memit", mixed, {"lm_head.weight": Delta(dense=torch.zeros(1))}), progress=False)


def test_the_reference_is_the_smallest_split_holding_everyone(world):
    f05 = world.split("forget05").forget
    assert reference_model(world, f05[:1]) == (
        "world:retain-forget01" if f05[0] in world.split("forget01").forget else "world:retain-forget05"
    )
    assert reference_model(world, f05) == "world:retain-forget05"
    assert reference_model(world, world.split("forget10").forget) == "world:retain-forget10"
