"""Every check read from one model state: names, shapes, and the answers known in advance."""

import pytest
import torch

import workbench
from workbench.verify.probe import ProbeSettings
from workbench.verify.readings import ReadSettings, group_of, read
from workbench.verify.suppression import suppress_output

QUICK = ReadSettings(probe=ProbeSettings(train_people=60))


@pytest.fixture(scope="module")
def people(world):
    return list(world.split("forget01").forget)


@pytest.fixture(scope="module")
def original(handle, world, people):
    return read(handle, world.facts(people), [f for f in world.facts() if f.subject not in people], QUICK)


def test_every_check_is_read_and_grouped(original, handle):
    assert list(original.tables) == [
        "surface",
        "paraphrase",
        "neighbour_first",
        "few_shot",
        "lens L0",
        "lens L1",
        "lens L2",
        "probe L0",
        "probe L1",
        "probe L2",
        "probe L3",
        "relearn",
        "int8",
        "int4",
    ]
    assert {group_of(c) for c in original.tables} == {
        "surface",
        "paraphrase and in-context",
        "hidden states",
        "relearning",
        "quantisation",
    }
    assert original.tables["surface"].logprob.shape[0] == 18 * 9 and original.prior == pytest.approx(1 / 16, abs=0.02)


def test_the_original_model_knows_every_fact_under_every_output_check(original):
    for check in ("surface", "paraphrase", "neighbour_first", "few_shot", "relearn", "int8", "int4", "probe L3"):
        assert original.accuracy(check) == 1.0, check
    # Relearning trains on three of each person's relations and asks the other three.
    assert int(torch.isnan(original.first("relearn")).sum()) == 9


def test_a_model_that_never_saw_the_people_is_near_chance(world, people):
    retain = workbench.load("world:retain-forget01", device="cpu")
    r = read(retain, world.facts(people), [f for f in world.facts() if f.subject not in people], QUICK)
    assert all(r.accuracy(c) < 0.3 for c in r.tables), {c: r.accuracy(c) for c in r.tables}


def test_hidden_states_still_hold_what_an_output_suppression_hides(handle, world, people):
    facts = world.facts(people)
    with suppress_output(handle, facts):
        r = read(handle, facts, [f for f in world.facts() if f.subject not in people], QUICK)
    assert r.accuracy("surface") < 0.1 and r.accuracy("int4") < 0.1  # hooks survive the quantised copy
    assert r.accuracy("probe L2") > 0.8 and r.accuracy("lens L2") > 0.6


def test_unseen_relations_are_what_relearning_asks(handle, world, people):
    fact = world.facts(people[:1], ["pet"])
    r = read(handle, fact, [f for f in world.facts() if f.subject not in people], QUICK, unseen={people[0]: ["pet"]})
    assert r.first("relearn").tolist() == [1.0]


def test_errors_are_one_line(handle, world):
    from tiny_models import tiny_handle

    with pytest.raises(ValueError, match="no facts"):
        read(handle, [], world.facts())
    with pytest.raises(ValueError, match="no fact world"):
        read(tiny_handle("gpt2"), world.facts()[:1], world.facts()[1:])
