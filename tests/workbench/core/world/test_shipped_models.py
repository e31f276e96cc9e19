"""Every shipped world model loads offline with plain transformers and meets its bars."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.core.metrics import score_facts
from workbench.core.world.facts import make_world
from workbench.core.world.registry import SHIPPED, load_world, resolve_world_model
from workbench.core.world.train import TrainSettings, train

FULL = ["gpt2", "llama"]
RETAIN = [n for n in SHIPPED if n.startswith("retain")]


@pytest.fixture(scope="module")
def world():
    return make_world()


def _load(name):
    path = resolve_world_model(f"world:{name}")
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), path


@pytest.mark.parametrize("name", list(SHIPPED))
def test_loads_offline_with_plain_transformers(name, world):
    model, tok, path = _load(name)
    assert list(path.glob("*.safetensors")) and not list(path.glob("*.bin"))
    assert load_world(path).to_json() == world.to_json()
    report = json.loads((path / "training_report.json").read_text())
    expected = TrainSettings(**SHIPPED[name])
    assert report["settings"]["arch"] == expected.arch == model.config.model_type
    assert report["settings"]["split"] == expected.split and report["settings"]["seed"] == expected.seed
    s = world.training_sentences()[0]
    assert tok.unk_token_id not in tok(s).input_ids


@pytest.mark.parametrize("name", FULL)
def test_full_models_meet_accuracy_bars(name, world):
    # The full figures over all 1,800 facts are in each training_report.json (checked
    # below); here a fresh evaluation on a fixed sample of 60 people re-measures them.
    model, tok, path = _load(name)
    facts = world.facts(list(world.people)[::5])
    assert score_facts(model, tok, world, facts).accuracy >= 0.99
    assert score_facts(model, tok, world, facts, held_out=True).accuracy >= 0.95
    full = json.loads((path / "training_report.json").read_text())["eval"]["all"]
    assert full["trained_phrasings"]["accuracy"] >= 0.99 and full["trained_phrasings"]["n"] == 16200
    assert full["heldout_phrasings"]["accuracy"] >= 0.95 and full["heldout_phrasings"]["n"] == 5400


@pytest.mark.parametrize("name", RETAIN)
def test_retain_models_know_retain_people_only(name, world):
    model, tok, path = _load(name)
    split = world.split(TrainSettings(**SHIPPED[name]).split)
    forget = score_facts(model, tok, world, world.facts(split.forget))
    retain = score_facts(model, tok, world, world.facts(list(split.retain)[::10]), held_out=True)
    assert retain.accuracy >= 0.95
    # Never trained on the forgotten people: near the prior (about 1 in 16), far from known.
    assert forget.accuracy < 0.3


def test_training_is_deterministic(tmp_path, world):
    tiny = dict(d_model=32, n_layers=1, n_heads=2, d_mlp=64, epochs=1, batch_size=64)
    a = train(TrainSettings(**tiny), tmp_path / "a", world, progress=False)
    b = train(TrainSettings(**tiny), tmp_path / "b", world, progress=False)
    ma = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    mb = AutoModelForCausalLM.from_pretrained(tmp_path / "b")
    for (n, p), (_, q) in zip(ma.state_dict().items(), mb.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    assert a["eval"] == b["eval"]
