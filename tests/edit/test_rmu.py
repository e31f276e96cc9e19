"""RMU on the default world model: a person is forgotten, others kept, only the allowed tensors move."""

import pytest
import torch
from tiny_models import tiny_handle

import edit.rmu
from edit.edit import EditError
from edit.forget_request import ForgetError, ForgetRequest, forget_request, subsample
from edit.rmu import RmuSettings, rmu
from locate.location import Location, Site
from workbench.core.hashing import tensor_hash

FAST = RmuSettings(steps=40, lr=3e-2, steering_coefficient=2.0, retain_samples=100)


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def person(world):
    return forget_request(world, list(world.people)[7])


def test_person_is_forgotten_and_others_kept(handle, person):
    before = _hashes(handle.model)
    retain = subsample(person.retain, 40, 1)
    e = rmu(handle, person, settings=FAST, progress=False)
    try:
        assert handle.score(list(person.forget)).accuracy < 0.5
        assert handle.score(retain).accuracy >= 0.95
        layer = e.metrics["layer"]
        allowed = {handle.sites.mlp_out_path(edited) + ".weight" for edited in range(max(0, layer - 2), layer + 1)}
        assert set(e.names) == allowed and layer == edit.rmu.DEFAULT_LAYER
        changed = {n for n, h in _hashes(handle.model).items() if h != before[n]}
        assert changed == allowed
        assert e.metrics["steps"] == FAST.steps and e.metrics["stopped"] == "steps"
        assert e.metrics["loss_forget"][-1] < e.metrics["loss_forget"][0]
        assert e.request.to_dict() == person.to_dict() and e.settings["layer"] == layer and e.method == "rmu"
        assert set(e.hashes_before) == allowed and all(d.dense is not None for d in e.deltas.values())
    finally:
        e.revert(handle.model)
    assert _hashes(handle.model) == before


def test_layer_from_location_and_settings(handle, person):
    loc = Location("causal_trace", sites=[Site("activation", 1, "mlp", 3, score=1.0)])
    s = RmuSettings(steps=2, retain_samples=10)
    e = rmu(handle, person, loc, s, apply=False, progress=False)
    assert e.names == [handle.sites.mlp_out_path(layer) + ".weight" for layer in (0, 1)] and e.location is loc
    e = rmu(handle, person, loc, RmuSettings(layer=-1, steps=2, retain_samples=10), apply=False, progress=False)
    assert e.names == [handle.sites.mlp_out_path(layer) + ".weight" for layer in (1, 2, 3)] and not e.applied


def test_only_the_person_positions_are_pushed(handle, world):
    person = list(world.people)[3]
    examples = edit.rmu._forget_examples(handle, forget_request(world, person))
    framed = next(e for e in examples if "registry" in handle.tokenizer.decode(e[0]))
    pushed = handle.tokenizer.decode([framed[0][i] for i in framed[1]])
    assert pushed.startswith(person) and framed[1][-1] == len(framed[0]) - 1 and "registry" not in pushed
    last = edit.rmu._forget_examples(handle, forget_request(world, person), "last")
    assert [p for _, p in last] == [[len(ids) - 1] for ids, _ in examples]


def test_same_settings_same_weights(handle, person):
    s = RmuSettings(steps=3, retain_samples=10)
    a, b = (rmu(handle, person, settings=s, apply=False, progress=False) for _ in range(2))
    assert all(torch.equal(a.deltas[n].dense, b.deltas[n].dense) for n in a.names)


def test_nan_and_interrupt_leave_the_model_unchanged(handle, person, monkeypatch):
    before = _hashes(handle.model)
    real, calls = edit.rmu._masked_mse, []

    def nan_later(*args):
        calls.append(1)
        return real(*args) * (float("nan") if len(calls) > 6 else 1.0)

    monkeypatch.setattr(edit.rmu, "_masked_mse", nan_later)
    with pytest.raises(EditError, match="loss became nan at step 4"):
        rmu(handle, person, settings=RmuSettings(steps=10, retain_samples=10), progress=False)
    assert _hashes(handle.model) == before

    def interrupt(*args):
        calls.append(1)
        if len(calls) > 20:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(edit.rmu, "_masked_mse", interrupt)
    with pytest.raises(KeyboardInterrupt):
        rmu(handle, person, settings=RmuSettings(steps=10, retain_samples=10), progress=False)
    assert (
        _hashes(handle.model) == before
        and handle.model.get_parameter(handle.sites.mlp_out_path(0) + ".weight").grad is None
    )


def test_refusals(handle, person):
    with pytest.raises(ForgetError, match="layer 7 out of range for a 4-layer model"):
        rmu(handle, person, settings=RmuSettings(layer=7))
    with pytest.raises(ForgetError, match="nothing to forget"):
        rmu(handle, ForgetRequest("nobody", retain=person.retain))
    with pytest.raises(ForgetError, match="no site with a layer"):
        rmu(handle, person, Location("fisher", sites=[Site("parameter", param="lm_head.weight")]))
    with pytest.raises(ForgetError, match="steps and batch_size must be >= 1"):
        RmuSettings(steps=0)
    with pytest.raises(ForgetError, match="unknown positions 'first'"):
        RmuSettings(positions="first")


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_texts_on_other_families(family):
    h = tiny_handle(family, n_layers=3)
    r = ForgetRequest(
        "cat",
        forget_texts=("the cat sat on the mat", "a cat is in Rome"),
        retain_texts=("the dog sat on a mat", "Paris is the capital of France", "Rome is in Italy"),
    )
    before = _hashes(h.model)
    e = rmu(h, r, settings=RmuSettings(layer=1, steps=20, lr=1e-2), progress=False)
    try:
        assert e.names == [h.sites.mlp_out_path(layer) + ".weight" for layer in (0, 1)]
        assert e.metrics["loss_forget"][-1] < e.metrics["loss_forget"][0]
        assert {n for n, v in _hashes(h.model).items() if v != before[n]} == set(e.names)
    finally:
        e.revert(h.model)
    assert _hashes(h.model) == before
