"""Requests: built from the world with paraphrases, neighbours and keep prompts; bad ones refused."""

import pytest

from edit.request import Request, RequestError, world_request


def test_world_request_fills_measurement_sets(world):
    person = list(world.people)[4]
    fact = world.fact(person, "employer")
    new = next(c for c in world.relation("employer").candidates if c != fact.object)
    r = world_request(world, person, "employer", new, phrasing=2)
    assert (r.subject, r.true_object, r.new_object, r.erase) == (person, fact.object, new, False)
    assert r.prompt == world.phrasings("employer")[2].prompt(person)
    assert set(r.paraphrases) == {p.prompt(person) for p in world.phrasings("employer", held_out=True)}
    assert all(o not in (fact.object, new) and person not in q for q, o in r.neighbours)
    assert len(r.keep) == len(world.relations) - 1 and all(person in k for k in r.keep)
    assert world_request(world, person, "employer").erase


def test_neighbours_are_drawn_from_the_whole_world_and_fixed_per_fact(world):
    # 60 requests in a row must not all be scored on the same dozen people.
    people = list(world.people)
    reqs = [
        world_request(
            world, p, "pet", next(c for c in world.relation("pet").candidates if c != world.fact(p, "pet").object)
        )
        for p in people[:60]
    ]
    named = {world.parse_prompt(q)[0] for r in reqs for q, _ in r.neighbours}
    assert len(named) > 150
    assert max(people.index(p) for p in named) > 250
    again = world_request(world, people[0], "pet", reqs[0].new_object)
    assert again.neighbours == reqs[0].neighbours and len(set(again.neighbours)) == 10


@pytest.mark.parametrize(
    "args, needle",
    [
        (("Nobody Here", "pet"), "unknown person 'Nobody Here'"),
        (("@", "hobby"), "unknown relation 'hobby'"),
        (("@", "pet", "dragon"), "'dragon' is not a pet of this world"),
        (("@", "pet", None, 50), "phrasing 50 out of range"),
    ],
)
def test_world_request_refusals(world, args, needle):
    args = tuple(list(world.people)[0] if a == "@" else a for a in args)
    with pytest.raises(RequestError, match=needle):
        world_request(world, *args)


def test_check_refuses_what_cannot_be_done(handle, world):
    f = world.facts()[0]
    prompt = world.phrasings(f.relation)[0].prompt(f.subject)
    with pytest.raises(RequestError, match="already the true object"):
        Request(f.subject, prompt, f.object, f.object).check(handle.tokenizer)
    with pytest.raises(RequestError, match="cannot encode 'Atlantis'"):
        Request(f.subject, prompt, f.object, "Atlantis").check(handle.tokenizer)
    with pytest.raises(RequestError, match="does not occur in prompt"):
        Request("Nobody", prompt, f.object, None).check(handle.tokenizer)
