"""Verification report view: the verdict, every check beside its baseline, and the evidence behind it.

:func:`workbench.verify.verify` returns a :class:`~workbench.verify.report.Report`. Here its
table (verdict, checks with the edited, original and retain model's figures, the people or
requests and what decided each, retained performance, collateral damage, what is not
guaranteed) sits above one of its figures, picked with buttons; a drop-down shows the
evidence for one person (or rewrite request) at a time.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go

from workbench.verify.report_html import report_figures, report_table
from workbench.verify.report_sections import RequestVerdict
from workbench.verify.verdict import ItemVerdict
from workbench.widgets.view import View, html_table, live, replace_figure


def item_html(report, name: str) -> str:
    """The verdict on one person (or rewrite request) and the checks that decided it.

    Examples:
        >>> from workbench.verify.report_record import Report
        >>> from workbench.verify.report_sections import Baseline, VerdictSummary
        >>> from workbench.verify.verdict import ItemVerdict
        >>> item = ItemVerdict("Ann Lee", 6, "suppressed", ["probe L0: 6 of 6 facts"])
        >>> r = Report("forget", "rmu", {}, "world", Baseline(None, "chance"),
        ...            VerdictSummary("suppressed", "", [], [item]))
        >>> "<td>probe L0</td><td>6 of 6 facts</td>" in item_html(r, "Ann Lee")
        True
    """
    item = next(i for i in report.verdict.items if _name(i) == name)
    if isinstance(item, ItemVerdict):
        rows = [{"check": e.split(":")[0], "evidence": e.split(": ", 1)[1]} for e in item.evidence]
        detail = html_table(rows, ["check", "evidence"]) if rows else "<p>No check recovers this person's facts.</p>"
        return f"<p><b>{html.escape(name)}</b>: {html.escape(item.verdict)} ({item.facts} facts)</p>{detail}"
    back = ", ".join(item.old_returns_under) or "no check"
    return (
        f"<p><b>{html.escape(name)}</b>: {html.escape(item.old)} → {html.escape(str(item.new))}, "
        f"{html.escape(item.verdict)}; the old object comes back first under {html.escape(back)}.</p>"
    )


def _name(item: ItemVerdict | RequestVerdict) -> str:
    return item.item if isinstance(item, ItemVerdict) else f"{item.subject} / {item.relation}"


class ReportView(View):
    """A verification Report in JupyterLab: its table, a figure chosen with buttons, one item's evidence.

    Examples:
        >>> from workbench.verify.report_record import Report
        >>> from workbench.verify.report_sections import Baseline, VerdictSummary
        >>> from workbench.verify.verdict import CheckResult
        >>> surface = CheckResult("surface", "surface", 0.1, 0.07, 1.0, 0, 1, 18, 1.0, "consistent")
        >>> r = Report("forget", "none", {}, "world", Baseline(None, "chance"),
        ...            VerdictSummary("removed", "", [], []), [surface])
        >>> v = ReportView(r)
        >>> v.chooser.options, v.show("checks").layout.title.text.startswith("Fraction")
        (('checks',), True)

    Args:
        report: From :func:`workbench.verify.verify`.
    """

    def __init__(self, report):
        import ipywidgets as w

        self.report = report
        self.figures = report_figures(report)
        self.shown = next(iter(self.figures), None)
        self.table = w.HTML(report_table(report))
        self.chooser = w.ToggleButtons(options=list(self.figures), value=self.shown)
        self.chooser.observe(lambda ch: self.show(ch["new"]), "value")
        self.plot = live(self.figures[self.shown]) if self.shown else w.HTML("<p>No figures.</p>")
        names = [_name(i) for i in report.verdict.items]
        self.items = w.Dropdown(
            options=names,
            value=names[0] if names else None,
            description="person" if report.kind == "forget" else "request",
        )
        self.evidence = w.HTML(item_html(report, names[0]) if names else "")
        self.items.observe(lambda ch: self.select(ch["new"]), "value")
        self.widget = w.VBox([self.table, self.chooser, self.plot, self.items, self.evidence])
        self.widget.add_class("wb-report-view")

    def show(self, name: str) -> go.FigureWidget:
        """Put the figure ``name`` ("checks", "layers", "truth_ratios", "collateral") in the plot."""
        if name not in self.figures:
            raise KeyError(f"no figure {name!r}: choose from {', '.join(self.figures)}")
        self.shown = name
        if self.chooser.value != name:
            self.chooser.value = name
        return replace_figure(self.plot, self.figures[name])

    def select(self, name: str) -> str:
        """Show the evidence for one person (or rewrite request); returns its HTML."""
        self.evidence.value = item_html(self.report, name)
        return self.evidence.value

    def figure(self) -> go.Figure:
        """The figure shown, as a static plotly figure (the full page is ``report.to_html()``)."""
        return self.figures[self.shown]


__all__ = ["ReportView", "item_html"]
