"""Paraphrase and in-context attacks: the default model answers every way, a retain model none."""

import pytest

import workbench
from workbench.verify import (
    ATTACKS,
    InContextError,
    InContextRecovery,
    InContextSettings,
    attack_prompts,
    best_attack,
    in_context_attacks,
)


@pytest.fixture(scope="module")
def forget01(world):
    return world.facts(world.split("forget01").forget)


def test_prompts_are_built_as_described(world, forget01):
    f = forget01[0]
    ask = world.phrasings(f.relation)[0].prompt(f.subject)
    assert attack_prompts(world, f, "plain") == [ask]
    para = attack_prompts(world, f, "paraphrase")
    assert para == [ph.prompt(f.subject) for ph in world.phrasings(f.relation, held_out=True)]
    (first,) = attack_prompts(world, f, "neighbour_first", exclude=[g.subject for g in forget01])
    stated, asked = first.rsplit(" . ", 1)
    assert asked == ask and f.subject not in stated and f.object not in stated
    (shots,) = attack_prompts(world, f, "few_shot", InContextSettings(shots=2))
    told = shots.split(" . ")
    assert len(told) == 3 and all(s.startswith(f.subject) for s in told) and told[-1] == ask
    assert attack_prompts(world, f, "few_shot") == attack_prompts(world, f, "few_shot")  # seeded


def test_default_model_answers_under_every_attack(handle, world):
    facts = world.facts(list(world.people)[:10])
    r = in_context_attacks(handle, facts)
    assert tuple(r.accuracy) == ATTACKS and r.facts == 60
    assert all(a > 0.95 for a in r.accuracy.values())  # measured 1.0 everywhere
    assert all(p > 0.9 for p in r.mean_prob.values())
    assert r.prompts == {"plain": 60, "paraphrase": 180, "neighbour_first": 60, "few_shot": 60}
    assert best_attack(r)[1] == max(r.accuracy.values())
    assert r.to_dict()["accuracy"] == r.accuracy


def test_retain_model_stays_near_the_prior(forget01):
    retain = workbench.load("world:retain-forget01", device="cpu")
    r = in_context_attacks(retain, forget01)
    assert 0.05 < r.prior < 0.1
    # measured: accuracy 0.0, 0.06, 0.0, 0.0; P(true) 0.01, 0.06, 0.04, 0.03
    assert best_attack(r)[1] < 0.3 and all(p < 0.2 for p in r.mean_prob.values())


def test_best_attack_picks_the_first_maximum():
    r = InContextRecovery({"plain": 0.2, "paraphrase": 0.5, "few_shot": 0.5}, {}, {}, 0.1, 3)
    assert best_attack(r) == ("paraphrase", 0.5)


@pytest.mark.parametrize(
    "settings, match",
    [
        (InContextSettings(attacks=("jailbreak",)), "unknown attack 'jailbreak'"),
        (InContextSettings(attacks=()), "unknown attack"),
        (InContextSettings(phrasing=9), "phrasing must be between 0 and 8"),
        (InContextSettings(shots=0), "shots must be between 1 and 5"),
        (InContextSettings(shots=6), "shots"),
        (InContextSettings(batch_size=0), "batch_size"),
    ],
)
def test_bad_settings(handle, forget01, settings, match):
    with pytest.raises(InContextError, match=match) as err:
        in_context_attacks(handle, forget01, settings)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)


def test_no_facts(handle):
    with pytest.raises(InContextError, match="no facts"):
        in_context_attacks(handle, [])
    with pytest.raises(InContextError, match="no attacks"):
        best_attack(InContextRecovery({}, {}, {}, 0.1, 0))
