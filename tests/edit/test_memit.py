"""MEMIT and its null-space mode on the default world model: mechanics, reversibility, refusals."""

import pytest
import torch

import workbench
from edit.covariance import key_statistics
from edit.edit import EditError
from edit.memit import MemitSettings, memit
from edit.null_space import NullSpace
from edit.request import world_request
from workbench.core.hashing import tensor_hash


@pytest.fixture(scope="module")
def fresh():
    return workbench.load("world", device="cpu")


def _requests(world, people, relation="school"):
    out = []
    for p in people:
        new = next(c for c in world.relation(relation).candidates if c != world.fact(p, relation).object)
        out.append(world_request(world, p, relation, new))
    return out


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


def _top(h, r, prompt=None):
    return h.rank_candidates(prompt or r.prompt, list(r.candidates))[0][0]


def test_batch_takes_touches_only_its_layers_and_reverts(fresh, world):
    reqs = _requests(world, list(world.people)[100:106])  # school: two-token objects
    before = _hashes(fresh.model)
    e = memit(fresh, reqs, settings=MemitSettings(layers=(0, 1), token="last", mom2_weight=100.0))
    try:
        assert sum(_top(fresh, r) == r.new_object for r in reqs) >= 5
        changed = {n for n, h in _hashes(fresh.model).items() if h != before[n]}
        assert changed == set(e.names) == {fresh.sites.mlp_out_path(layer) + ".weight" for layer in (0, 1)}
        assert all(d.rank == len(reqs) for d in e.deltas.values())
    finally:
        e.revert(fresh.model)
    assert _hashes(fresh.model) == before


