"""Key-position states: what a full pass reads there, from texts cut at the key, passes stopped at the module."""

from functools import partial

import pytest
import torch
from tiny_models import FAMILIES, tiny_handle

from edit.key_states import KeyRows, key_position, mean_states
from edit.request import world_request

X = "It is well known that"


def _requests(world, n=3):
    return [world_request(world, p, "pet") for p in list(world.people)[:n]]


def _full_pass(h, texts, position, path, which):
    """The state a whole forward pass of each text has at ``position(text)``."""
    module = h.model.get_submodule(path)
    return torch.stack([_states(h, module, t, which)[0, position(t)].double() for t in texts])


def _states(h, module, text, which):
    """The module's input or output in a whole forward pass of ``text``."""
    got = []
    hook = (
        module.register_forward_pre_hook(lambda m, a: got.append(a[0]))
        if which == "input"
        else module.register_forward_hook(lambda m, a, o: got.append(o[0] if isinstance(o, tuple) else o))
    )
    try:
        with torch.no_grad():
            h.model(**h.tokenizer(text, return_tensors="pt"))
    finally:
        hook.remove()
    return got[0]


@pytest.mark.parametrize("role", ["last", "subject_last"])
def test_the_mean_of_what_full_passes_read_at_the_key(handle, world, role):
    reqs, sites = _requests(world), handle.sites
    for path, which in ((sites.key_module_path(1), "input"), (sites.module_path(1, "resid"), "output")):
        got = mean_states(handle, reqs, role, ["", X], path, which)
        for r, g in zip(reqs, got, strict=True):
            texts = [r.prompt, f"{X} {r.prompt}"]
            position = partial(key_position, handle.tokenizer, subject=r.subject, role=role)
            want = _full_pass(handle, texts, position, path, which)
            torch.testing.assert_close(g, want.mean(0), atol=1e-5, rtol=1e-5)


def test_a_pass_stops_at_the_module_it_reads(handle, world):
    calls = []
    last = handle.model.get_submodule(handle.sites.module_path(handle.n_layers - 1, "resid"))
    hook = last.register_forward_hook(lambda *a: calls.append(1))
    try:
        mean_states(handle, _requests(world), "last", [""], handle.sites.key_module_path(0), "input")
    finally:
        hook.remove()
    assert calls == []


def test_rows_end_at_the_key_and_a_repeated_text_counts_as_often_as_it_occurs(handle, world):
    reqs = _requests(world)
    rows = KeyRows.of(handle.tokenizer, reqs, "subject_last", ["", X, X])
    assert rows.weight == [1, 2] * len(reqs) and rows.owner == [0, 0, 1, 1, 2, 2]
    assert handle.tokenizer.decode(rows.ids[1]).strip().endswith(reqs[0].subject.split()[-1])
    key = handle.sites.key_module_path(0)
    keys = {
        n: mean_states(handle, reqs, "last", c, key, "input")
        for n, c in (("bare", [""]), ("x", [X]), ("both", ["", X, X]))
    }
    # The states are read in float32 and averaged in float64: the thread count moves the last bits.
    torch.testing.assert_close(keys["both"], (keys["bare"] + 2 * keys["x"]) / 3, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family(family):
    from edit.request import Request

    h = tiny_handle(family)
    reqs = [Request("the cat", "on a mat the cat sat on", "a", "the")]
    k = mean_states(h, reqs, "subject_last", ["", "the dog"], h.sites.key_module_path(0), "input")
    assert k.shape == (1, h.sites.d_mlp) and bool(torch.isfinite(k).all())
