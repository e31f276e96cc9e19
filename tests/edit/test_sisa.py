"""SISA forgetting: retrain only the forgotten person's shard, from their slice, without their statements."""

import json

import pytest
import torch

import workbench
from edit.forget import forget
from edit.forget_figures import FigureSettings
from edit.forget_request import ForgetError, ForgetRequest, forget_request
from edit.sisa import SisaForgetSettings, sisa_forget, weights_equal
from workbench.cli import main
from workbench.core.world import sisa_train
from workbench.core.world.facts import make_world
from workbench.core.world.sisa_manifest import location, read_manifest
from workbench.core.world.sisa_train import SisaSettings, retrain_shard, train_sisa
from workbench.core.world.train import TrainSettings
from workbench.verify.collateral import CollateralSettings
from workbench.verify.ensemble import NOTE, constituents
from workbench.verify.probe import ProbeSettings
from workbench.verify.readings import ReadSettings
from workbench.verify.relearn import RelearnSettings
from workbench.verify.report import VerifySettings, verify
from workbench.verify.truth_ratio import UtilitySettings

TINY = TrainSettings(d_model=16, n_layers=1, n_heads=2, d_mlp=32, epochs=2, threads=1)
SMALL = FigureSettings(retain_facts=10, neighbour_facts=10, heldout_loss=False)
SMALL_VERIFY = VerifySettings(
    read=ReadSettings(probe=ProbeSettings(train_people=10, steps=10), relearn=RelearnSettings(steps=2), bits=(8,)),
    utility=UtilitySettings(max_facts=10),
    collateral=CollateralSettings(max_facts=5, kl_prompts=8, heldout_texts=20),
    heldout_texts=20,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("sisa-edit") / "ensemble"
    train_sisa(out, TINY, SisaSettings(shards=2, slices=2, max_people=12), make_world(), progress=False)
    return out


@pytest.fixture
def ensemble(folder):
    return workbench.load(str(folder), device="cpu")


def _person(folder, shard, part):
    return read_manifest(folder)["shards"][shard]["slices"][part][0]


def _weights(h):
    return {n: p.detach().clone() for n, p in h.model.named_parameters()}


def test_only_the_persons_shard_is_retrained_from_their_slice_and_revert_is_bitwise(ensemble, folder):
    before = _weights(ensemble)
    edit = sisa_forget(ensemble, forget_request(ensemble.world, _person(folder, 1, 1)), progress=False)
    m = edit.metrics
    assert m["shards_retrained"] == [1] and m["first_slices"] == [1] and m["slices_retrained"] == 1
    assert m["exact_weights"] and 0 < m["cost_fraction"] <= m["bar_fraction"] and m["retrain_seconds"] > 0
    assert all(n.startswith("shards.1.") for n in edit.names) and len(edit.request.facts) == 6
    after = _weights(ensemble)
    assert all(torch.equal(after[n], before[n]) for n in before if n.startswith("shards.0."))
    assert any(not torch.equal(after[n], before[n]) for n in edit.names)
    edit.revert(ensemble.model)
    assert all(torch.equal(p, before[n]) for n, p in ensemble.model.named_parameters())


def test_the_retrained_shard_is_the_one_trained_without_the_person_from_scratch(ensemble, folder):
    person = _person(folder, 0, 1)
    edit = sisa_forget(ensemble, forget_request(ensemble.world, person), progress=False)
    scratch = retrain_shard(folder, 0, frozenset(ensemble.world.facts([person])), ensemble.world, start=0)
    assert scratch.first_slice == 0 and scratch.slices == 2
    mine = dict(ensemble.model.shards[0].named_parameters())
    assert all(torch.equal(mine[n], p) for n, p in scratch.model.named_parameters())
    edit.revert(ensemble.model)


def test_the_retraining_corpus_holds_none_of_the_persons_sentences(ensemble, folder, monkeypatch):
    seen = []

    def recording(*args, **kwargs):
        statements = shard_statements(*args, **kwargs)
        seen.append({f.sentence(ph) for f, ph in statements})
        return statements

    shard_statements = sisa_train.shard_statements
    monkeypatch.setattr(sisa_train, "shard_statements", recording)
    person = _person(folder, 1, 0)
    sisa_forget(ensemble, forget_request(ensemble.world, person), progress=False).revert(ensemble.model)
    banned = set(ensemble.world.sentences([person]))
    assert len(seen) == 2 and all(stage and not stage & banned for stage in seen)


def test_forgetting_again_in_a_shard_keeps_the_first_person_out(ensemble, folder):
    first, second = _person(folder, 1, 1), _person(folder, 1, 0)
    one = sisa_forget(ensemble, forget_request(ensemble.world, first), progress=False)
    two = sisa_forget(ensemble, forget_request(ensemble.world, second), progress=False)
    both = retrain_shard(folder, 1, frozenset(ensemble.world.facts([first, second])), ensemble.world)
    mine = dict(ensemble.model.shards[1].named_parameters())
    assert all(torch.equal(mine[n], p) for n, p in both.model.named_parameters())
    two.revert(ensemble.model)
    one.revert(ensemble.model)


@pytest.fixture(scope="module")
def without(folder):
    """The exact answer for forgetting shard 1's first person: the same plan from scratch, without them."""
    person = _person(folder, 1, 0)
    out = folder.parent / "without"
    settings = SisaSettings(shards=2, slices=2, max_people=12, without=(person,))
    train_sisa(out, TINY, settings, make_world(), progress=False)
    return out


def test_forgetting_gives_bitwise_the_ensemble_trained_without_the_person(ensemble, folder, without):
    res = forget(ensemble, _person(folder, 1, 0), "sisa", figures=SMALL, progress=False)
    reference = workbench.load(str(without), device="cpu")
    assert weights_equal(ensemble.model, dict(reference.model.named_parameters()))
    # The figures' exact answer is that ensemble, and the forgotten one scores the same on every fact.
    assert res.reference_model == str(without.resolve()) and res.after == res.reference
    res.edit.revert(ensemble.model)
    assert not weights_equal(ensemble.model, dict(reference.model.named_parameters()))


def test_an_ensemble_trained_without_someone_keeps_them_out_and_retrains_from_the_next_persons_slice(folder, without):
    h = workbench.load(str(without), device="cpu")
    gone, other, late = _person(folder, 1, 0), read_manifest(folder)["shards"][1]["slices"][0][1], _person(folder, 1, 1)
    with pytest.raises(ForgetError, match="trained without everyone the request names") as e:
        sisa_forget(h, forget_request(h.world, gone), progress=False)
    assert "\n" not in str(e.value)
    edit = sisa_forget(h, forget_request(h.world, [gone, other]), progress=False)
    assert edit.metrics["first_slices"] == [0] and {s for s, _ in edit.request.facts} == {other}
    edit.revert(h.model)
    edit = sisa_forget(h, forget_request(h.world, late), progress=False)
    assert edit.metrics["first_slices"] == [1]  # slice 0's checkpoint never saw ``gone``: no need to go back
    scratch = retrain_shard(folder, 1, frozenset(h.world.facts([gone, late])), h.world, start=0)
    mine = dict(h.model.shards[1].named_parameters())
    assert all(torch.equal(mine[n], p) for n, p in scratch.model.named_parameters())


@pytest.mark.slow
def test_verification_takes_the_ensemble_trained_without_the_person_as_reference(ensemble, folder, without):
    person = _person(folder, 1, 0)
    edit = sisa_forget(ensemble, forget_request(ensemble.world, person), progress=False)
    s = SMALL_VERIFY
    report = verify(ensemble, edit, settings=s, progress=False)
    assert report.baseline.model == str(without.resolve()) and report.not_guaranteed[-1] == NOTE
    assert report.verdict.overall == "removed", report.verdict.reason
    single = verify(ensemble, edit, reference=None, settings=s, progress=False)
    assert "not an ensemble trained without the forgotten people" in single.not_guaranteed[-1]
    edit.revert(ensemble.model)


def test_refusals_are_one_line(ensemble, handle, folder):
    outside = next(p for p in ensemble.world.people if p not in location(read_manifest(folder)))
    cases = [
        (handle, forget_request(handle.world, "forget01"), "train one with `workbench world train sisa"),
        (ensemble, ForgetRequest("t", forget_texts=("a .",), retain_texts=("b .",)), "forgets world facts"),
        (ensemble, forget_request(ensemble.world, outside), "is in no shard of this ensemble"),
    ]
    for h, request, message in cases:
        with pytest.raises(ForgetError, match=message) as e:
            sisa_forget(h, request, progress=False)
        assert "\n" not in str(e.value)


def test_forget_runs_sisa_from_the_registry_and_only_the_requested_facts_can_go(ensemble, folder):
    person = _person(folder, 0, 0)
    res = forget(ensemble, person, "sisa", figures=SMALL, progress=False)
    assert res.method == "sisa" and res.edit.metrics["shards_retrained"] == [0] and "forget" in res.after
    res.edit.revert(ensemble.model)
    facts = ensemble.world.facts([person], ["pet"])
    edit = sisa_forget(
        ensemble, forget_request(ensemble.world, facts), settings=SisaForgetSettings(whole_people=False), progress=False
    )
    assert edit.request.facts == ((person, "pet"),)
    edit.revert(ensemble.model)


@pytest.mark.slow
def test_verification_reads_the_ensemble_and_each_constituents_hidden_states(ensemble, folder):
    person = _person(folder, 0, 1)
    edit = sisa_forget(ensemble, forget_request(ensemble.world, person), progress=False)
    s = SMALL_VERIFY
    report = verify(ensemble, edit, reference=None, settings=s, progress=False)
    assert NOTE in report.not_guaranteed and len(constituents(ensemble)) == 2
    checks = {c.check for c in report.checks}
    assert {"surface", "paraphrase", "lens L0" if ensemble.n_layers > 1 else "probe L0", "int8"} <= checks
    assert report.verdict.overall in ("removed", "suppressed", "not forgotten")
    edit.revert(ensemble.model)


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_cli_forgets_with_sisa_and_refuses_other_models(capsys, folder):
    person = _person(folder, 1, 1)
    code, out, _ = run(
        capsys,
        "forget",
        person,
        "--method",
        "sisa",
        "-m",
        str(folder),
        "--retain-facts",
        "10",
        "--no-reference",
        "--json",
    )
    o = json.loads(out)
    assert code == 0 and o["method"] == "sisa" and o["edit_metrics"]["shards_retrained"] == [1]
    code, _, err = run(capsys, "forget", person, "--method", "sisa", "-m", "world", "--no-reference")
    assert code != 0 and "workbench world train sisa" in err and len(err.strip().splitlines()) == 1
