"""Value optimisation: requests optimised together get what each would get alone."""

import pytest
import torch
from tiny_models import FAMILIES, tiny_handle

from edit.request import world_request
from edit.values import ValueSettings, contexts, optimise_values
from edit.values_plain import optimise_values_plain


def _requests(world, n):
    out = []
    for i, p in enumerate(list(world.people)[10 : 10 + n]):
        rel = list(world.relations)[i % len(world.relations)]
        new = next(c for c in world.relation(rel).candidates if c != world.fact(p, rel).object)
        out.append(world_request(world, p, rel, new if i % 3 else None))  # one erase in three
    return out


def test_batched_equals_one_at_a_time(handle, world):
    reqs, ctxs = _requests(world, 4), contexts(handle, 2, 3)
    s = ValueSettings(steps=6)
    together = optimise_values(handle, 0, reqs, "last", ctxs, s)
    for i, r in enumerate(reqs):
        alone = optimise_values(handle, 0, [r], "last", ctxs, s)
        torch.testing.assert_close(together.delta[i], alone.delta[0], atol=2e-3, rtol=1e-3)
        assert len(together.losses[i]) == len(alone.losses[0])
    small = optimise_values(handle, 0, reqs, "last", ctxs, ValueSettings(steps=6, batch_requests=3))
    torch.testing.assert_close(small.delta, together.delta, atol=2e-3, rtol=1e-3)


def test_weights_untouched_and_grad_flags_restored(handle, world):
    before = {n: p.detach().clone() for n, p in handle.model.named_parameters()}
    optimise_values(handle, 1, _requests(world, 2), "subject_last", [""], ValueSettings(steps=2))
    assert all(torch.equal(p, before[n]) for n, p in handle.model.named_parameters())
    assert all(p.requires_grad for p in handle.model.parameters())


def test_norm_clamp_holds(handle, world):
    v = optimise_values(handle, 0, _requests(world, 3), "last", [""], ValueSettings(steps=8, clamp_norm=0.1, lr=5.0))
    assert bool((v.delta.norm(dim=-1) <= 0.1 * v.original.norm(dim=-1) * 1.0001).all())


def test_running_the_prefix_once_gives_the_values_of_full_passes(handle, world):
    reqs, ctxs = _requests(world, 4), contexts(handle, 3, 4)
    for role in ("last", "subject_last"):
        fast = optimise_values(handle, 1, reqs, role, ctxs, ValueSettings(steps=5))
        full = optimise_values(handle, 1, reqs, role, ctxs, ValueSettings(steps=5, reuse_prefix=False))
        torch.testing.assert_close(fast.delta, full.delta, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(fast.original, full.original, atol=1e-5, rtol=1e-4)
        assert [len(x) for x in fast.losses] == [len(x) for x in full.losses]


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_reuse_on_every_family(family):
    # Rotary families need the position ids of left-padded prefixes right.
    from edit.request import Request

    h = tiny_handle(family)
    reqs = [
        Request("the cat", "on a mat the cat sat on", "a", "the", keep=("the cat is in",)),
        Request("Paris", "the capital of Italy is Paris is in", "France", "Rome"),
    ]
    ctxs = ["", "the dog", "a mat is in the"]
    for role in ("last", "subject_last"):
        fast = optimise_values(h, 0, reqs, role, ctxs, ValueSettings(steps=4))
        full = optimise_values(h, 0, reqs, role, ctxs, ValueSettings(steps=4, reuse_prefix=False))
        torch.testing.assert_close(fast.delta, full.delta, atol=1e-4, rtol=1e-3)
        for a, b in zip(fast.losses, full.losses, strict=True):
            assert a[:2] == pytest.approx(b[:2], rel=1e-4, abs=1e-5)


def test_a_repeated_prefix_runs_once_and_counts_as_often_as_it_occurs(handle, world):
    from edit.values import _rows

    reqs, x = _requests(world, 3), "It is well known that"
    edit, keep = _rows(handle, reqs, ["", x, x], "last")
    assert len(edit.ids) == 2 * len(reqs) and edit.weight == [1, 2] * len(reqs) and set(keep.weight) == {1}
    # At delta 0 the objective is the fit alone: the mean of the prefixes' fits, x counted twice.
    first = {
        n: [curve[0] for curve in optimise_values(handle, 0, reqs, "last", c, ValueSettings(steps=1)).losses]
        for n, c in (("bare", [""]), ("x", [x]), ("both", ["", x, x]))
    }
    assert first["both"] == pytest.approx(
        [(a + 2 * b) / 3 for a, b in zip(first["bare"], first["x"], strict=True)], rel=1e-5
    )


def test_steps_start_after_the_edited_layer(handle, world):
    # Blocks up to the edited layer compute the same every step: only the prefix and the
    # unedited pass run them; with full passes they run every step.
    reqs = _requests(world, 2)
    ran = {0: 0, 2: 0}
    hooks = [
        handle.sites.module(handle.model, i, "mlp").register_forward_hook(
            lambda m, a, o, i=i: ran.__setitem__(i, ran[i] + 1)
        )
        for i in ran
    ]
    try:
        for reuse, skipped, layer in ((True, True, 1), (True, True, -3), (False, False, 1)):
            ran.update({0: 0, 2: 0})
            v = optimise_values(handle, layer, reqs, "last", [""], ValueSettings(steps=4, reuse_prefix=reuse))
            steps = max(len(x) for x in v.losses)
            assert steps > 1
            assert ran[2] - ran[0] == (steps if skipped else 0)
    finally:
        for x in hooks:
            x.remove()


def test_the_batched_path_computes_what_the_plain_one_does(handle, world):
    # Batching, the prefix cache, skipped blocks and merged repeated contexts change nothing
    # beyond float rounding; a rewrite and an erasure, a repeated context, keep rows.
    reqs, ctxs = _requests(world, 3)[:2], ["", "It is well known that", "It is well known that"]
    for role, layer in (("subject_last", 1), ("last", 0)):
        fast = optimise_values(handle, layer, reqs, role, ctxs, ValueSettings(steps=4))
        plain = optimise_values_plain(handle, layer, reqs, role, ctxs, ValueSettings(steps=4))
        torch.testing.assert_close(fast.delta, plain.delta, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(fast.original, plain.original, atol=1e-5, rtol=1e-4)
        for a, b in zip(fast.losses, plain.losses, strict=True):
            assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
