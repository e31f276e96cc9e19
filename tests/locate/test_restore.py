"""Restoring one state of a trace: the same number as the trace's cell, and the whole next-token distribution."""

import pytest
import torch

from locate.causal_trace import TraceError, TraceSettings, trace
from locate.restore import restore_state


@pytest.mark.parametrize(
    "settings",
    [TraceSettings(samples=3), TraceSettings(samples=2, window=3), TraceSettings(corruption="counterfactual")],
    ids=["noise", "window", "counterfactual"],
)
def test_every_cell_matches_the_trace(handle, world, settings):
    person = list(world.people)[7]
    fact = world.fact(person, "employer")
    r = trace(handle, world.phrasings("employer")[0].prompt(person), person, fact.object, settings)
    for c in r.scores:
        for t in range(len(r.tokens)):
            for layer in range(handle.n_layers):
                s = restore_state(handle, r, c, t, layer, k=3)
                assert abs(s.prob - float(r.scores[c][t, layer])) < 1e-5, (c, t, layer)
                assert len(s.top) == 3 and s.top[0][1] >= s.top[1][1] >= s.top[2][1]
    wide = restore_state(handle, r, "mlp", 2, 1)
    assert wide.layers == ((0, 1, 2) if settings.window == 3 else (1,))


def test_top_tokens_are_those_of_the_corrupted_run_with_the_state_put_back(handle, world):
    fact = world.facts()[0]
    prompt = world.phrasings(fact.relation)[0].prompt(fact.subject)
    r = trace(handle, prompt, fact.subject, fact.object, TraceSettings(samples=2))
    last = len(r.tokens) - 1
    # The last token's block output at the top layer is the whole clean state there: the clean prediction.
    s = restore_state(handle, r, "resid", last, handle.n_layers - 1, k=5)
    with torch.no_grad():
        clean = torch.softmax(handle.model(handle.encode(prompt)).logits[0, -1], -1)
    assert [p for _, p in s.top] == pytest.approx(clean.topk(5).values.tolist(), abs=1e-5)
    assert s.top[0][0] == fact.object
    # Nothing before the subject carries it: restoring BOS leaves the corrupted prediction.
    assert restore_state(handle, r, "mlp", 0, 0).prob == pytest.approx(r.corrupted, abs=1e-6)


def test_cells_outside_the_grid_are_refused(handle, world):
    fact = world.facts()[0]
    r = trace(
        handle,
        world.phrasings(fact.relation)[0].prompt(fact.subject),
        fact.subject,
        fact.object,
        TraceSettings(samples=1),
        components=("mlp",),
    )
    with pytest.raises(TraceError, match="outside"):
        restore_state(handle, r, "mlp", len(r.tokens), 0)
    with pytest.raises(TraceError, match="outside"):
        restore_state(handle, r, "mlp", 0, handle.n_layers)
