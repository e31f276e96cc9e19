"""Causal-trace explorer: tokens x layers heatmaps, a detail panel per cell, and "edit here".

Three heatmaps side by side (residual stream, MLP, attention) show P(object) with each state
restored under the corruption, subject tokens marked. Clicking a cell restores that one state
again (:func:`locate.restore.restore_state`) and lists what the model then predicts. Where the
cell's token is one ROME can key on (the prompt's last token: ``token="last"``; a subject
token: ``"subject_last"``), "edit here" runs ROME at that layer and shows the request's
CounterFact scores (:func:`edit.counterfact.score_requests`) before and after, with a revert.
"""

from __future__ import annotations

import html
import traceback
from dataclasses import replace

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from edit.counterfact import KINDS, score_requests
from edit.edit import Edit, EditError
from edit.request import Request, world_request
from edit.rome import RomeSettings, rome
from locate.causal_trace import TraceResult
from locate.restore import RestoredState, restore_state
from workbench.widgets.view import View, changed_weights, html_table, live, weights_state

TITLES = {"resid": "residual stream", "mlp": "MLP output", "attn": "attention output"}
SUBJECT_COLOUR, SELECTED_COLOUR = "#e45756", "#111111"


def token_role(result: TraceResult, token: int) -> str | None:
    """Where ROME would key for a cell's token: "last", "subject_last", or None (neither).

    Examples:
        >>> from locate.causal_trace import TraceSettings
        >>> r = TraceResult({}, 1.0, 0.1, (1, 3), ["<s>", "Ann", "Lee", "was", "born", "in"], TraceSettings())
        >>> token_role(r, 5), token_role(r, 1), token_role(r, 3)
        ('last', 'subject_last', None)
    """
    if token == len(result.tokens) - 1:
        return "last"
    a, b = result.subject_span
    return "subject_last" if a <= token < b else None


def trace_figure(result: TraceResult, selected: tuple[str, int, int] | None = None) -> go.Figure:
    """The trace as one heatmap per component (tokens down, layers across), subject tokens marked.

    Examples:
        >>> import torch
        >>> from locate.causal_trace import TraceSettings
        >>> grid = {c: torch.rand(4, 2) for c in ("resid", "mlp", "attn")}
        >>> r = TraceResult(grid, 0.9, 0.1, (1, 3), ["<s>", "Ann", "Lee", "is"], TraceSettings())
        >>> fig = trace_figure(r, selected=("mlp", 3, 1))
        >>> [t.name for t in fig.data], len(fig.data[0].z), len(fig.data[0].z[0]), len(fig.layout.shapes)
        (['resid', 'mlp', 'attn'], 4, 2, 4)

    Args:
        result: A :class:`~locate.causal_trace.TraceResult`.
        selected: (component, token, layer) of a cell to outline.
    """
    comps = list(result.scores)
    n_tok = len(result.tokens)
    a, b = result.subject_span
    fig = make_subplots(
        1, len(comps), shared_yaxes=True, horizontal_spacing=0.03, subplot_titles=[TITLES.get(c, c) for c in comps]
    )
    values = [float(v) for c in comps for v in result.scores[c].flatten()] + [result.clean, result.corrupted]
    labels = [f"<b>{html.escape(t)}</b>" if a <= i < b else html.escape(t) for i, t in enumerate(result.tokens)]
    for i, c in enumerate(comps, start=1):
        grid = result.scores[c].tolist()
        n_layers = len(grid[0])
        fig.add_trace(
            go.Heatmap(
                z=grid,
                x=list(range(n_layers)),
                y=list(range(n_tok)),
                name=c,
                coloraxis="coloraxis",
                xgap=1,
                ygap=1,
                customdata=[[f"{j} {tok!r}"] * n_layers for j, tok in enumerate(result.tokens)],
                hovertemplate="token %{customdata}<br>layer %{x}<br>P(object) %{z:.3f}<extra>" + c + "</extra>",
            ),
            row=1,
            col=i,
        )
        # The subject's rows, outlined: where the corruption went in.
        fig.add_shape(
            type="rect",
            x0=-0.5,
            x1=n_layers - 0.5,
            y0=a - 0.5,
            y1=b - 0.5,
            line=dict(color=SUBJECT_COLOUR, width=2),
            row=1,
            col=i,
        )
        fig.update_xaxes(title_text="layer", tickvals=list(range(n_layers)), row=1, col=i)
        if selected and selected[0] == c:
            _, t, layer = selected
            fig.add_shape(
                type="rect",
                x0=layer - 0.5,
                x1=layer + 0.5,
                y0=t - 0.5,
                y1=t + 0.5,
                line=dict(color=SELECTED_COLOUR, width=3),
                row=1,
                col=i,
            )
    fig.update_yaxes(tickvals=list(range(n_tok)), ticktext=labels, autorange="reversed")
    fig.update_layout(
        title=(
            f"Causal trace of {html.escape(result.subject)} \u2192 {html.escape(result.target_object)}<br><sup>"
            f"P(object) clean {result.clean:.3f}, corrupted {result.corrupted:.3f}; subject in red</sup>"
        ),
        coloraxis=dict(colorscale="Blues", cmin=min(values), cmax=max(values), colorbar=dict(title="P")),
        template="plotly_white",
        height=220 + 34 * n_tok,
        width=1100,
        margin=dict(l=120, t=90),
    )
    return fig


