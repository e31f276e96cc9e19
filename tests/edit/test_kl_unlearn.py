"""KL minimisation: gradient ascent on the forget set, the retain set held to the original's predictions."""

import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from edit.forget import METHODS
from edit.forget_request import ForgetError, forget_request
from edit.kl_loss import KlSettings, kl_unlearn, retain_kl
from edit.masked_elements import masked_elements
from workbench.cli import main
from workbench.core.hashing import tensor_hash

FAST = KlSettings(steps=10, lr=2e-2, floor=0.8, check_every=5, check_samples=20, retain_samples=60, fisher_examples=32)


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def person(world):
    return forget_request(world, list(world.people)[11])


def test_kl_forgets_a_person_inside_the_mask_and_reverts_bitwise(handle, person):
    before = _hashes(handle.model)
    params = dict(handle.model.named_parameters())
    originals = {n: p.detach().clone() for n, p in params.items()}
    e = kl_unlearn(handle, person, settings=FAST, progress=False)
    try:
        assert e.method == "kl" == e.settings["method"] and e.location.method == "fisher"
        assert handle.score(list(person.forget)).accuracy < 0.8
        assert all(v >= 0 for v in e.metrics["loss_retain"]) and len(e.metrics["loss_retain"]) == e.metrics["steps"]
        mask = e.location.parameter_mask(handle.model)
        for n in e.names:
            moved = params[n].detach() != originals[n]
            assert not (moved & ~mask[n]).any()
        assert {n for n, h in _hashes(handle.model).items() if h != before[n]} <= set(e.names)
    finally:
        e.revert(handle.model)
    assert _hashes(handle.model) == before


def _tiny():
    config = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def test_retain_kl_is_the_kl_of_the_original_to_the_current_at_scored_positions():
    m = _tiny()
    name = "transformer.h.0.mlp.c_fc.weight"
    me = masked_elements(
        m, {name: torch.rand(m.get_parameter(name).shape, generator=torch.Generator().manual_seed(1)) < 0.5}
    )
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    scored = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    batch = (ids, mask, scored)
    assert float(retain_kl(m, FAST, batch, me).detach()) == 0.0
    with torch.no_grad():
        ref = torch.log_softmax(m(input_ids=ids, attention_mask=mask).logits, -1)
        me.values[name].add_(0.5)
    me.write()
    kl = retain_kl(m, FAST, batch, me)
    with torch.no_grad():
        cur = torch.log_softmax(m(input_ids=ids, attention_mask=mask).logits, -1)
    # Positions 1 and 2 of row 0 predict its scored tokens 2 and 3; position 0 of row 1 its token 1.
    rows = [(0, 1), (0, 2), (1, 0)]
    want = sum(float((ref[r, t].exp() * (ref[r, t] - cur[r, t])).sum()) for r, t in rows) / 3
    assert float(kl.detach()) == pytest.approx(want, rel=1e-5) and want > 0
    kl.backward()  # the graph reaches the current weights, not the reference pass
    me.write(me.originals)
    assert torch.equal(m.get_parameter(name).detach().reshape(-1)[me.index[name]], me.originals[name])


def test_settings_are_the_gradient_methods_with_their_own_name():
    assert KlSettings().method == "kl" and KlSettings().floor == 0.98
    assert METHODS["kl"].make_settings(floor=0.9) == KlSettings(floor=0.9)
    assert METHODS["kl"].strength[0] == "floor"
    with pytest.raises(ForgetError, match="unknown method 'ga'; expected one of \\('kl',\\)"):
        KlSettings(method="ga")


def test_forget_a_person_with_kl_from_the_cli(capsys, monkeypatch, world):
    # The command runs the registry's settings; these make it a test of the wiring, in seconds.
    fast = {k: getattr(FAST, k) for k in ("steps", "lr", "floor", "check_every", "check_samples", "retain_samples")}
    monkeypatch.setitem(METHODS, "kl", replace(METHODS["kl"], fixed={**fast, "fisher_examples": 32}))
    person = list(world.people)[12]
    code = main(["forget", person, "--method", "kl", "--retain-facts", "20", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    o = json.loads(out)
    assert o["method"] == "kl" and o["settings"]["method"] == "kl" and o["tensors"]
    assert o["after"]["forget"] < o["before"]["forget"] == 1.0
