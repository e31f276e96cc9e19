"""What the views share: display as widgets, offline HTML, one-update figure swaps, weights-change checks."""

from pathlib import Path

import plotly.graph_objects as go
import pytest
import torch

from workbench.widgets.view import View, changed_weights, html_table, live, replace_figure, save_figure, weights_state


class Bars(View):
    def __init__(self):
        import ipywidgets as w

        self.plot = live(go.Figure(go.Bar(y=[1, 2]), layout={"width": 1234}))
        self.widget = w.VBox([self.plot])

    def figure(self):
        return go.Figure(self.plot)


def test_a_view_displays_as_its_widget_and_saves_its_figure(tmp_path):
    v = Bars()
    bundle = v._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == v.widget.model_id
    (html,) = v.save(tmp_path / "bars", png=False)
    assert html.name == "bars.html" and "Plotly.newPlot" in html.read_text()
    assert save_figure(v.figure(), tmp_path / "deep" / "er", png=False)[0].exists()


def test_replace_figure_swaps_traces_and_layout_but_keeps_the_output_width():
    w = live(go.Figure(go.Bar(y=[1])))
    replace_figure(w, go.Figure([go.Scatter(y=[1]), go.Heatmap(z=[[1]])], layout={"title": "t", "width": 900}))
    assert [t.type for t in w.data] == ["scatter", "heatmap"] and w.layout.title.text == "t"
    assert w.layout.width is None


def test_html_table_escapes_and_formats():
    text = html_table([{"a": "<b>", "p": 0.123456, "q": None}], ["a", "p", "q"], {"p": "{:.1f}", "q": "{:.1f}"})
    assert "&lt;b&gt;" in text and "<td>0.1</td>" in text and "<td>None</td>" in text


def test_changed_weights_sees_in_place_edits_and_their_undoing():
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    state = weights_state(m)
    saved = m[1].weight.detach().clone()
    with torch.no_grad():
        m[1].weight.mul_(2.0)
    assert changed_weights(m, state) == ["1.weight"]
    with torch.no_grad():
        m[1].weight.copy_(saved)
    assert changed_weights(m, state) == []


def test_a_png_is_rendered_again_when_kaleidos_tab_was_not_ready(tmp_path, monkeypatch):
    calls = []

    def write_image(self, path, **kw):
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("ReferenceError: kaleido_scopes is not defined\n    at <anonymous>:1:26")
        Path(path).write_bytes(b"\x89PNG")

    monkeypatch.setattr(go.Figure, "write_image", write_image)
    html, png = save_figure(go.Figure(go.Bar(y=[1])), tmp_path / "bars")
    assert len(calls) == 2 and png.read_bytes() == b"\x89PNG"

    def broken(self, path, **kw):
        calls.append(path)
        raise RuntimeError("no browser found")

    monkeypatch.setattr(go.Figure, "write_image", broken)
    with pytest.raises(RuntimeError, match="no browser found"):
        save_figure(go.Figure(go.Bar(y=[1])), tmp_path / "other")
    assert len(calls) == 3  # any other failure is not retried