def detail_html(result: TraceResult, state: RestoredState, role: str | None, changed: list[str] | None = None) -> str:
    """The detail panel of one cell: restored P(object), the top next tokens, and where ROME would key.

    Examples:
        >>> from locate.causal_trace import TraceSettings
        >>> r = TraceResult({}, 0.9, 0.1, (1, 2), ["<s>", "Ann", "is"], TraceSettings(), target_object="x")
        >>> s = RestoredState("mlp", 2, 0, (0,), 0.8, [("x", 0.8), ("y", 0.1)])
        >>> "restored P(object) 0.800" in detail_html(r, s, "last")
        True

    Args:
        result: The trace.
        state: :func:`locate.restore.restore_state` of the cell.
        role: :func:`token_role` of its token.
        changed: Parameters changed since the trace (a note says the grid and the panel differ).
    """
    where = {"last": "the prompt's last token", "subject_last": "a subject token"}.get(role, "")
    head = (
        f"<b>{TITLES.get(state.component, state.component)}</b>, layer {state.layer}, token {state.token} "
        f"<code>{html.escape(result.tokens[state.token])}</code>{' (' + where + ')' if where else ''}"
    )
    probs = (
        f"restored P(object) {state.prob:.3f} (clean {result.clean:.3f}, corrupted {result.corrupted:.3f}; "
        f"layers restored {', '.join(map(str, state.layers))})"
    )
    top = html_table([{"next token": t, "P": p} for t, p in state.top], ["next token", "P"], {"P": "{:.3f}"})
    edit = (
        f'Edit here: ROME on layer {state.layer}\'s MLP, key at token="{role}".'
        if role
        else "ROME keys on the prompt's last token or a subject token: pick one of those rows to edit."
    )
    note = (
        f"<div><i>The model has changed since the trace ({html.escape(', '.join(changed[:3]))}"
        f"{', ...' if len(changed) > 3 else ''}): the grid is the model's before, this panel the model's now.</i></div>"
        if changed
        else ""
    )
    return f"<div>{head}<br>{probs}<br>Top next tokens with only this state restored:{top}{edit}{note}</div>"


def counterfact_html(request: Request, before: dict, after: dict, layer: int, role: str) -> str:
    """CounterFact scores of a request before and after its ROME edit, as an HTML table.

    Examples:
        >>> s = {k: {"prob": 0.0, "accuracy": 0.0, "n": 1} for k in KINDS}
        >>> "efficacy" in counterfact_html(Request("A B", "A B is", "x", "y"), s, s, 0, "last")
        True

    Args:
        request: The edit's request.
        before, after: :func:`edit.counterfact.score_requests` of it before and after the edit.
        layer, role: Where ROME edited (MLP layer, key position).
    """
    rows = [
        {
            "score": k,
            "n": after[k]["n"],
            "prob before": before[k]["prob"],
            "prob after": after[k]["prob"],
            "accuracy before": before[k]["accuracy"],
            "accuracy after": after[k]["accuracy"],
        }
        for k in KINDS
    ]
    cols = ["score", "n", "prob before", "prob after", "accuracy before", "accuracy after"]
    what = (
        f'ROME at layer {layer}, token="{role}": {html.escape(request.subject)}: '
        f"{html.escape(request.true_object)} \u2192 {html.escape(str(request.target))}"
    )
    return f"<div><b>{what}</b>{html_table(rows, cols, {c: '{:.2f}' for c in cols[2:]})}</div>"


