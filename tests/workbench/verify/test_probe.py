"""Logit lens and linear probes: the mechanics, and the case they exist for, output suppression."""

import pytest
import torch
from tiny_models import FAMILIES, tiny_handle

import workbench
from edit.forget_request import forget_request
from workbench.core.tokens import encode_prompts
from workbench.verify.probe import LensSettings, ProbeSettings, fit_probe, last_token_states, linear_probe, logit_lens
from workbench.verify.suppression import suppress_output

FAST = ProbeSettings(train_people=50, steps=50)


@pytest.fixture(scope="module")
def request05(world):
    return forget_request(world, "forget05")


@pytest.mark.parametrize("family", FAMILIES)
def test_states_are_the_block_outputs(family):
    h = tiny_handle(family, n_layers=3)
    prompts = ["the cat sat on a mat", "Paris is the capital of France"]
    states = last_token_states(h, prompts)
    assert states.shape == (3, 2, 32)
    ids = encode_prompts(h.tokenizer, prompts)
    with torch.no_grad():
        hidden = h.model(torch.tensor([ids[0]]), output_hidden_states=True).hidden_states
    # hidden_states[l + 1] is block l's output, except the last, which has the final norm applied.
    for layer in range(2):
        assert torch.allclose(states[layer, 0], hidden[layer + 1][0, -1], atol=1e-5)


def test_lens_at_the_last_layer_is_the_output(handle, world):
    facts = world.facts()[:12]
    prompt = world.phrasings(facts[0].relation)[0].prompt(facts[0].subject)
    state = last_token_states(handle, [prompt], layers=[-1])[0]
    norm = handle.model.get_submodule(handle.sites.final_norm_path)
    unembed = handle.model.get_submodule(handle.sites.unembed_path)
    with torch.no_grad():
        assert torch.allclose(unembed(norm(state)), handle.model(handle.encode(prompt)).logits[0, -1:], atol=1e-4)
    lens = logit_lens(handle, facts, LensSettings(layers=(-1,)))
    assert lens.layers == (3,) and lens.accuracy == (handle.score(facts).accuracy,)
    assert lens.to_dict()["accuracy"] == [1.0]


def test_suppression_hides_the_output_not_the_knowledge(handle, request05):
    forget = request05.forget
    clean_lens = logit_lens(handle, forget)
    clean_probe = linear_probe(handle, forget, request05.retain, FAST)
    with suppress_output(handle, forget):
        assert handle.score(forget).accuracy < 0.05
        lens = logit_lens(handle, forget)
        probe = linear_probe(handle, forget, request05.retain, FAST)
    # Nothing before the pushed block moves: layers 0-2 read exactly what they read before.
    assert lens.accuracy[:3] == clean_lens.accuracy[:3] and min(lens.accuracy[:3]) > 0.5
    assert lens.accuracy[3] < 0.05
    assert probe.accuracy[:3] == clean_probe.accuracy[:3] and min(probe.accuracy[:3]) > 6 * probe.prior
    assert probe.accuracy[3] < 0.25
    assert min(probe.train_accuracy) > 0.95  # the probes train on retain people, whom nothing hides


def test_exact_unlearning_leaves_nothing_to_read(request05):
    retain = workbench.load("world:retain-forget05", device="cpu")
    probe = linear_probe(retain, request05.forget, request05.retain, FAST)
    lens = logit_lens(retain, request05.forget)
    assert probe.prior == pytest.approx(0.0639, abs=1e-3)
    assert max(probe.accuracy) < 2.5 * probe.prior and max(lens.accuracy) < 2.5 * lens.prior
    assert min(probe.train_accuracy) > 0.95


def test_fit_probe_and_errors(handle, world):
    torch.manual_seed(0)
    centres = torch.randn(5, 16) * 3
    y = torch.arange(200) % 5
    x = centres[y] + torch.randn(200, 16)
    w, b = fit_probe(x, y, classes=5)
    assert float(((x @ w + b).argmax(1) == y).float().mean()) > 0.95
    people = list(world.people)
    with pytest.raises(ValueError, match="must not train on a forgotten person"):
        linear_probe(handle, world.facts(people[:1]), world.facts(people[:2]), FAST)
    with pytest.raises(ValueError, match="no facts"):
        logit_lens(handle, [])
