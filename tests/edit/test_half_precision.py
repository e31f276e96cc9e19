"""The rank-one editors on the world model loaded in half precision, as on a GPU."""

import pytest
import torch

import workbench
from edit.counterfact import score_requests
from edit.memit import MemitSettings, memit
from edit.request import random_rewrites
from edit.rome import rome
from workbench.core.hashing import tensor_hash


@pytest.fixture(scope="module")
def half():
    return workbench.load("world", device="cpu", dtype="bfloat16")


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["rome", "memit"])
def test_edits_take_touch_only_their_tensors_and_revert_bitwise(half, method):
    reqs = random_rewrites(half.world, 1 if method == "rome" else 10, seed=3)
    before = _hashes(half.model)
    e = (
        rome(half, reqs[0])
        if method == "rome"
        else memit(half, reqs, settings=MemitSettings(layers=(0,), token="last"))
    )
    assert all(half.model.get_parameter(n).dtype == torch.bfloat16 for n in e.names)
    after = _hashes(half.model)
    assert {n for n in before if after[n] != before[n]} == set(e.names)
    s = score_requests(half, reqs)
    assert s["efficacy"]["prob"] == 1.0 and s["neighbourhood"]["prob"] >= 0.9
    e.revert(half.model)
    assert _hashes(half.model) == before
