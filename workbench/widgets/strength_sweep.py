"""Strength sweep: forget vs retain accuracy as an unlearning method's strength setting slides.

Each method of :data:`edit.forget.METHODS` is a curve through its strength values (weakest
first); the retain model, trained without the forgotten people, is the star the curves should
reach (low forget accuracy, retain accuracy kept), the unedited model the cross they start
from. The slider moves along one method's curve, run once and cached in a
:class:`edit.forget_sweep.Sweep`, and the panel gives that point's figures beside the star's.
"""

from __future__ import annotations

import plotly.graph_objects as go

from edit.forget_sweep import Sweep
from workbench.widgets.view import View, html_table, live, replace_figure

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d")
FIGURES = ("forget", "forget_heldout", "retain", "neighbours", "heldout_loss", "seconds")


def sweep_figure(sweep: Sweep, method: str | None = None, value=None) -> go.Figure:
    """Every method's forget-vs-retain curve, ``method`` in front, ``value``'s point ringed, the retain model starred.

    Examples:
        >>> s = Sweep("forget05", [{"method": "ssd", "strength": {"alpha": a}, "forget": f, "retain": 1.0}
        ...                        for a, f in ((100.0, 0.5), (10.0, 0.1))], {"forget": 0.07, "retain": 1.0},
        ...           {"forget": 1.0, "retain": 1.0})
        >>> [t.name for t in sweep_figure(s, "ssd", 10.0).data]
        ['ssd', 'ssd alpha=10', 'retain model', 'original']

    Args:
        sweep: A :class:`~edit.forget_sweep.Sweep`.
        method: The method in front (the others faded); None: all alike.
        value: The strength value of ``method`` to ring.
    """
    fig = go.Figure()
    for i, name in enumerate(sweep.methods()):
        pts, key = sweep.points(name), sweep.setting(name)
        front = method in (None, name)
        fig.add_trace(
            go.Scatter(
                x=[r["forget"] for r in pts],
                y=[r["retain"] for r in pts],
                mode="lines+markers",
                name=name,
                opacity=1.0 if front else 0.25,
                line=dict(color=PALETTE[i % len(PALETTE)], width=3 if method == name else 2),
                text=[f"{name} {key}={r['strength'][key]:g}" for r in pts],
                hovertemplate="%{text}<br>forget %{x:.3f}<br>retain %{y:.3f}<extra></extra>",
            )
        )
    if method is not None and value is not None:
        key = sweep.setting(method)
        r = next(r for r in sweep.points(method) if r["strength"][key] == value)
        fig.add_trace(
            go.Scatter(
                x=[r["forget"]],
                y=[r["retain"]],
                mode="markers",
                name=f"{method} {key}={value:g}",
                marker=dict(size=20, color="rgba(0,0,0,0)", line=dict(color="black", width=3)),
            )
        )
    for name, point, marker in (
        ("retain model", sweep.reference, dict(symbol="star", size=18, color="black")),
        ("original", sweep.original, dict(symbol="x", size=12, color="grey")),
    ):
        if point:
            fig.add_trace(
                go.Scatter(
                    x=[point["forget"]],
                    y=[point["retain"]],
                    mode="markers",
                    name=name,
                    marker=marker,
                    hovertemplate=f"{name}<br>forget %{{x:.3f}}<br>retain %{{y:.3f}}<extra></extra>",
                )
            )
    fig.update_layout(
        title=f"Unlearning {sweep.split}: forget vs retain accuracy over each method's strength",
        xaxis_title="forget accuracy (lower is better)",
        yaxis_title="retain accuracy",
        template="plotly_white",
        width=900,
        height=600,
    )
    return fig


def point_html(sweep: Sweep, method: str, value) -> str:
    """One point's figures beside the retain model's and the original's (HTML table).

    Examples:
        >>> s = Sweep("f", [{"method": "ssd", "strength": {"alpha": 10.0}, "forget": 0.1, "retain": 1.0}],
        ...           {"forget": 0.07, "retain": 1.0})
        >>> "ssd alpha=10" in point_html(s, "ssd", 10.0)
        True
    """
    key = sweep.setting(method)
    r = next(r for r in sweep.points(method) if r["strength"][key] == value)
    rows = [dict(r, model=f"{method} {key}={value:g}")]
    rows += [dict(p, model=name) for name, p in (("retain model", sweep.reference), ("original", sweep.original)) if p]
    cols = ["model"] + [c for c in FIGURES if any(c in row for row in rows)]
    return html_table(rows, cols, {c: "{:.1f}" if c == "seconds" else "{:.3f}" for c in cols[1:]})


class StrengthSweep(View):
    """A slider along one method's strength values over a cached :class:`~edit.forget_sweep.Sweep`.

    Examples:
        >>> s = Sweep("f", [{"method": "ssd", "strength": {"alpha": a}, "forget": f, "retain": 1.0}
        ...                 for a, f in ((100.0, 0.5), (10.0, 0.1))], {"forget": 0.07, "retain": 1.0})
        >>> v = StrengthSweep(s)
        >>> v.select("ssd", 10.0)["forget"], v.slider.value
        (0.1, 10.0)

    Args:
        sweep: From :func:`edit.forget_sweep.strength_sweep` or :func:`edit.forget_sweep.load_sweep`.
        method: The method shown first; default the first swept.
    """

    def __init__(self, sweep: Sweep, method: str | None = None):
        import ipywidgets as w

        self.sweep = sweep
        self.method = method or sweep.methods()[0]
        self.value = sweep.values(self.method)[0]
        self.method_box = w.Dropdown(options=sweep.methods(), value=self.method, description="method")
        self.slider = w.SelectionSlider(
            options=self._options(self.method),
            value=self.value,
            description=sweep.setting(self.method),
            continuous_update=False,
        )
        self._busy = False  # set while select() moves the controls itself, so their observers stay quiet
        self.method_box.observe(lambda ch: self._busy or self.select(ch["new"]), "value")
        self.slider.observe(lambda ch: self._busy or self.select(self.method, ch["new"]), "value")
        self.panel = w.HTML()
        self.plot = live(sweep_figure(sweep, self.method, self.value))
        self.widget = w.VBox([w.HBox([self.method_box, self.slider]), self.plot, self.panel])
        self.widget.add_class("wb-strength-sweep")
        self.select(self.method, self.value)

    def select(self, method: str, value=None) -> dict:
        """Move to ``method`` at strength ``value`` (default its weakest); returns that point's row."""
        value = self.sweep.values(method)[0] if value is None else value
        self.method, self.value, self._busy = method, value, True
        try:
            self.method_box.value = method
            if [v for _, v in self.slider.options] != self.sweep.values(method):
                self.slider.options = self._options(method)
                self.slider.description = self.sweep.setting(method)
            self.slider.value = value
        finally:
            self._busy = False
        replace_figure(self.plot, sweep_figure(self.sweep, method, value))
        self.panel.value = point_html(self.sweep, method, value)
        key = self.sweep.setting(method)
        return next(r for r in self.sweep.points(method) if r["strength"][key] == value)

    def figure(self) -> go.Figure:
        """All curves, the selected point ringed, as a static figure."""
        return sweep_figure(self.sweep, self.method, self.value)

    def _options(self, method: str) -> list[tuple[str, object]]:
        return [(f"{v:g}", v) for v in self.sweep.values(method)]


__all__ = ["StrengthSweep", "point_html", "sweep_figure"]
