"""A verification Report as HTML: a table for notebooks, plotly figures, and a standalone page.

The page inlines plotly.js once, so it opens offline, and carries the whole report as JSON in a
``<script type="application/json" id="report">`` element for anyone who wants the numbers back.
"""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from workbench.verify.report_sections import RewriteFigures
from workbench.verify.verdict import CheckResult

COLOURS = {
    "removed": "#1a7f37",
    "rewritten": "#1a7f37",
    "suppressed": "#b35900",
    "partly rewritten": "#b35900",
    "not forgotten": "#c0392b",
    "not rewritten": "#c0392b",
}
STATES = (("edited", "#c0392b"), ("original", "#7f8c8d"), ("retain", "#1a7f37"))
STYLE = """<style>
.wb-report{font-family:system-ui,sans-serif;font-size:13px;max-width:1100px}
.wb-report table{border-collapse:collapse;margin:6px 0 14px}
.wb-report th,.wb-report td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}
.wb-report th:first-child,.wb-report td:first-child{text-align:left}
.wb-verdict{display:inline-block;color:#fff;padding:3px 10px;border-radius:4px;font-weight:600}
.wb-status-recovered,.wb-status-old-returns{color:#c0392b;font-weight:600}
.wb-status-over-forgotten{color:#b35900}
</style>"""


