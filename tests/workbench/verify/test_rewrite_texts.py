"""Verifying a rewrite without a world: from the requests' own prompts, against the unedited model."""

import pytest

import workbench
from edit.edit import Delta, Edit
from edit.request import world_request
from edit.rome import RomeSettings, rome
from workbench.verify.report import VerifyError
from workbench.verify.rewrite_texts import RewriteTextSettings, verify_rewrite_texts

FAST = RewriteTextSettings(quantise_bits=(8,))


@pytest.fixture(scope="module")
def handle():
    return workbench.load("world", device="cpu")


def _request(h, i=0):
    p = list(h.world.people)[i]
    new = next(c for c in h.world.relation("pet").candidates if c != h.world.fact(p, "pet").object)
    return world_request(h.world, p, "pet", new)


def test_a_rome_edit_is_rewritten_and_the_model_is_left_edited(handle):
    e = rome(handle, _request(handle), settings=RomeSettings(layer=0, token="last"))
    try:
        r = verify_rewrite_texts(handle, e, FAST)
        assert r.verdict == "rewritten" and r.requests[0]["old_returns_under"] == []
        assert r.states["edited"]["counterfact"]["efficacy"]["accuracy"] == 1.0
        assert r.states["original"]["counterfact"]["efficacy"]["accuracy"] == 0.0
        assert set(r.checks) == {"paraphrases", "generation", "int8"} and r.cannot_conclude
        assert e.applied and r.to_dict()["kind"] == "rewrite requests"
        page = r.to_html()
        assert page.startswith("<!DOCTYPE html>") and "NaN" not in page and "<script src" not in page
    finally:
        e.revert(handle.model)


def test_an_edit_too_weak_to_take_is_not_rewritten(handle):
    e = rome(handle, _request(handle, 1), settings=RomeSettings(layer=0, token="last"), apply=False)
    tiny = {n: Delta(dense=d.tensor() * 1e-3) for n, d in e.deltas.items()}
    weak = Edit(e.method, e.request, tiny, e.location, e.settings)
    weak.apply(handle.model)
    try:
        r = verify_rewrite_texts(handle, weak, FAST)
        assert r.verdict == "not rewritten" and r.requests[0]["verdict"] == "not rewritten"
        assert r.checks["paraphrases"]["old_returns"] == 1.0  # the old object still wins everywhere
    finally:
        weak.revert(handle.model)


def test_an_edit_without_rewrites_is_refused(handle):
    from edit.edit_request import Forget

    e = rome(handle, _request(handle, 2), settings=RomeSettings(layer=0, token="last"), apply=False)
    forget = Edit(e.method, Forget("forget01"), e.deltas, e.location, e.settings)
    with pytest.raises(VerifyError, match="no rewrite request"):
        verify_rewrite_texts(handle, forget, FAST)
