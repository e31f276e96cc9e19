"""CounterFact scores: what they count before and after an edit."""

from edit.counterfact import score_requests
from edit.request import world_request
from edit.rome import rome


def test_scores_move_with_the_edit(handle, world):
    person = list(world.people)[77]
    new = next(c for c in world.relation("language").candidates if c != world.fact(person, "language").object)
    rewrite, erase = world_request(world, person, "language", new), world_request(world, person, "language")
    before = score_requests(handle, [rewrite, erase])
    assert before["efficacy"] == {"prob": 0.0, "accuracy": 0.0, "n": 2}
    assert before["paraphrase"]["n"] == 6 and before["neighbourhood"]["accuracy"] == 1.0
    with rome(handle, rewrite, apply=False).applied_to(handle.model):
        after = score_requests(handle, [rewrite])
    assert after["efficacy"]["accuracy"] == 1.0 and after["paraphrase"]["prob"] >= 2 / 3
    assert after["neighbourhood"]["prob"] >= 0.9
    with rome(handle, erase, apply=False).applied_to(handle.model):
        gone = score_requests(handle, [erase])
    assert gone["efficacy"]["prob"] == 1.0  # the true object no longer comes first
