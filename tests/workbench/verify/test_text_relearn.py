"""The relearning attack on question-answer pairs, on the world model and the model trained without forget05."""

import pytest
import torch

import workbench
from workbench.core.data_files import read_qa
from workbench.verify.text_answers import answer_probability
from workbench.verify.text_relearn import TextRelearnSettings, relearn_split, relearn_texts

FORGET = "workbench/core/world/examples/tofu_forget05.json"


@pytest.fixture(scope="module")
def items():
    return read_qa(FORGET)[:24]


def test_the_split_is_seeded_and_covers_the_items():
    trained, asked = relearn_split(9, 0.5, 3)
    assert sorted(trained + asked) == list(range(9)) and len(trained) == 4
    assert (trained, asked) == relearn_split(9, 0.5, 3) and trained != relearn_split(9, 0.5, 4)[0]
    assert relearn_split(2, 0.99, 0)[1] and relearn_split(2, 0.01, 0)[0]  # one of each, whatever the fraction
    with pytest.raises(ValueError, match="at least two"):
        relearn_split(1, 0.5, 0)


def test_the_full_model_keeps_the_unseen_half_and_is_not_changed(handle, items):
    before = {k: v.clone() for k, v in handle.model.state_dict().items()}
    r = relearn_texts(handle, items, TextRelearnSettings(steps=5), seed=1)
    assert r.asked == relearn_split(len(items), 0.5, 1)[1] and len(r.readings.recall) == 12
    assert r.readings.recall == [1.0] * 12 and min(r.readings.probability) > 0.9
    assert min(r.trained_probability) > 0.9 and r.readings.truth_ratios == []  # no ranking on the attacked copy
    assert all(torch.equal(v, handle.model.state_dict()[k]) for k, v in before.items())


def test_the_reference_learns_the_trained_half_but_not_the_rest(items):
    ref = workbench.load("world:retain-forget05", device="cpu")
    r = relearn_texts(ref, items)
    p_before = answer_probability(ref, [items[i] for i in r.trained])
    assert sum(r.trained_probability) / 12 > 2 * float(p_before.mean())  # the attack takes
    assert sum(x >= 0.5 for x in r.readings.recall) <= 3  # the other half stays at the reference's guesses


def test_the_attack_is_skipped_when_off_or_too_few(handle, items):
    assert relearn_texts(handle, items, TextRelearnSettings(steps=0)) is None
    assert relearn_texts(handle, items, TextRelearnSettings(steps=None)) is None
    assert relearn_texts(handle, items[:1]) is None
