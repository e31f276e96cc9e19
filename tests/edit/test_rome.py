"""ROME on the default world model: the edit takes, generalises, spares neighbours, and is reversible."""

import pytest
from tiny_models import tiny_handle

import workbench
from edit.edit import EditError
from edit.request import Request, RequestError, world_request
from edit.rome import RomeSettings, rome, site_of
from edit.values import ValueSettings
from locate.causal_trace import TraceSettings, trace
from locate.location import Location, Site
from workbench.core.hashing import tensor_hash


@pytest.fixture(scope="module")
def fresh():
    return workbench.load("world", device="cpu")


def _top(h, prompt, candidates):
    return h.rank_candidates(prompt, list(candidates))[0][0]


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


def _rewrite(world, i, relation="birthplace"):
    person = list(world.people)[i]
    new = next(c for c in world.relation(relation).candidates if c != world.fact(person, relation).object)
    return world_request(world, person, relation, new)


def test_rewrite_takes_generalises_and_spares_neighbours(fresh, world):
    r = _rewrite(world, 21)
    before = _hashes(fresh.model)
    e = rome(fresh, r)
    try:
        assert _top(fresh, r.prompt, r.candidates) == r.new_object
        assert all(_top(fresh, q, r.candidates) == r.new_object for q in r.paraphrases)
        assert sum(_top(fresh, q, r.candidates) == o for q, o in r.neighbours) >= len(r.neighbours) - 1
        changed = {n for n, h in _hashes(fresh.model).items() if h != before[n]}
        assert changed == set(e.names) == {fresh.sites.mlp_out_path(e.settings["layer"]) + ".weight"}
        assert e.deltas[e.names[0]].rank == 1 and e.location.method == "causal_trace"
    finally:
        e.revert(fresh.model)
    assert _hashes(fresh.model) == before


def test_erase_removes_the_answer_without_choosing_a_replacement(fresh, world):
    tops = set()
    for i in (30, 31, 32):
        person = list(world.people)[i]
        r = world_request(world, person, "profession")
        with rome(fresh, r, apply=False).applied_to(fresh.model):
            ranked = fresh.rank_candidates(r.prompt, list(r.candidates))
            assert ranked[0][0] != r.true_object and dict(ranked)[r.true_object] < 0.2
            tops.add(ranked[0][0])
    assert len(tops) > 1  # no single wrong object is pushed for every erasure


def test_layer_and_token_come_from_the_location(fresh, world):
    r = _rewrite(world, 40, "pet")
    loc = trace(fresh, r.prompt, r.subject, r.true_object, TraceSettings(samples=2)).to_location()
    layer, role = site_of(loc, fresh.n_layers)
    e = rome(fresh, r, loc, apply=False)
    assert (e.settings["layer"], e.settings["token"]) == (layer, role) and e.location is loc
    forced = rome(fresh, r, loc, RomeSettings(layer=2, token="subject_last"), apply=False)
    assert (forced.settings["layer"], forced.settings["token"]) == (2, "subject_last")
    assert not forced.applied and not e.applied


def test_failure_leaves_the_model_unchanged(fresh, world, monkeypatch):
    import edit.rome

    r = _rewrite(world, 50)
    before = _hashes(fresh.model)
    real = edit.rome.optimise_values

    def nan_values(*args, **kwargs):
        v = real(*args, **kwargs)
        v.delta[:] = float("nan")
        return v

    monkeypatch.setattr(edit.rome, "optimise_values", nan_values)
    with pytest.raises(EditError, match="non-finite"):
        rome(fresh, r, settings=RomeSettings(layer=0, token="last"))
    assert _hashes(fresh.model) == before


def test_interrupt_leaves_the_model_unchanged(fresh, world):
    r = _rewrite(world, 51)
    before = _hashes(fresh.model)
    calls = []

    def interrupt(module, args, out):
        calls.append(1)
        if len(calls) == 3:  # inside the value optimisation
            raise KeyboardInterrupt

    # The last layer: its steps skip the edited layer's block, this one runs in every pass.
    hook = fresh.sites.module(fresh.model, -1, "mlp").register_forward_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            rome(fresh, r, settings=RomeSettings(layer=0, token="last", contexts=0))
    finally:
        hook.remove()
    assert _hashes(fresh.model) == before and all(p.requires_grad for p in fresh.model.parameters())
    # Interrupted in a step, while the edited layer's block was skipped: it runs again.
    assert not any("forward" in fresh.sites.module(fresh.model, i, "resid").__dict__ for i in range(fresh.n_layers))


def test_refusals(fresh, world):
    r = _rewrite(world, 60)
    with pytest.raises(EditError, match="layer 7 out of range 0..3"):
        rome(fresh, r, settings=RomeSettings(layer=7))
    with pytest.raises(RequestError, match="already the true object"):
        rome(fresh, Request(r.subject, r.prompt, r.true_object, r.true_object))
    with pytest.raises(EditError, match="names no MLP site"):
        rome(fresh, r, Location("m", sites=[Site("activation", 1, "attn", 3, score=1.0)]))
    with pytest.raises(EditError, match="pass texts="):
        rome(tiny_handle("gpt2"), Request("cat", "the cat sat on", "a", "mat"), settings=RomeSettings(layer=0))


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_mechanics_on_other_families(family):
    h = tiny_handle(family)
    r = Request("cat", "the cat sat on", "a", "mat")
    before = h.object_prob(r.prompt, "mat")
    # Layer 0 at the subject: a later layer's attention carries the change to the prediction.
    # A random model's MLP outputs are tiny next to its residual stream, so ROME's norm clamp
    # and weight decay (relative to the MLP output) are loosened to let the value matter.
    s = RomeSettings(
        layer=0, token="subject_last", contexts=2, values=ValueSettings(clamp_norm=1e4, weight_decay=0.0, lr=100.0)
    )
    e = rome(h, r, settings=s, texts=["the cat sat on a mat", "the dog is in Rome", "Paris is the capital of France"])
    assert e.names == [h.sites.mlp_out_path(0) + ".weight"]
    assert h.object_prob(r.prompt, "mat") > before
    e.revert(h.model)
    assert h.object_prob(r.prompt, "mat") == pytest.approx(before, abs=1e-7)
