"""Gradient unlearning (GA, GradDiff, NPO) inside a parameter mask, with a retain floor."""

import pytest
import torch
from tiny_models import tiny_handle
from torch.func import functional_call

import edit.gradient_unlearn
from edit.edit import EditError
from edit.forget_request import ForgetError, ForgetRequest, forget_request, subsample
from edit.gradient_unlearn import METHODS, GradientSettings, gradient_unlearn
from edit.masked_elements import MaskedElements
from locate.location import Location, Site
from workbench.core.examples import encode_examples, example_batches, scored_logprobs
from workbench.core.hashing import tensor_hash

FAST = GradientSettings(steps=30, lr=1e-2, floor=0.9, check_samples=20, retain_samples=100, fisher_examples=64)


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def person(world):
    return forget_request(world, list(world.people)[11])


def test_person_is_forgotten_inside_the_mask(handle, person):
    before = _hashes(handle.model)
    params = dict(handle.model.named_parameters())
    originals = {n: p.detach().clone() for n, p in params.items()}
    e = gradient_unlearn(handle, person, settings=FAST, progress=False)
    try:
        assert handle.score(list(person.forget)).accuracy < 0.5
        # Gradient methods cost this model some retained facts (RMU's test asks for 0.95).
        assert handle.score(subsample(person.retain, 40, 1)).accuracy >= 0.85
        mask = e.location.parameter_mask(handle.model)
        assert e.location.method == "fisher" and set(e.names) == {n for n, m in mask.items() if m.any()}
        for n in e.names:
            moved = params[n].detach() != originals[n]
            assert not (moved & ~mask[n]).any() and moved.any()
            assert not e.deltas[n].dense[~mask[n]].any()
        changed = {n for n, h in _hashes(handle.model).items() if h != before[n]}
        assert changed <= set(e.names)
        m = e.metrics
        assert m["stopped"] in ("steps", "retain floor") and m["checks"][0][:2] == [0, 1.0]
        assert e.request.to_dict() == person.to_dict() and e.settings["method"] == "npo" == e.method
    finally:
        e.revert(handle.model)
    assert _hashes(handle.model) == before


def test_retain_floor_rolls_back(handle, person):
    s = GradientSettings(
        method="ga", steps=30, lr=0.3, check_every=2, floor=0.99, retain_samples=20, fisher_examples=32
    )
    e = gradient_unlearn(handle, person, settings=s, apply=False, progress=False)
    m = e.metrics
    assert m["stopped"] == "retain floor" and m["steps"] < 30 and m["checks"][-1][1] < m["retain_floor"]
    passed = [c[0] for c in m["checks"] if c[1] >= m["retain_floor"]]
    assert m["kept_step"] == passed[-1]
    if m["kept_step"] == 0:
        assert not any(d.dense.any() for d in e.deltas.values())


def test_given_location_bounds_the_update(handle, person):
    w = handle.sites.mlp_out_path(0) + ".weight"
    loc = Location("manual", sites=[Site("parameter", param=w)], masks={w: list(range(0, 128 * 512, 7))})
    s = GradientSettings(steps=3, check_every=1, retain_samples=10, floor=0.0)
    e = gradient_unlearn(handle, person, loc, s, apply=False, progress=False)
    assert e.names == [w] and e.location is loc
    delta = e.deltas[w].dense.flatten()
    outside = torch.ones_like(delta, dtype=torch.bool)
    outside[::7] = False
    assert delta[~outside].any() and not delta[outside].any()
    again = gradient_unlearn(handle, person, loc, s, apply=False, progress=False)
    assert torch.equal(again.deltas[w].dense, e.deltas[w].dense)


