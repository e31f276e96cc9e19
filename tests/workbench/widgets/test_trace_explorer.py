"""Causal-trace explorer: the heatmaps are the trace, a click fills the detail panel, "edit here" edits and reverts."""

from dataclasses import replace

import pytest
import torch
from plotly.callbacks import Points
from static_figures import write_static

from edit.request import Request
from locate.causal_trace import TraceSettings, trace
from workbench.widgets.trace_explorer import TraceExplorer, token_role, trace_figure

PERSON, RELATION = 7, "employer"


@pytest.fixture(scope="module")
def result(handle, world):
    person = list(world.people)[PERSON]
    fact = world.fact(person, RELATION)
    return trace(handle, world.phrasings(RELATION)[0].prompt(person), person, fact.object, TraceSettings(samples=4))


def click(explorer, component, token, layer):
    """What the browser sends when a heatmap cell is clicked: the trace and the cell's (row, column)."""
    heatmap = next(t for t in explorer.plot.data if t.name == component)
    explorer._on_click(
        heatmap,
        Points(
            point_inds=[[token, layer]],
            xs=[layer],
            ys=[token],
            trace_name=component,
            trace_index=list(explorer.plot.data).index(heatmap),
        ),
        None,
    )


def weight(handle, layer):
    return handle.sites.mlp_out_weight(handle.model, layer).detach().clone()


def test_heatmaps_hold_the_grids_and_mark_the_subject(result):
    fig = trace_figure(result, selected=("mlp", 4, 1))
    assert [t.name for t in fig.data] == ["resid", "mlp", "attn"]
    for t in fig.data:
        assert torch.allclose(torch.tensor(t.z), result.scores[t.name])
        assert t.coloraxis == "coloraxis"
    a, b = result.subject_span
    ticks = fig.layout.yaxis.ticktext
    assert [i for i, label in enumerate(ticks) if label.startswith("<b>")] == list(range(a, b))
    subject_boxes = [s for s in fig.layout.shapes if s.line.color == "#e45756"]
    assert len(subject_boxes) == 3 and all((s.y0, s.y1) == (a - 0.5, b - 0.5) for s in subject_boxes)
    (box,) = [s for s in fig.layout.shapes if s.line.color != "#e45756"]
    assert (box.x0, box.y0, box.xref) == (0.5, 3.5, "x2")


def test_token_roles(result):
    a, b = result.subject_span
    last = len(result.tokens) - 1
    assert token_role(result, last) == "last"
    assert all(token_role(result, t) == "subject_last" for t in range(a, b))
    assert token_role(result, 0) is None and token_role(result, b) is None


def test_a_click_fills_the_detail_panel(handle, result):
    x = TraceExplorer(handle, result)
    last = len(result.tokens) - 1
    click(x, "mlp", last, 0)
    assert x.selected == ("mlp", last, 0)
    assert abs(x.state.prob - float(result.scores["mlp"][last, 0])) < 1e-4
    assert f"restored P(object) {x.state.prob:.3f}" in x.detail.value
    assert "MLP output</b>, layer 0, token 4" in x.detail.value and "prompt's last token" in x.detail.value
    # Layer 0's MLP at the last token restores the fact: its first token tops the list.
    first = handle.tokenizer.decode(handle.encode_fact(result.prompt, result.target_object)[1][:1])
    assert x.state.top[0][0] == first and first in x.detail.value
    assert not x.edit_button.disabled and 'token="last"' in x.detail.value
    assert any(s.line.color == "#111111" for s in x.plot.layout.shapes)

    click(x, "attn", last - 1, 2)  # "works": neither last nor subject
    assert x.edit_button.disabled and "pick one of those rows" in x.detail.value
    click(x, "resid", result.subject_span[1] - 1, 1)
    assert not x.edit_button.disabled and 'token="subject_last"' in x.detail.value


def test_edit_here_shows_counterfact_scores_and_reverts(handle, result):
    x = TraceExplorer(handle, result)
    original = weight(handle, 0)
    x.edit_button.click()
    assert "select a cell first" in x.outcome.value  # an error lands in the panel, not in a log
    click(x, "mlp", len(result.tokens) - 1, 0)
    x.new_object.value = x.new_object.options[3]
    x.edit_button.click()
    try:
        assert x.edit is not None and x.edit.settings["layer"] == 0 and x.edit.settings["token"] == "last"
        (asked,) = x.edit.request.requests
        assert asked.prompt == result.prompt and asked.new_object == x.new_object.value
        assert not torch.equal(weight(handle, 0), original)
        assert "<td>efficacy</td><td>1</td><td>0.00</td><td>1.00</td>" in x.outcome.value
        assert x.edit_button.disabled and not x.revert_button.disabled
        click(x, "mlp", len(result.tokens) - 1, 0)  # the grid is the unedited model's: the panel says so
        assert "The model has changed since the trace (transformer.h.0.mlp.c_proj.weight)" in x.detail.value
        assert x.state.prob < 0.5  # restored under the edit, the true object no longer comes back
    finally:
        x.revert_button.click()
    assert x.edit is None and torch.equal(weight(handle, 0), original)
    assert "Reverted" in x.outcome.value and not x.edit_button.disabled
    click(x, "mlp", len(result.tokens) - 1, 0)
    assert "has changed" not in x.detail.value


def test_a_model_without_a_world_edits_the_request_it_is_given(handle, world, result):
    bare = replace(handle, world=None)
    request = Request(
        result.subject, result.prompt, result.target_object, world.fact(list(world.people)[0], RELATION).object
    )
    x = TraceExplorer(bare, result, request=request, texts=world.training_sentences()[:2000])
    assert list(x.new_object.options) == [request.new_object]
    x.select("mlp", len(result.tokens) - 1, 0)
    original = weight(handle, 0)
    e = x.edit_here()
    try:
        assert e.request.requests == (request,) and not request.paraphrases
        assert (
            handle.rank_candidates(result.prompt, [request.new_object, result.target_object])[0][0]
            == request.new_object
        )
    finally:
        x.revert()
    assert torch.equal(weight(handle, 0), original)
    assert TraceExplorer(bare, result).new_object.disabled  # no world, no request: nothing to edit


def test_static_copy(handle, result):
    x = TraceExplorer(handle, result)
    x.select("mlp", len(result.tokens) - 1, 0)
    write_static(x, "trace_explorer")
