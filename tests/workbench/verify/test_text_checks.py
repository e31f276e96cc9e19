"""The verdict of a text verification from hand-made readings: which check makes it suppressed."""

from workbench.core.data_files import QA
from workbench.verify.text_answers import AnswerReadings
from workbench.verify.text_checks import TextState, decide_texts, measured_rows, undecided
from workbench.verify.text_lens import LensReadings
from workbench.verify.text_relearn import TextRelearned

N = 40
ITEMS = [QA(f"Q{i}?", f"A{i}.") for i in range(N)]


def readings(recall: float, n: int = N) -> AnswerReadings:
    return AnswerReadings([recall] * n, [recall] * n, ["x"] * n, [], [])


def state(answered=0.0, lens=None, relearned=0.0, quantised=0.0, paraphrased=0.0) -> TextState:
    lens_ranks = LensReadings((0, 1), [[0 if lens else 9, 9]] * N, [9] * N, 1) if lens is not None else None
    half = list(range(0, N, 2)), list(range(1, N, 2))
    attacked = TextRelearned(*half, readings(relearned, N // 2), [0.9] * (N // 2), 0.1)
    return TextState(
        "m",
        readings(answered),
        readings(1.0),
        0.5,
        0.5,
        quantised={"answers int8": readings(quantised), "answers int4": readings(quantised)},
        paraphrased=readings(paraphrased),
        lens=lens_ranks,
        relearned=attacked,
    )


def test_relearning_alone_makes_it_suppressed():
    states = {"edited": state(relearned=1.0), "reference": state()}
    verdict, reason, checks, *_ = decide_texts(states, ITEMS, 0.5)
    status = {c.check: c.status for c in checks}
    assert verdict == "suppressed" and status["relearn"] == "recovered" and "relearn 1 vs 0" in reason
    assert status["answers"] == status["answers int4"] == status["paraphrased questions"] == "consistent"
    relearn = next(c for c in checks if c.check == "relearn")
    assert (relearn.group, relearn.facts, relearn.recovered, relearn.retain_recovered) == ("relearning", 20, 20, 0)


def test_the_lens_alone_makes_it_suppressed_and_the_answers_count_as_hidden():
    states = {"edited": state(lens=True), "reference": state(lens=False)}
    verdict, _, checks, *_ = decide_texts(states, ITEMS, 0.5)
    assert verdict == "suppressed" and {c.check for c in checks if c.status == "recovered"} == {"logit lens"}
    summary = {k: v.summary(0.5) for k, v in states.items()}
    assert (summary["edited"]["lens_hidden"], summary["reference"]["lens_hidden"]) == (1.0, 0.0)
    row = {r["check"]: r for r in measured_rows(summary)}["answers hidden (logit lens)"]
    assert (row["edited"], row["reference"], row["group"]) == (1.0, 0.0, "hidden states")


def test_each_bit_width_is_a_check_and_a_figure():
    states = {"edited": state(quantised=1.0), "reference": state()}
    verdict, _, checks, *_ = decide_texts(states, ITEMS, 0.5)
    assert verdict == "suppressed"
    assert [c.check for c in checks if c.group == "quantisation"] == ["answers int8", "answers int4"]
    s = states["edited"].summary(0.5)
    assert s["int8_rouge_recall"] == s["int4_rouge_recall"] == 1.0 and "quantised_rouge_recall" not in s


def test_the_plain_question_still_decides_not_forgotten():
    states = {"edited": state(answered=1.0, paraphrased=1.0, relearned=1.0), "reference": state()}
    assert decide_texts(states, ITEMS, 0.5)[0] == "not forgotten"


def test_without_a_reference_the_new_checks_are_shown_untested():
    _, _, checks, _, _ = undecided({"edited": state(lens=True, relearned=1.0)}, ITEMS, 0.5)
    shown = {c.check: (c.edited, c.status) for c in checks}
    assert shown["relearn"] == shown["logit lens"] == (1.0, "not tested")
    assert shown["paraphrased questions"] == (0.0, "not tested")