def test_not_applied_until_asked_and_failure_is_atomic(fresh, world, monkeypatch):
    import edit.memit as m

    reqs = _requests(world, list(world.people)[110:112])
    before = _hashes(fresh.model)
    e = memit(fresh, reqs, settings=MemitSettings(layers=(0,), token="last"), apply=False)
    assert _hashes(fresh.model) == before and not e.applied
    monkeypatch.setattr(m, "_solve", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        memit(fresh, reqs, settings=MemitSettings(layers=(0, 1), token="last"))
    assert _hashes(fresh.model) == before


def test_null_space_state_grows_saves_loads_and_resets(fresh, world, tmp_path):
    ns = NullSpace.for_layers(fresh, [0], position="last")
    p = ns.projection(0)
    torch.testing.assert_close(p @ p, p, atol=1e-6, rtol=0)
    first = memit(
        fresh,
        _requests(world, list(world.people)[120:123]),
        settings=MemitSettings(layers=(0,), token="last"),
        null_space=ns,
    )
    second = memit(
        fresh,
        _requests(world, list(world.people)[123:125]),
        settings=MemitSettings(layers=(0,), token="last"),
        null_space=ns,
    )
    assert ns.edited(0) == 5 and second.settings["null_space"]
    ns.keep_statistics = False
    ns.save(tmp_path / "ns.safetensors")
    back = NullSpace.load(tmp_path / "ns.safetensors")
    assert back.edited(0) == 5 and torch.equal(back.projection(0), ns.projection(0))
    assert (back.threshold, back.keep_statistics) == (ns.threshold, False)
    other = NullSpace.for_layers(fresh, [0], position="last")
    assert other.edited(0) == 0  # nothing leaks between independent states
    back.reset()
    assert back.edited(0) == 0 and 0 in back.projections
    second.revert(fresh.model)
    first.revert(fresh.model)


@pytest.mark.parametrize("keep_statistics", [True, False])
def test_null_space_update_leaves_preserved_keys_alone(fresh, world, keep_statistics):
    # Delta = R K^T P (...)^-1: for any key in P's null space (a preserved direction) the output is unchanged.
    ns = NullSpace.for_layers(fresh, [0], position="last", keep_statistics=keep_statistics)
    e = memit(
        fresh,
        _requests(world, list(world.people)[130:133]),
        settings=MemitSettings(layers=(0,), token="last"),
        null_space=ns,
        apply=False,
    )
    d = e.deltas[e.names[0]].tensor().double()  # Conv1D: [d_mlp, d_model]
    preserved = torch.eye(d.shape[0], dtype=torch.float64) - ns.projection(0)
    assert float((preserved @ d).abs().max()) < 1e-6 * float(d.abs().max())


def test_null_space_keeps_lambda_c_unless_told_not_to(fresh, world):
    # Within the null space only lambda C holds typical keys' outputs in place; AlphaEdit's solve
    # (keep_statistics=False) has no C term and moves them about four times as much here.
    reqs = _requests(world, list(world.people)[150:160])
    c = key_statistics(fresh, 0, position="last").second_moment.double()
    moved = {}
    for keep in (True, False):
        ns = NullSpace.for_layers(fresh, [0], position="last", keep_statistics=keep)
        e = memit(fresh, reqs, settings=MemitSettings(layers=(0,), token="last"), null_space=ns)
        try:
            assert sum(_top(fresh, r) == r.new_object for r in reqs) >= 9
            assert e.settings["null_space"] == {"threshold": 1e-2, "keep_statistics": keep}
        finally:
            e.revert(fresh.model)
        d = e.deltas[e.names[0]].tensor().double()  # Conv1D: [d_mlp, d_model]
        moved[keep] = float(torch.trace(d.T @ c @ d))  # E ||Delta k||^2 over typical keys
    assert moved[True] < 0.5 * moved[False]


def test_refusals(fresh, world):
    with pytest.raises(EditError, match="at least one request"):
        memit(fresh, [])
    with pytest.raises(EditError, match="layer 9 out of range"):
        memit(fresh, _requests(world, list(world.people)[:1]), settings=MemitSettings(layers=(0, 9)))


def test_reports_how_much_of_the_targets_the_update_wrote(fresh, world):
    reqs = _requests(world, list(world.people)[140:144])
    e = memit(fresh, reqs, settings=MemitSettings(layers=(0,), token="last"), apply=False)
    # Four keys in 512 dimensions: all of every target is written.
    assert e.metrics["written_fraction"][0] > 0.9 and e.metrics["target_written"] > 0.9
    # A preservation weight that drowns the edits' own keys writes little of them, and says so.
    with pytest.warns(UserWarning, match=r"wrote \d+% of the edits' targets \(4 edits, layer 0, 512 key dimensions"):
        heavy = memit(fresh, reqs, settings=MemitSettings(layers=(0,), token="last", mom2_weight=1e6), apply=False)
    assert heavy.metrics["target_written"] < 0.5
    # Spread over two layers, the second makes up what the first leaves: the whole is what counts.
    two = memit(fresh, reqs, settings=MemitSettings(layers=(0, 1), token="last"), apply=False)
    assert two.metrics["target_written"] > 0.9 and set(two.metrics["written_fraction"]) == {0, 1}


def _update_at_each_context(h, e, reqs, settings):
    """Per edit and distinct context, what the update adds at that context's key [context, edit, d_model]."""
    from edit.key_states import mean_states
    from edit.values import contexts

    (delta,) = e.deltas.values()
    d = delta.tensor().double()
    d = d.T if h.sites.weight_is_transposed() else d  # [d_model, d_mlp]
    ctxs = dict.fromkeys(contexts(h, settings.contexts, settings.context_length, settings.seed))
    return torch.stack([mean_states(h, reqs, "last", [c], h.sites.key_module_path(0), "input") @ d.T for c in ctxs])


def test_keys_each_writes_the_target_at_every_contexts_key(fresh, world):
    reqs = _requests(world, list(world.people)[150:156], "pet")
    before = _hashes(fresh.model)
    each = MemitSettings(layers=(0,), token="last", keys="each")
    e = memit(fresh, reqs, settings=each, apply=False)
    mean = memit(fresh, reqs, settings=MemitSettings(layers=(0,), token="last"), apply=False)
    assert _hashes(fresh.model) == before  # apply=False leaves the model alone
    # A column per edit and context, all with the edit's target: the update gives every context
    # the same change, where one column at the mean key lets them differ.
    spread = {}
    for name, edit in (("each", e), ("mean", mean)):
        got = _update_at_each_context(fresh, edit, reqs, each)
        spread[name] = float(((got - got.mean(0)).norm(dim=-1) / got.mean(0).norm(dim=-1)).max())
    assert spread["each"] < 0.05 < spread["mean"], spread
    assert e.metrics["target_written"] > 0.95 and e.settings["keys"] == "each"
    e.apply(fresh.model)
    try:
        assert all(_top(fresh, r) == r.new_object for r in reqs)
        changed = {n for n, h in _hashes(fresh.model).items() if h != before[n]}
        assert changed == set(e.names)
    finally:
        e.revert(fresh.model)
    assert _hashes(fresh.model) == before


def test_keys_must_be_mean_or_each(fresh, world):
    with pytest.raises(EditError, match="keys must be 'mean' or 'each'"):
        memit(fresh, _requests(world, list(world.people)[:1]), settings=MemitSettings(keys="median"))
