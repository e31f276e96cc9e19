"""The MEMIT erase baseline: every forgotten fact erased in one update of the located projections."""

import pytest
import torch

from edit.edit import EditError
from edit.forget_erase import EraseSettings, memit_erase
from edit.forget_request import ForgetRequest, forget_request, subsample


def test_erases_a_person(handle, world):
    r = forget_request(world, list(world.people)[30])
    before = {n: p.detach().clone() for n, p in handle.model.named_parameters()}
    e = memit_erase(handle, r, settings=EraseSettings(layers=(0,)))
    try:
        assert e.names == [handle.sites.mlp_out_path(0) + ".weight"] and e.metrics["erased_facts"] == 6
        assert handle.score(list(r.forget)).accuracy <= 0.3
        assert handle.score(subsample(r.retain, 60, 2)).accuracy >= 0.95
        assert all(torch.equal(p, before[n]) for n, p in handle.model.named_parameters() if n not in e.names)
    finally:
        e.revert(handle.model)
    assert all(torch.equal(p, before[n]) for n, p in handle.model.named_parameters())


def test_texts_are_refused(handle):
    with pytest.raises(EditError, match="needs world facts"):
        memit_erase(handle, ForgetRequest("t", forget_texts=("a b",), retain_texts=("c d",)))
