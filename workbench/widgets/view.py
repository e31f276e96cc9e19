"""What every view shares: an ipywidgets box to display, a static plotly figure, HTML and PNG files.

A view is a thin class over pure figure builders: the box shows in JupyterLab (plotly's
``FigureWidget`` through anywidget, so nothing is fetched from a CDN), and :meth:`View.figure`
gives the same content as a plain ``plotly.graph_objects.Figure`` for rendered notebooks and
exported reports, written by :func:`save_figure` as self-contained HTML and as PNG.
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go

from workbench.core.hashing import tensor_hash


def save_figure(fig: go.Figure, stem: str | Path, png: bool = True) -> list[Path]:
    """Write ``fig`` as ``stem.html`` (plotly.js inlined: opens offline) and ``stem.png``.

    Examples:
        >>> import tempfile
        >>> out = save_figure(go.Figure(go.Bar(y=[1, 2])), Path(tempfile.mkdtemp()) / "bars", png=False)
        >>> [p.name for p in out], out[0].stat().st_size > 1_000_000
        (['bars.html'], True)

    Args:
        fig: Any plotly figure.
        stem: Path without suffix; its folder is created.
        png: Also write a PNG through kaleido (which drives a Chromium-family browser:
            ``/usr/bin/chromium`` from Debian's ``chromium`` package).
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = [stem.with_suffix(".html")]
    fig.write_html(written[0], include_plotlyjs=True)
    if png:
        written.append(stem.with_suffix(".png"))
        for attempt in range(_PNG_ATTEMPTS):
            try:
                fig.write_image(written[1], width=fig.layout.width or 1200, height=fig.layout.height or 600)
                break
            except Exception as e:  # noqa: BLE001 - only kaleido's one known race is retried
                # Under load kaleido 1.x can ask its browser tab to render before the tab's own
                # script has loaded; rendering again in a fresh tab succeeds.
                if _NOT_READY not in str(e) or attempt == _PNG_ATTEMPTS - 1:
                    raise
    return written


_PNG_ATTEMPTS = 3
_NOT_READY = "kaleido_scopes is not defined"


def live(fig: go.Figure) -> go.FigureWidget:
    """A ``FigureWidget`` of ``fig`` that takes the width of the output area (the static copy keeps its own).

    Examples:
        >>> w = live(go.Figure(go.Bar(y=[1]), layout={"width": 1200, "height": 300}))
        >>> w.layout.width, w.layout.height
        (None, 300)
    """
    return go.FigureWidget(fig).update_layout(width=None, autosize=True)


def replace_figure(widget: go.FigureWidget, fig: go.Figure) -> go.FigureWidget:
    """Swap every trace and the layout of a displayed ``FigureWidget`` for those of ``fig``, in one update.

    Examples:
        >>> w = go.FigureWidget(go.Bar(y=[1]))
        >>> replace_figure(w, go.Figure(go.Scatter(y=[3, 4]), layout={"title": "new"})).data[0].type
        'scatter'
        >>> w.layout.title.text
        'new'
    """
    with widget.batch_update():
        widget.data = ()
        widget.layout = fig.layout
        widget.add_traces(list(fig.data))
        widget.update_layout(width=None, autosize=True)
    return widget


def html_table(rows: list[dict], columns: list[str], formats: dict[str, str] | None = None) -> str:
    """A small HTML table of ``rows`` (dicts) over ``columns``; floats formatted by ``formats``.

    Examples:
        >>> html_table([{"a": "x<y", "p": 0.51234}], ["a", "p"], {"p": "{:.2f}"})
        '<table class="wb-table"><tr><th>a</th><th>p</th></tr><tr><td>x&lt;y</td><td>0.51</td></tr></table>'
    """
    formats = formats or {}

    def cell(row, c):
        v = row.get(c, "")
        return html.escape(formats[c].format(v) if c in formats and v != "" and v is not None else str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r, c)}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table class="wb-table"><tr>{head}</tr>{body}</table>'


def weights_state(model) -> dict[str, tuple[int, str]]:
    """Each parameter's in-place version counter and hash: what :func:`changed_weights` compares against.

    Examples:
        >>> import torch
        >>> m = torch.nn.Linear(2, 2)
        >>> sorted(weights_state(m))
        ['bias', 'weight']
    """
    return {n: (p._version, tensor_hash(p)) for n, p in model.named_parameters()}


def changed_weights(model, state: dict[str, tuple[int, str]]) -> list[str]:
    """The parameters whose values differ from ``state``: only those written in place since are hashed again.

    Examples:
        >>> import torch
        >>> m = torch.nn.Linear(2, 2)
        >>> s, saved = weights_state(m), m.bias.detach().clone()
        >>> with torch.no_grad():
        ...     _ = m.bias.add_(1.0)
        >>> changed_weights(m, s)
        ['bias']
        >>> with torch.no_grad():
        ...     _ = m.bias.copy_(saved)
        >>> changed_weights(m, s)  # written twice, but back to the same bytes
        []
    """
    return [
        n
        for n, p in model.named_parameters()
        if n not in state or (p._version != state[n][0] and tensor_hash(p) != state[n][1])
    ]


class View:
    """Base of the views: displays :attr:`widget`; :meth:`figure` and :meth:`save` give the static copy."""

    widget = None  # the ipywidgets box, built by each view

    def figure(self) -> go.Figure:
        """The view's current state as a static plotly figure."""
        raise NotImplementedError

    def save(self, stem: str | Path, png: bool = True) -> list[Path]:
        """Write the view's static figure as HTML (and PNG): see :func:`save_figure`."""
        return save_figure(self.figure(), stem, png)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


__all__ = ["View", "changed_weights", "html_table", "live", "replace_figure", "save_figure", "weights_state"]