class TraceExplorer(View):
    """The causal-trace explorer over one :class:`~locate.causal_trace.TraceResult`.

    Examples:
        >>> import workbench
        >>> from locate.causal_trace import TraceSettings, trace
        >>> h = workbench.load("world", device="cpu")
        >>> f = h.world.facts()[0]
        >>> prompt = h.world.phrasings(f.relation)[0].prompt(f.subject)
        >>> r = trace(h, prompt, f.subject, f.object, TraceSettings(samples=2))
        >>> x = TraceExplorer(h, r)
        >>> x.select("mlp", len(r.tokens) - 1, 0).prob > 0.9, "restored P(object)" in x.detail.value
        (True, True)

    Args:
        handle: The :class:`workbench.core.handle.ModelHandle` the trace was made on.
        result: The trace.
        request: What "edit here" rewrites; default, for a world fact, :func:`edit.request.world_request`
            of the traced prompt. Without a world, pass one (its ``new_object`` is the default target).
        texts: Text for ROME's key statistics, for a model without a world.
        top: How many next tokens the detail panel lists.
    """

    def __init__(
        self, handle, result: TraceResult, request: Request | None = None, texts: list[str] | None = None, top: int = 5
    ):
        import ipywidgets as w

        self.handle, self.result, self.texts, self.top = handle, result, texts, top
        self.request = request or self._world_request()
        self.selected: tuple[str, int, int] | None = None
        self.state: RestoredState | None = None
        self.edit: Edit | None = None
        # Taken as the explorer opens, on the weights the trace is taken to be of: a later edit shows in the panel.
        self._weights = weights_state(handle.model)
        self.plot = live(trace_figure(result))
        for heatmap in self.plot.data:
            heatmap.on_click(self._on_click)
        self.detail = w.HTML("Click a cell to restore that one state and see what the model predicts.")
        self.detail.add_class("wb-trace-detail")
        self.new_object = w.Dropdown(options=self._targets(), description="new object", disabled=self.request is None)
        self.edit_button = w.Button(description="edit here", disabled=True, button_style="primary")
        self.revert_button = w.Button(description="revert", disabled=True)
        self.edit_button.on_click(lambda _: self._safely(self.edit_here))
        self.revert_button.on_click(lambda _: self._safely(self.revert))
        self.outcome = w.HTML("")
        self.outcome.add_class("wb-trace-outcome")
        controls = w.VBox([self.new_object, w.HBox([self.edit_button, self.revert_button]), self.outcome])
        self.widget = w.VBox([self.plot, w.HBox([self.detail, controls])])
        self.widget.add_class("wb-trace-explorer")

    # -- callbacks ---------------------------------------------------------------------
    def _on_click(self, trace, points, state):
        if points.point_inds:
            token, layer = points.point_inds[0]
            self._safely(lambda: self.select(trace.name, int(token), int(layer)))

    def select(self, component: str, token: int, layer: int) -> RestoredState:
        """Show cell (component, token, layer) in the detail panel; what a click on it does."""
        self.state = restore_state(self.handle, self.result, component, token, layer, self.top)
        self.selected = (component, token, layer)
        role = token_role(self.result, token)
        self.plot.layout.shapes = trace_figure(self.result, self.selected).layout.shapes
        self.edit_button.disabled = role is None or self.request is None or self.edit is not None
        self.detail.value = detail_html(
            self.result, self.state, role, changed_weights(self.handle.model, self._weights)
        )
        return self.state

    def edit_here(self, new_object: str | None = None) -> Edit:
        """Run ROME at the selected cell's layer and token role; show CounterFact scores before and after."""
        if self.selected is None:
            raise EditError("select a cell first")
        role = token_role(self.result, self.selected[1])
        if role is None or self.request is None:
            raise EditError(
                "this cell's token is neither the prompt's last token nor a subject token"
                if role is None
                else "no request to edit: pass request=... for a model without a world"
            )
        if self.edit is not None:
            raise EditError("an edit is applied: revert it first")
        layer = self.selected[2]
        request = self._request(new_object or self.new_object.value)
        before = score_requests(self.handle, [request])
        self.edit = rome(self.handle, request, settings=RomeSettings(layer=layer, token=role), texts=self.texts)
        self.outcome.value = counterfact_html(request, before, score_requests(self.handle, [request]), layer, role)
        self.edit_button.disabled, self.revert_button.disabled = True, False
        return self.edit

    def revert(self) -> None:
        """Undo the explorer's edit: the model's weights are bitwise as before it."""
        if self.edit is None:
            raise EditError("no edit to revert")
        self.edit.revert(self.handle.model)
        self.edit = None
        self.outcome.value += "<div>Reverted: the model is as it was before the edit.</div>"
        self.revert_button.disabled = True
        self.edit_button.disabled = self.selected is None or token_role(self.result, self.selected[1]) is None

    def figure(self) -> go.Figure:
        """The heatmaps as a static figure, the selected cell outlined."""
        return trace_figure(self.result, self.selected)

    # -- helpers -----------------------------------------------------------------------
    def _safely(self, fn):
        # A widget callback's exception goes to a log nobody sees: show it where the click was.
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - anything an editor raises belongs in the panel
            self.outcome.value = f"<pre>{html.escape(''.join(traceback.format_exception_only(e)))}</pre>"

    def _world_request(self) -> Request | None:
        world, r = self.handle.world, self.result
        relation = world.parse_prompt(r.prompt)[1] if world is not None else None
        if (
            relation is None
            or r.subject not in world.people
            or world.fact(r.subject, relation).object != r.target_object
        ):
            return None
        return self._request(next(c for c in world.relation(relation).candidates if c != r.target_object), relation)

    def _targets(self) -> list[str]:
        if self.request is None:
            return []
        cands = [c for c in self.request.candidates if c != self.request.true_object]
        return cands or [self.request.target]

    def _request(self, new_object: str, relation: str | None = None) -> Request:
        relation = relation or (self.request.relation if self.request else None)
        if self.handle.world is None or relation is None:
            return replace(self.request, new_object=new_object)
        r = world_request(self.handle.world, self.result.subject, relation, new_object)
        # Edit the traced prompt itself; the request's other phrasings stay its paraphrases.
        return replace(
            r, prompt=self.result.prompt, paraphrases=tuple(p for p in r.paraphrases if p != self.result.prompt)
        )


__all__ = ["TraceExplorer", "counterfact_html", "detail_html", "token_role", "trace_figure"]
