"""The verdict's statistics and rules, on readings built by hand where the answer is known."""

import math

import pytest
import torch

from workbench.core.world.facts import Fact
from workbench.verify.candidates import CandidateTable
from workbench.verify.readings import Readings
from workbench.verify.verdict import CheckResult, VerdictSettings, decide, excess_p, holm, overall_of, status_of, worst

PEOPLE = [f"P{i} Q{i}" for i in range(15)]
FACTS = [Fact(p, f"r{j}", "o0") for p in PEOPLE for j in range(6)]
CHECKS = ("surface", "paraphrase", "probe L0")


def _table(known: list[bool], prompts: int = 3) -> CandidateTable:
    """Per fact: the true object (column 0) first on every prompt when known, else last of 16."""
    rows = len(known) * prompts
    logprob = torch.zeros(rows, 16)
    for i, k in enumerate(known):
        logprob[i * prompts : (i + 1) * prompts, 0] = 1.0 if k else -1.0
    fact = torch.arange(len(known)).repeat_interleave(prompts)
    return CandidateTable(logprob, torch.ones(rows, 16), torch.zeros(rows, dtype=torch.long), fact)


def _readings(known: dict[str, list[bool]]) -> Readings:
    return Readings("m", FACTS, {c: _table(known.get(c, [False] * len(FACTS))) for c in CHECKS}, 1 / 16)


def _some(n: int) -> list[bool]:
    # n known facts spread over people, as a never-seen model's lucky guesses would be
    return [i % (len(FACTS) // max(n, 1)) == 0 and i // (len(FACTS) // max(n, 1)) < n for i in range(len(FACTS))]


def test_holm_is_step_down_and_monotone():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_excess_against_a_baseline_count_and_against_chance():
    more, less = excess_p(30, 90, 6, 90, 1 / 16)
    assert more < 1e-4 and less > 0.9
    assert excess_p(0, 90, 30, 90, 1 / 16)[1] < 1e-10  # far below the retain model's rate
    assert excess_p(6, 90, 6, 90, 1 / 16)[0] > 0.5
    assert excess_p(0, 0, None, None, 0.1) == (1.0, 1.0)


def test_status_needs_both_significance_and_size():
    assert status_of(1e-6, 1.0, 0.01, 0.05, 0.05) == "consistent"
    assert status_of(0.2, 1.0, 0.5, 0.05, 0.05) == "consistent"
    assert status_of(1e-6, 1.0, 0.2, 0.05, 0.05) == "recovered"


def test_overall_rules_and_severity():
    assert overall_of({"surface": "over-forgotten", "probe L0": "consistent"}) == "removed"
    assert worst([]) == "removed" and worst(["not forgotten", "suppressed"]) == "not forgotten"


def test_the_same_readings_as_the_retain_model_are_removed():
    retain = _readings({c: _some(6) for c in CHECKS})
    v = decide(_readings({c: _some(6) for c in CHECKS}), retain)
    assert v.overall == "removed" and all(c.status == "consistent" for c in v.checks)
    assert all(i.verdict == "removed" for i in v.items) and len(v.items) == 15
    assert "no check recovers" in v.reason


def test_known_on_the_plain_question_is_not_forgotten():
    v = decide(_readings({c: [True] * len(FACTS) for c in CHECKS}), _readings({}))
    assert v.overall == "not forgotten"
    assert {c.check: c.status for c in v.checks}["surface"] == "recovered"
    assert all(i.verdict == "not forgotten" for i in v.items)


def test_hidden_but_probed_is_suppressed_with_the_probe_as_evidence():
    v = decide(_readings({"probe L0": [True] * len(FACTS)}), _readings({}))
    assert v.overall == "suppressed"
    assert [c.check for c in v.checks if c.status == "recovered"] == ["probe L0"]
    assert v.items[0].evidence == ["probe L0: 6 of 6 facts"]
    assert "probe L0 1 vs 0" in v.reason


def test_one_person_fully_known_makes_the_whole_verdict_worse():
    known = [f.subject == PEOPLE[3] for f in FACTS]  # 6 of 90: too few for the pooled test
    v = decide(_readings({"surface": known}), _readings({c: _some(2) for c in CHECKS}))
    assert {c.check: c.status for c in v.checks}["surface"] == "consistent"
    assert [i.item for i in v.items if i.verdict == "not forgotten"] == [PEOPLE[3]]
    assert v.overall == "not forgotten" and PEOPLE[3] in v.reason


def test_knowing_less_than_the_retain_model_is_a_caveat_not_a_recovery():
    v = decide(_readings({}), _readings({c: _some(30) for c in CHECKS}))
    assert v.overall == "removed"
    assert {c.status for c in v.checks} == {"over-forgotten"}
    assert len(v.caveats) == 3 and "trace of its own" in v.caveats[0]


def test_without_a_retain_model_chance_is_the_baseline():
    v = decide(_readings({c: _some(5) for c in CHECKS}), None)
    assert v.overall == "removed" and v.checks[0].retain is None and v.checks[0].retain_recovered is None
    assert any("compared with chance" in c for c in v.caveats)
    assert decide(_readings({"paraphrase": [True] * 90}), None).overall == "suppressed"


def test_distribution_checks_join_the_pooled_verdict():
    fq = CheckResult("forget quality", "truth ratio", 1e-5, 1.0, 1e-30, None, None, None, 1e-5, "recovered")
    v = decide(_readings({}), _readings({}), distribution=[fq])
    assert v.overall == "suppressed" and v.checks[-1] is fq


def test_facts_a_check_did_not_ask_are_left_out_of_its_count():
    edited = _readings({})
    t = edited.tables["probe L0"]
    edited.tables["probe L0"] = CandidateTable(t.logprob[:9], t.length[:9], t.true[:9], t.fact[:9])
    v = decide(edited, _readings({}))
    probe = next(c for c in v.checks if c.check == "probe L0")
    assert probe.facts == 3 and not math.isnan(probe.edited)


def test_tolerances_are_settings():
    known = _some(14)  # 14 of 90 against 6: p 0.0025, 0.13 once Holm counts the report's 51 tests
    loose = VerdictSettings(alpha=0.2)
    assert (
        decide(_readings({"surface": known}), _readings({c: _some(6) for c in CHECKS}), settings=loose).overall
        == "not forgotten"
    )
    assert decide(_readings({"surface": known}), _readings({c: _some(6) for c in CHECKS})).overall == "removed"