def format_number(x) -> str:
    """A figure for a table cell: three decimals (three significant digits when tiny), a dash for none.

    Examples:
        >>> format_number(0.25), format_number(0.00012), format_number(None), format_number(float("nan"))
        ('0.250', '0.00012', '–', '–')
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1e-3 and x != 0 else f"{x:.3f}"
    return html.escape(str(x))


def html_table(head: list[str], rows: list[list]) -> str:
    """An HTML table: the head's names escaped, every cell a figure (:func:`format_number`) or :class:`Raw` markup.

    Examples:
        >>> html_table(["edited"], [[0.5]])
        '<table><thead><tr><th>edited</th></tr></thead><tbody><tr><td>0.500</td></tr></tbody></table>'
    """
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, Raw) else format_number(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


class Raw(str):
    """Markup that goes into a cell as it is."""


def status_cell(s: str) -> Raw:
    """A check's status as a cell, coloured by its class (``wb-status-recovered`` ...).

    Examples:
        >>> status_cell("over-forgotten")
        '<span class="wb-status-over-forgotten">over-forgotten</span>'
    """
    return Raw(f'<span class="wb-status-{html.escape(s.replace(" ", "-"))}">{html.escape(s)}</span>')


def report_table(report, max_items: int = 20) -> str:
    """The report as an HTML fragment: verdict, checks, people or requests, retained performance.

    Examples:
        >>> from workbench.verify.report_record import Report
        >>> from workbench.verify.report_sections import Baseline, VerdictSummary
        >>> r = Report("forget", "none", {}, "world", Baseline(None, "chance"),
        ...            VerdictSummary("removed", "no check recovers them", [], []))
        >>> "removed" in report_table(r)
        True
    """
    v = report.verdict
    out = [
        STYLE,
        '<div class="wb-report">',
        f"<p>{verdict_badge(v.overall)} "
        f"{html.escape(report.kind)} by <b>{html.escape(report.method)}</b> on {html.escape(report.model)}: "
        f"{html.escape(v.reason)}</p>",
        f"<p>Baseline: {html.escape(report.baseline.description)}.</p>",
    ]
    if v.caveats:
        out.append("<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in v.caveats) + "</ul>")
    if report.kind == "forget":
        head = ["check", "kind", "edited", "original", "retain model", "facts recovered", "p (Holm)", "status"]
        rows = [
            [c.check, c.group, c.edited, c.original, c.retain, counts_text(c), c.p_value, status_cell(c.status)]
            for c in report.checks
        ]
        items = [[i.item, i.facts, status_cell(i.verdict), "; ".join(i.evidence) or "–"] for i in v.items]
        item_head = ["person", "facts", "verdict", "evidence"]
    else:
        head = [
            "check",
            "kind",
            "old object first (edited)",
            "old first (original)",
            "new object first",
            "old object's mean rank",
            "status",
        ]
        rows = [
            [c.check, c.group, c.edited, c.original, c.new_first, c.old_mean_rank, status_cell(c.status)]
            for c in report.checks
        ]
        items = [
            [
                f"{i.subject} / {i.relation}",
                f"{i.old} → {i.new}",
                status_cell(i.verdict),
                ", ".join(i.old_returns_under) or "–",
            ]
            for i in v.items
        ]
        item_head = ["fact", "rewrite", "verdict", "old object returns under"]
    out.append(html_table(head, rows))
    if items:
        more = f"<p>… and {len(items) - max_items} more (see the JSON).</p>" if len(items) > max_items else ""
        out.append(html_table(item_head, items[:max_items]) + more)
    if report.rewrite:
        out.append(_rewrite_table(report.rewrite))
    if report.retained:
        r = report.retained
        out.append(
            html_table(
                ["retained performance", "before", "after", "retain model"],
                [
                    ["accuracy on retained facts", r.accuracy_before, r.accuracy_after, r.accuracy_retain_model],
                    ["model utility", r.utility_before, r.utility_after, r.utility_retain_model],
                    ["held-out loss", r.heldout_loss_before, r.heldout_loss_after, None],
                ],
            )
        )
    st = report.states.by_name()
    if st:
        out.append(
            html_table(
                ["membership inference AUC", *st],
                [
                    ["Min-K%++ (the verdict's)", *(x.mia_auc for x in st.values())],
                    ["Min-K%", *(x.mia_auc_min_k for x in st.values())],
                ],
            )
        )
    if report.collateral:
        g = report.collateral.groups
        out.append(
            html_table(
                ["collateral group", "facts", "mean P before", "after", "accuracy before", "after"],
                [
                    [k, x.n, x.prob_before, x.prob_after, x.accuracy_before, x.accuracy_after]
                    for k, x in g.items()
                    if x.n
                ],
            )
            + f"<p>Next-token KL on other people's prompts: {format_number(report.collateral.kl)} nats.</p>"
        )
    if report.not_guaranteed:
        out.append(
            "<p>Not guaranteed:</p><ul>"
            + "".join(f"<li>{html.escape(t)}</li>" for t in report.not_guaranteed)
            + "</ul>"
        )
    out.append("</div>")
    return "".join(out)


def verdict_badge(verdict: str) -> str:
    """The verdict as a coloured label: green removed or rewritten, orange suppressed, red not forgotten, grey else.

    Examples:
        >>> verdict_badge("removed")
        '<span class="wb-verdict" style="background:#1a7f37">removed</span>'
    """
    colour = COLOURS.get(verdict, "#555")
    return f'<span class="wb-verdict" style="background:{colour}">{html.escape(verdict)}</span>'


def counts_text(c: CheckResult | dict) -> str:
    """A check's recovered facts beside the baseline's, e.g. "3/90 vs 6" (or "vs chance").

    Examples:
        >>> counts_text(CheckResult("surface", "surface", 0.1, 0.07, 1.0, 3, 6, 90, 0.2, "consistent"))
        '3/90 vs 6'
        >>> counts_text({"check": "surface", "group": "surface", "edited": 0.1, "retain": None, "original": 1.0,
        ...              "recovered": 3, "retain_recovered": None, "facts": 90, "p_value": 0.01, "status": "recovered"})
        '3/90 vs chance'

    Args:
        c: A forgetting check: its record, or its row of the report's JSON.
    """
    if isinstance(c, dict):
        c = CheckResult(**c)
    if c.facts is None:
        return "–"
    ref = "chance" if c.retain_recovered is None else c.retain_recovered
    return f"{c.recovered}/{c.facts} vs {ref}"


def _rewrite_table(rw: RewriteFigures) -> str:
    rows = []
    for state, s in (("edited", rw.edited), ("original", rw.original)):
        if s is None:
            continue
        cf, g = s.counterfact, s.generation
        rows.append([state, cf.efficacy.prob, cf.paraphrase.prob, cf.neighbourhood.prob, s.old_mass, g.new, g.old])
    return html_table(
        ["model", "efficacy", "paraphrase", "neighbourhood", "P(old object)", "greedy: new", "greedy: old"], rows
    )


def report_figures(report) -> dict[str, go.Figure]:
    """The report's figures: every check's figure per model, lens and probe by layer, truth ratios, collateral.

    Examples:
        >>> from workbench.verify.report_record import Report
        >>> from workbench.verify.report_sections import Baseline, VerdictSummary
        >>> surface = CheckResult("surface", "surface", 0.1, 0.07, 1.0, 0, 1, 18, 1.0, "consistent")
        >>> r = Report("forget", "none", {}, "world", Baseline(None, "chance"),
        ...            VerdictSummary("removed", "", [], []), [surface])
        >>> list(report_figures(r))
        ['checks']
    """
    figs = {}
    label = "true object first" if report.kind == "forget" else "old object first"
    # Distribution checks (forget quality, membership AUC) count no facts and are no fraction of prompts.
    checks = [c for c in report.checks if report.kind == "rewrite" or c.facts is not None]
    if checks:
        fig = go.Figure()
        for state, colour in STATES:
            ys = [getattr(c, state) for c in checks]
            if any(y is not None for y in ys):
                fig.add_bar(name=state, x=[c.check for c in checks], y=ys, marker_color=colour)
        fig.update_layout(
            barmode="group",
            title=f"Fraction of prompts with the {label}, per check",
            yaxis_title=label,
            height=380,
            margin=dict(t=50, b=80),
        )
        figs["checks"] = fig
    states = report.states.by_name()
    if any(s.probe for s in states.values()):
        fig = go.Figure()
        for state, colour in STATES:
            s = states.get(state)
            if s is None:
                continue
            for reader, dash in (("lens", "dot"), ("probe", "solid")):
                by_check = getattr(s, reader)
                fig.add_scatter(
                    x=[int(n.split("L")[-1]) for n in by_check],
                    y=list(by_check.values()),
                    mode="lines+markers",
                    name=f"{reader}, {state}",
                    line=dict(color=colour, dash=dash),
                )
        fig.update_layout(
            title="Reading the forgotten objects from hidden states, by layer",
            xaxis_title="layer",
            xaxis_dtick=1,
            yaxis_title="accuracy",
            height=360,
        )
        figs["layers"] = fig
    if report.kind == "forget" and states:
        fig = go.Figure()
        for state, colour in STATES:
            s = states.get(state)
            if s is not None:
                fig.add_histogram(
                    x=[math.log10(max(r, 1e-30)) for r in s.truth_ratios],
                    name=state,
                    marker_color=colour,
                    opacity=0.6,
                    nbinsx=40,
                )
        fig.update_layout(
            barmode="overlay",
            title="Truth ratios on held-out phrasings (log10; 0: true and wrong level)",
            xaxis_title="log10 truth ratio",
            height=340,
        )
        figs["truth_ratios"] = fig
    if report.collateral:
        g = {k: x for k, x in report.collateral.groups.items() if x.n}
        fig = go.Figure(
            [
                go.Bar(name="before", x=list(g), y=[x.prob_before for x in g.values()], marker_color="#7f8c8d"),
                go.Bar(name="after", x=list(g), y=[x.prob_after for x in g.values()], marker_color="#c0392b"),
            ]
        )
        fig.update_layout(barmode="group", title="Collateral damage: mean P(true object) by group", height=340)
        figs["collateral"] = fig
    return figs


def report_page(report) -> str:
    """A standalone HTML page: the table, then every figure; plotly.js inlined once, the JSON embedded."""
    figs = report_figures(report)
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figs.values())]
    return html_page(
        f"Verification: {report.method} on {report.model}",
        report_table(report, max_items=1000) + "".join(parts),
        report.to_json(indent=None),
    )


def html_page(title: str, body: str, data: str) -> str:
    """A standalone page: ``body`` as it is, then ``data`` (JSON text) in ``<script id="report">``.

    Examples:
        >>> page = html_page("Verification", "<p>removed</p>", '{"verdict": "removed"}')
        >>> page.startswith("<!DOCTYPE html>"), '<script type="application/json" id="report">{"verdict"' in page
        (True, True)
    """
    data = data.replace("</", "<\\/")  # a "</script>" inside the JSON must not end the element
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        + body
        + f'<script type="application/json" id="report">{data}</script></body></html>'
    )


__all__ = [
    "STYLE",
    "Raw",
    "counts_text",
    "format_number",
    "html_page",
    "html_table",
    "report_figures",
    "report_page",
    "report_table",
    "status_cell",
    "verdict_badge",
]
