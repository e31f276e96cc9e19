"""Selective Synaptic Dampening: selective on the world model, only selected elements move, reversible."""

import pytest
import torch

from edit.edit import EditError
from edit.forget_request import forget_request, subsample
from edit.ssd import SsdSettings, dampening_factors, ssd
from locate.fisher import FisherScores, FisherSettings, fisher, ssd_mask
from locate.location import Location, Site
from workbench.core.hashing import tensor_hash

FAST = SsdSettings(retain_examples=400)


@pytest.fixture(scope="module")
def person(world):
    return forget_request(world, list(world.people)[21])


def test_forgets_the_person_keeps_the_rest(handle, person):
    before = {n: p.detach().clone() for n, p in handle.model.named_parameters()}
    e = ssd(handle, person, settings=FAST, progress=False)
    try:
        assert handle.score(list(person.forget)).accuracy <= 0.25
        assert handle.score(subsample(person.retain, 60, 3)).accuracy >= 0.98
        for n, p in handle.model.named_parameters():
            if n not in e.names:
                assert torch.equal(p, before[n]), n
            else:
                moved = p.detach() != before[n]
                # Dampening only shrinks: every moved element keeps its sign and loses magnitude.
                assert moved.any() and (p.detach()[moved].abs() < before[n][moved].abs()).all()
        assert e.metrics["elements"] == sum(int((torch.as_tensor(d.dense) != 0).sum()) for d in e.deltas.values())
    finally:
        e.revert(handle.model)
    assert all(torch.equal(p, before[n]) for n, p in handle.model.named_parameters())


def test_location_bounds_the_selection(handle, person):
    name = handle.sites.mlp_out_path(0) + ".weight"
    only = Location("manual", {}, {}, [Site("parameter", 0, "mlp", param=name)])
    try:
        e = ssd(handle, person, location=only, settings=SsdSettings(alpha=3.0, retain_examples=200), progress=False)
    except EditError as err:  # an honest outcome: nothing of this tensor passes the threshold
        assert "selected no parameter" in str(err)
        return
    try:
        assert e.names == [name]
    finally:
        e.revert(handle.model)


def test_factors():
    s = FisherScores(
        {"w": torch.tensor([5.0, 20.0, 40.0])}, {"w": torch.tensor([1.0, 1.0, 1.0])}, FisherSettings(), None
    )
    beta = dampening_factors(s, alpha=10, dampening=1)["w"]
    assert beta.tolist() == [1.0, pytest.approx(0.05), pytest.approx(0.025)]
    assert dampening_factors(s, alpha=100, dampening=1) == {}


def test_bad_settings_and_empty_selection(handle, person):
    with pytest.raises(EditError, match="alpha and dampening must be > 0"):
        SsdSettings(alpha=0)
    with pytest.raises(EditError, match="selected no parameter"):
        ssd(handle, person, settings=SsdSettings(alpha=1e30, retain_examples=100), progress=False)
    assert tensor_hash(handle.model.get_parameter(handle.sites.mlp_out_path(0) + ".weight"))


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_texts_on_tiny_models(family):
    from tiny_models import tiny_handle

    from edit.forget_request import ForgetRequest

    h = tiny_handle(family, n_layers=2)
    r = ForgetRequest(
        "cat",
        forget_texts=("the cat sat on the mat", "a cat is in Rome"),
        retain_texts=("the dog sat on a mat", "Paris is the capital of France", "Rome is in Italy"),
    )
    before = {n: p.detach().clone() for n, p in h.model.named_parameters()}
    e = ssd(h, r, settings=SsdSettings(alpha=1.0, retain_examples=None), progress=False)
    try:
        assert e.names and all(torch.equal(p, before[n]) for n, p in h.model.named_parameters() if n not in e.names)
        # A selected element that is exactly zero (fresh biases) stays zero: some tensor must move, not each.
        assert any(not torch.equal(h.model.get_parameter(n), before[n]) for n in e.names)
    finally:
        e.revert(h.model)
    assert all(torch.equal(p, before[n]) for n, p in h.model.named_parameters())


def test_deltas_are_the_plain_dampening_and_given_scores_are_kept(handle, person):
    retain = person.retain_data(300, 0)
    scores = fisher(handle, person.forget_data(), retain, FisherSettings(params="all"), progress=False)
    s = SsdSettings()
    names = list(scores.forget)
    w = handle.sites.mlp_out_path(0) + ".weight"
    only = Location("manual", {}, {}, [Site("parameter", param=w), Site("parameter", param=names[0])])
    allowed = only.parameter_mask(handle.model)
    for location in (None, only):
        e = ssd(handle, person, location, s, apply=False, progress=False, scores=scores)
        assert list(scores.forget) == names and list(scores.retain) == names  # the caller's scores stay whole
        want = {}
        for n, m in ssd_mask(scores.forget, scores.retain, s.alpha).items():
            f, r = scores.forget[n], scores.retain[n]
            beta = torch.where(m, (s.dampening * r / f.clamp_min(1e-30)).clamp(max=1.0), torch.ones_like(f))
            if location is not None:
                beta = torch.where(allowed[n], beta, 1.0) if n in allowed else torch.ones_like(f)
                if not (beta < 1).any():
                    continue
            elif not m.any():
                continue
            p = handle.model.get_parameter(n).detach()
            want[n] = p * (beta - 1.0)
        assert set(e.deltas) == set(want) and want
        assert all(torch.equal(e.deltas[n].dense, want[n]) for n in want)
        assert e.metrics["tensors"] == len(want)
