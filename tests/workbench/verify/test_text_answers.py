"""Readings of one model state from question-answer pairs: paraphrased questions and quantised copies."""

from workbench.core.data_files import QA, read_qa
from workbench.verify.text_answers import paraphrased, quantised_answers, read_answers

FORGET = "workbench/core/world/examples/tofu_forget05.json"


def test_the_world_model_answers_the_paraphrased_questions(handle):
    items = read_qa(FORGET)[:12]
    asked = paraphrased(items)
    assert [q.question for q in asked] == [i.paraphrased_question for i in items] and not asked[0].perturbed_answers
    r = read_answers(handle, asked)
    assert r.recall == [1.0] * 12 and r.ranked_first == []
    assert paraphrased([QA("Q?", "A.")]) == []


def test_quantised_copies_one_per_width(handle):
    items = read_qa(FORGET)[:6]
    out, notes = quantised_answers(handle, items, (8, 4, 2))
    assert list(out) == ["answers int8", "answers int4", "answers int2"] and notes == []
    assert out["answers int8"].recall == out["answers int4"].recall == [1.0] * 6
    assert sum(out["answers int2"].recall) < 6  # two bits break the model: the check can fail
    assert quantised_answers(handle, items, ()) == ({}, [])
