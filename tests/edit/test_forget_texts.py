"""forget() on a request of texts alone: a user's own model and data, with no fact world."""

import pytest

import workbench
from edit.forget import METHODS, forget
from edit.forget_figures import FigureSettings
from edit.forget_request import ForgetError, ForgetRequest
from tests.tiny_models import save_tiny_byte_model
from workbench.core.data_files import read_texts
from workbench.core.world.as_tofu import EXAMPLES

SMALL = FigureSettings(retain_facts=20, neighbour_facts=20, heldout_loss=False)
# Few steps, few samples: these check that each method runs on texts, not how well it forgets.
FAST = {
    "rmu": {"steps": 3, "batch_size": 8},
    "ga": {"steps": 3, "batch_size": 8, "check_every": 3, "check_samples": 8, "fisher_examples": 16},
    "gradiff": {"steps": 3, "batch_size": 8, "check_every": 3, "check_samples": 8, "fisher_examples": 16},
    "npo": {"steps": 3, "batch_size": 8, "check_every": 3, "check_samples": 8, "fisher_examples": 16},
    "kl": {"steps": 3, "batch_size": 8, "check_every": 3, "check_samples": 8, "fisher_examples": 16},
    "ssd": {"retain_examples": 16},
    "task-vector": {"steps": 3, "batch_size": 8, "check_samples": 8, "fisher_examples": 16},
    "whp": {
        "reinforce_steps": 3,
        "steps": 3,
        "batch_size": 8,
        "check_every": 3,
        "check_samples": 8,
        "fisher_examples": 16,
    },
}
# Methods that need more than texts, and why: a MEMIT erase rewrites a (subject, relation) key;
# SAE ablation runs on texts once the model has an SAE (tests/workbench/cli/test_features_user_model.py),
# and this model has none. Both refuse in one line.
NEEDS_FACTS = {"ablate": "no SAE at blocks.0.hook_mlp_out", "erase": "needs world facts"}
# SISA retrains the shards of an ensemble trained for it; any other model is refused.
NEEDS_FACTS |= {"sisa": "forgets in a SISA ensemble"}

# Preference unlearning (dpo, idk) needs a question and an answer to tell apart; texts have neither.
NEEDS_FACTS |= {"dpo": "needs questions with answers", "idk": "needs questions with answers"}


@pytest.fixture(scope="module")
def own_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("own-model")
    save_tiny_byte_model(path, "gpt2")
    return workbench.load(str(path), device="cpu")


@pytest.fixture(scope="module")
def texts_request():
    return ForgetRequest(
        "forget05 texts",
        forget_texts=tuple(read_texts(EXAMPLES / "forget05_texts.jsonl")),
        retain_texts=tuple(read_texts(EXAMPLES / "retain_texts.jsonl")),
    )


def test_every_method_is_either_run_on_texts_or_refuses():
    assert set(FAST) | set(NEEDS_FACTS) == set(METHODS) and not set(FAST) & set(NEEDS_FACTS)


@pytest.mark.parametrize("name", sorted(FAST))
def test_methods_run_on_texts_without_a_world(own_model, name):
    assert own_model.world is None
    request = ForgetRequest(
        "my data",
        forget_texts=("The vault code is 7412 .", "Alice lives at 12 Elm Street ."),
        retain_texts=("The sky is blue on a clear day .", "Water boils at 100 degrees .", "Paris is in France ."),
    )
    before = {n: p.detach().clone() for n, p in own_model.model.named_parameters()}
    res = forget(own_model, request, name, figures=SMALL, progress=False, **FAST[name])
    try:
        assert set(res.before) == {"forget_text_loss", "retain_text_loss"} == set(res.after)
        assert res.reference is None and res.edit.names
    finally:
        res.edit.revert(own_model.model)
    assert all(p.equal(before[n]) for n, p in own_model.model.named_parameters())


@pytest.mark.parametrize("name", sorted(NEEDS_FACTS))
def test_methods_that_need_facts_refuse_texts_in_one_line(own_model, name):
    request = ForgetRequest("my data", forget_texts=("a secret .",), retain_texts=("a kept text .",))
    with pytest.raises(ValueError, match=NEEDS_FACTS[name]) as e:
        forget(own_model, request, name, figures=SMALL, progress=False)
    assert "\n" not in str(e.value)


def test_a_split_name_without_a_world_is_refused(own_model):
    with pytest.raises(ForgetError, match="has no fact world: pass a ForgetRequest of texts"):
        forget(own_model, "forget05", "ga", progress=False)


def test_shipped_tofu_files_drive_a_model_of_ones_own(own_model):
    request = ForgetRequest(
        "tofu forget05",
        forget_texts=tuple(read_texts(EXAMPLES / "tofu_forget05.json")),
        retain_texts=tuple(read_texts(EXAMPLES / "tofu_retain.json")),
    )
    res = forget(own_model, request, "ga", figures=SMALL, progress=False, **FAST["ga"])
    try:
        assert res.after["forget_text_loss"] > res.before["forget_text_loss"]
    finally:
        res.edit.revert(own_model.model)


@pytest.mark.slow
def test_gradient_ascent_on_shipped_forget05_texts_of_the_world_model(handle, texts_request):
    settings = {"steps": 5, "batch_size": 16, "check_every": 5, "check_samples": 16, "fisher_examples": 16}
    res = forget(handle, texts_request, "ga", figures=SMALL, reference=False, progress=False, **settings)
    try:
        forget_rise = res.after["forget_text_loss"] - res.before["forget_text_loss"]
        retain_move = abs(res.after["retain_text_loss"] - res.before["retain_text_loss"])
        assert forget_rise > 0.05 and retain_move < forget_rise / 10, (res.before, res.after)
    finally:
        res.edit.revert(handle.model)