def test_nan_and_interrupt_leave_the_model_unchanged(handle, person, monkeypatch):
    before = _hashes(handle.model)
    real, calls = edit.gradient_unlearn._forget_loss, []

    def nan_later(*args):
        calls.append(1)
        lf = real(*args)
        return lf * float("nan") if len(calls) == 3 else lf

    monkeypatch.setattr(edit.gradient_unlearn, "_forget_loss", nan_later)
    s = GradientSettings(steps=5, retain_samples=10, fisher_examples=32)
    with pytest.raises(EditError, match="npo loss became nan at step 3"):
        gradient_unlearn(handle, person, settings=s, progress=False)
    assert _hashes(handle.model) == before

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(edit.gradient_unlearn, "_forget_loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        gradient_unlearn(handle, person, settings=s, progress=False)
    assert _hashes(handle.model) == before and all(p.grad is None for p in handle.model.parameters())


def test_refusals(handle, person):
    with pytest.raises(ForgetError, match="unknown method 'sgd'"):
        GradientSettings(method="sgd")
    with pytest.raises(ForgetError, match="lr and beta must be > 0"):
        GradientSettings(lr=float("nan"))
    with pytest.raises(ForgetError, match="nothing to forget"):
        gradient_unlearn(handle, ForgetRequest("nobody", retain=person.retain))
    with pytest.raises(ForgetError, match="selects no parameter"):
        gradient_unlearn(handle, person, Location("m", sites=[Site("activation", 0, "resid", 1)]))


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_texts_on_other_families(family):
    h = tiny_handle(family)
    r = ForgetRequest(
        "cat",
        forget_texts=("the cat sat on the mat", "a cat is in Rome"),
        retain_texts=("the dog sat on a mat", "Paris is the capital of France", "Rome is in Italy"),
    )
    before = _hashes(h.model)
    for method in ("ga", "gradiff", "npo"):
        e = gradient_unlearn(
            h, r, settings=GradientSettings(method=method, steps=10, lr=1e-2, floor=0.0), progress=False
        )
        try:
            assert e.metrics["loss_forget"][-1] < e.metrics["loss_forget"][0]
            assert {n for n, v in _hashes(h.model).items() if v != before[n]} <= set(e.names)
        finally:
            e.revert(h.model)
        assert _hashes(h.model) == before


def plain_unlearn(handle, request, location, s: GradientSettings) -> dict[str, torch.Tensor]:
    """The straightforward loop: Adam on whole tensors, the gradient zeroed outside the mask, the
    unmasked elements written back after every step, NPO's reference through a full copy."""
    model = handle.model
    masks = {n: m for n, m in location.parameter_mask(model).items() if m.any()}
    params = {n: model.get_parameter(n) for n in sorted(masks)}
    originals = {n: p.detach().clone() for n, p in params.items()}
    pad = handle.tokenizer.pad_token_id or 0
    forget = encode_examples(handle, request.forget_data(), what="forget")
    retain = encode_examples(handle, request.retain_data(s.retain_samples, s.seed), what="retain")
    forget_batches = example_batches(forget, s.batch_size, pad, s.seed)
    retain_batches = example_batches(retain, s.batch_size, pad, s.seed + 1)

    def logp(batch, weights=None):
        ids, mask, scored = batch
        kwargs = dict(input_ids=ids, attention_mask=mask, use_cache=False)
        out = model(**kwargs) if weights is None else functional_call(model, weights, (), kwargs, strict=False)
        return scored_logprobs(out.logits, ids, scored)

    optimiser = torch.optim.Adam(list(params.values()), lr=s.lr)
    try:
        for _ in range(s.steps):
            fb, rb = next(forget_batches), next(retain_batches) if s.method != "ga" else None
            lp = logp(fb)
            if s.method == "npo":
                with torch.no_grad():
                    ref = logp(fb, originals)
                loss = -(2.0 / s.beta) * torch.nn.functional.logsigmoid(-s.beta * (lp - ref)).mean()
            else:
                loss = (lp / fb[2][:, 1:].sum(-1).clamp(min=1.0)).mean()
            if rb is not None:
                loss = loss + s.retain_weight * -(logp(rb).sum() / rb[2][:, 1:].sum().clamp(min=1.0))
            grads = torch.autograd.grad(loss, list(params.values()))
            for (n, p), g in zip(params.items(), grads, strict=True):
                p.grad = g * masks[n]
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(torch.where(masks[n], p, originals[n]))
        return {n: (p.detach() - originals[n]) for n, p in params.items()}
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(originals[n])


@pytest.mark.parametrize("method", METHODS)
def test_same_edit_as_whole_tensor_adam(handle, person, method):
    # Adam on the masked elements alone moves them exactly as Adam on whole tensors with the
    # gradient zeroed outside the mask; two tensors, one sparse and one whole.
    w, b = handle.sites.mlp_out_path(0) + ".weight", handle.sites.mlp_in_paths(1)[0] + ".bias"
    loc = Location(
        "manual",
        sites=[Site("parameter", param=w), Site("parameter", param=b)],
        masks={w: list(range(3, 128 * 512, 11))},
    )
    s = GradientSettings(method=method, steps=4, lr=1e-2, check_every=4, retain_samples=24, batch_size=8, floor=0.0)
    before = _hashes(handle.model)
    e = gradient_unlearn(handle, person, loc, s, apply=False, progress=False)
    assert _hashes(handle.model) == before and e.metrics["kept_step"] == 4
    want = plain_unlearn(handle, person, loc, s)
    assert _hashes(handle.model) == before and set(e.deltas) == set(want) == {w, b}
    for n in want:
        torch.testing.assert_close(e.deltas[n].dense, want[n], rtol=1e-6, atol=1e-9)
        assert e.deltas[n].dense.any()


@pytest.mark.parametrize("fail_at", [5, 6])
def test_failure_mid_run_restores_every_element(handle, person, monkeypatch, fail_at):
    # NPO writes the leaves twice a step: back after its reference pass (the 5th such write is
    # step 3's, with the originals still in) and after Adam's step (the 6th, step 3's update).
    before = _hashes(handle.model)
    real, calls = MaskedElements.write, []

    def fail_once(self, values=None):
        calls.append(values is None)
        if values is None and sum(calls) == fail_at:
            raise KeyboardInterrupt
        return real(self, values)

    monkeypatch.setattr(MaskedElements, "write", fail_once)
    s = GradientSettings(steps=5, retain_samples=10, fisher_examples=32)
    with pytest.raises(KeyboardInterrupt):
        gradient_unlearn(handle, person, settings=s, progress=False)
    assert sum(calls) == fail_at and _hashes(handle.model) == before
    assert all(p.grad is None and p.requires_grad for p in handle.model.parameters())
