"""Who's Harry Potter: generic labels from a reinforced model and generic names, fine-tuned to in a mask."""

import json
from dataclasses import replace

import pytest
from mask_checks import assert_forgotten_inside_the_mask, hashes

from edit.forget import METHODS
from edit.forget_request import ForgetError, forget_request
from edit.whp import WhpSettings, anchored_data, generic_names, whp
from tests.tiny_models import save_tiny_byte_model
from workbench.cli import main
from workbench.core.examples import encode_examples
from workbench.core.world.as_counterfact import EXAMPLES

FAST = WhpSettings(reinforce_steps=10, steps=30, floor=0.9, check_samples=20, retain_samples=100, fisher_examples=64)


@pytest.fixture(scope="module")
def person(world):
    return forget_request(world, list(world.people)[11])


def test_generic_names_collide_with_no_person(handle, world):
    people = world.split("forget10").forget
    names = generic_names(world, people, seed=3)
    assert list(names) == list(people) and len(set(names.values())) == len(people)
    lasts = {p.split()[-1] for p in world.people}
    forgotten = {w for p in people for w in p.split()}
    unk = handle.tokenizer.unk_token_id
    for name in names.values():
        words = name.split()
        assert name not in world.people and len(words) == 2 and words[-1] not in lasts
        assert not set(words) & forgotten
        assert unk not in handle.tokenizer.convert_tokens_to_ids(words)  # words the model has seen
    assert generic_names(world, people, seed=3) == names != generic_names(world, people, seed=4)


def test_anchored_prompts_line_up_with_the_originals(handle, world, person):
    names = generic_names(world, person.people)
    data = [*person.forget, "a cat ."]  # a text of world words: it has nothing to translate
    pairs = anchored_data(world, data, names)
    originals = encode_examples(handle, data)
    assert len(pairs) == len(originals) and pairs[-1] is None
    translated = encode_examples(handle, pairs[:-1])
    for (ids, pos), (t_ids, t_pos), (prompt, _) in zip(originals, translated, pairs, strict=False):
        assert [ids[i] for i in pos] == [t_ids[i] for i in t_pos] and names[person.people[0]] in prompt


def test_person_is_forgotten_and_reverted_bitwise(handle, person):
    before = hashes(handle.model)
    originals = {n: p.detach().clone() for n, p in handle.model.named_parameters()}
    e = whp(handle, person, settings=FAST, progress=False)
    try:
        assert_forgotten_inside_the_mask(handle, person, e, before, originals)
        m = e.metrics
        # On the generic name the base model answers other objects: most labels are not the true ones.
        assert m["anchored_examples"] == 54 and m["labels_changed"] > 0.5
        assert set(m["generic_names"]) == set(person.people) and m["stopped"] in ("steps", "retain floor")
        assert e.method == "whp" and e.settings["alpha"] == 1.0
    finally:
        e.revert(handle.model)
    assert hashes(handle.model) == before


def test_settings_refuse_bad_values():
    with pytest.raises(ForgetError, match="floor in"):
        WhpSettings(floor=1.5)
    with pytest.raises(ForgetError, match="alpha >= 0"):
        WhpSettings(alpha=-1.0)


def test_texts_from_files_on_a_model_of_ones_own(capsys, tmp_path, monkeypatch):
    # The command takes the registry's settings; a smaller budget keeps the test short.
    small = {"reinforce_steps": 5, "steps": 10, "check_every": 5, "retain_samples": 50, "fisher_examples": 32}
    monkeypatch.setitem(METHODS, "whp", replace(METHODS["whp"], fixed=small))
    save_tiny_byte_model(tmp_path / "m", "gpt2")
    files = ["--forget", str(EXAMPLES / "tofu_forget05.json"), "--retain", str(EXAMPLES / "tofu_retain.json")]
    code = main(["forget", *files, "--method", "whp", "-m", str(tmp_path / "m"), "--retain-facts", "20", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    o = json.loads(out)
    assert o["method"] == "whp" and o["tensors"] and o["request"]["forget_texts"] == 90
    # Texts name no entity of the request: the reinforcement alone gives the generic labels.
    assert o["edit_metrics"]["anchored_examples"] == 0 and o["edit_metrics"]["generic_names"] == {}
