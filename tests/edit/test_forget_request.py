"""Forget requests: splits, people and facts resolve; empty, overlapping and unknown requests are refused."""

import pytest

from edit.forget_figures import FigureSettings, forget_figures
from edit.forget_request import ForgetError, ForgetRequest, forget_request


def test_split_person_and_facts(world):
    split = forget_request(world, "forget05")
    assert len(split.forget) == 90 and len(split.retain) == 1710 and len(split.people) == 15
    assert not set(split.forget) & set(split.retain)
    person = list(world.people)[3]
    r = forget_request(world, person)
    assert r.name == person and {f.subject for f in r.forget} == {person} and len(r.retain) == 1794
    two = world.facts([person])[:2]
    r = forget_request(world, two)
    assert r.forget == tuple(two) and set(world.facts([person])[2:]) <= set(r.retain)
    many = forget_request(world, list(world.people)[:2])
    assert len(many.forget) == 12 and many.people == list(world.people)[:2]


def test_neighbours_share_an_object_and_are_kept(world):
    r = forget_request(world, "forget01")
    shared = {(f.relation, f.object) for f in r.forget}
    n = r.neighbours(world)
    assert n and all((f.relation, f.object) in shared and f.subject not in r.people for f in n)
    assert set(n) <= set(r.retain)


@pytest.mark.parametrize(
    "what, needle",
    [
        ("Nobody Here", "unknown person or split 'Nobody Here'"),
        ("forget09", "unknown person or split 'forget09'"),
        ([], "nothing to forget"),
        (["Nobody Here"], "unknown person 'Nobody Here'"),
    ],
)
def test_refusals(world, what, needle):
    with pytest.raises(ForgetError, match=needle):
        forget_request(world, what)


def test_overlap_and_empty_sets_refused(world):
    person = list(world.people)[0]
    with pytest.raises(ForgetError, match="overlaps the retain set"):
        forget_request(world, person, retain=world.facts([person, list(world.people)[1]]))
    with pytest.raises(ForgetError, match="forget set is empty"):
        ForgetRequest("x", retain=tuple(world.facts()[:3]))
    with pytest.raises(ForgetError, match="no retain set"):
        ForgetRequest("x", forget=tuple(world.facts()[:3]))
    with pytest.raises(ForgetError, match="overlaps the retain set \\(1 texts"):
        ForgetRequest("t", forget_texts=("a b c",), retain_texts=("a b c", "d e"))


def test_figures_of_the_retain_model_show_the_prior(world):
    import workbench

    r = forget_request(world, "forget05")
    f = forget_figures(
        workbench.load("world:retain-forget05"),
        r,
        FigureSettings(retain_facts=60, neighbour_facts=60, heldout_loss=False),
    )
    # It never saw the forgotten people: about the prior (1/12 to 1/24) on them, all of the rest.
    assert f["forget"] < 0.15 and f["forget_heldout"] < 0.15 and f["retain"] == 1.0 and f["neighbours"] == 1.0
    assert "heldout_loss" not in f
