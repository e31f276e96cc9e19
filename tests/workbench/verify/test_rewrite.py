"""Rewrite checks: requests back from an Edit, greedy answers, and a late-layer rewrite that only half took."""

import pytest
import torch

from edit.edit_request import Forget
from edit.memit import MemitSettings, memit
from edit.request import world_request
from edit.rome import RomeSettings, rome
from workbench.verify.probe import ProbeSettings
from workbench.verify.readings import ReadSettings, object_columns, read
from workbench.verify.rewrite import (
    efficacy,
    generation,
    greedy_continuations,
    old_mass,
    overall_rewrite,
    request_verdicts,
    requests_of,
)


@pytest.fixture(scope="module")
def request_(world):
    p = list(world.people)[5]
    new = next(c for c in world.relation("pet").candidates if c != world.fact(p, "pet").object)
    return world_request(world, p, "pet", new)


def test_requests_come_back_from_rome_and_memit_edits(handle, world, request_):
    e = rome(handle, request_, settings=RomeSettings(layer=0, token="last"), apply=False)
    assert requests_of(e.request) == [request_]
    other = world_request(world, list(world.people)[6], "pet", request_.new_object)
    m = memit(handle, [request_, other], settings=MemitSettings(layers=(0,), token="last"), apply=False, progress=False)
    assert requests_of(m.request) == [request_, other]
    assert requests_of(Forget("forget01", facts=(("a", "b"),))) is None


def test_greedy_answers_follow_the_edit(handle, request_):
    before = generation(handle, [request_])
    assert (before.new, before.old, before.prompts) == (0.0, 1.0, 4)
    assert old_mass(handle, [request_]) > 0.9 and efficacy(handle, [request_]) == [False]
    with rome(handle, request_, settings=RomeSettings(layer=0, token="last"), apply=False).applied_to(handle.model):
        after = generation(handle, [request_])
        assert after.new == 1.0 and after.old == 0.0
        assert after.examples[0] == (request_.prompt, request_.new_object)
        assert old_mass(handle, [request_]) < 0.01 and efficacy(handle, [request_]) == [True]
    # Left padding: a short and a long prompt decode the same as each alone.
    long = "According to the registry , " + request_.prompt
    both = greedy_continuations(handle, [request_.prompt, long], 2)
    assert both == greedy_continuations(handle, [request_.prompt], 2) + greedy_continuations(handle, [long], 2)


def test_a_last_layer_rewrite_leaves_the_old_object_in_earlier_states(handle, world, request_):
    fact = [world.fact(request_.subject, "pet")]
    retain = [f for f in world.facts() if f.subject != request_.subject]
    quick = ReadSettings(probe=ProbeSettings(train_people=60), bits=(8,))
    new = object_columns(world, fact, [request_.new_object])
    for layer, verdict in ((0, "rewritten"), (3, "partly rewritten")):
        e = rome(handle, request_, settings=RomeSettings(layer=layer, token="last"), apply=False)
        with e.applied_to(handle.model):
            r = read(handle, fact, retain, quick, unseen={request_.subject: ["pet"]})
            rows, checks = request_verdicts([request_], r, new, efficacy(handle, [request_]))
        assert rows[0]["verdict"] == verdict, (layer, rows)
        assert checks["surface"]["new_first"] == 1.0 and checks["surface"]["old_first"] == 0.0
    # At layer 3 the states before the edited block still carry the old object.
    assert {"lens L0", "lens L1", "lens L2"} <= set(rows[0]["old_returns_under"])
    assert overall_rewrite(rows) == (
        "partly rewritten",
        "0 of 1 requests rewritten, 1 partly (the old object returns under some check), 0 not rewritten",
    )
    assert torch.isfinite(torch.tensor(checks["lens L0"]["old_mean_rank"]))
