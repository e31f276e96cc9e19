"""A :class:`~workbench.verify.rewrite_texts.RewriteTextReport` as HTML: a fragment for notebooks and a standalone page.

The same frame as the other reports (:func:`~workbench.verify.report_html.html_page`), without
figures: the page fetches nothing and carries the report's strict JSON.
"""

from __future__ import annotations

import html
import json

from workbench.core.strict_json import strict_json
from workbench.verify.report_html import STYLE, html_page, html_table, status_cell, verdict_badge

SCORES = ("efficacy", "paraphrase", "neighbourhood")


def rewrite_report_table(report) -> str:
    """The report as an HTML fragment: verdict, scores before and after, the checks, the requests not rewritten.

    Examples:
        >>> from workbench.verify.rewrite_texts import RewriteTextReport
        >>> fragment = rewrite_report_table(RewriteTextReport("m", "rewritten", "1 of 1 requests rewritten"))
        >>> "rewritten" in fragment, "Cannot conclude" in fragment
        (True, True)
    """
    out = [
        STYLE,
        '<div class="wb-report">',
        f"<p>{verdict_badge(report.verdict)} rewrite on <b>{html.escape(report.model)}</b>: "
        f"{html.escape(report.reason)}</p>",
        "<p>Baseline: the model with the edit reverted (no model was trained on the new facts).</p>",
    ]
    states = report.states
    if states:
        rows = [
            [f"{k} (probability)", *(states[s]["counterfact"][k]["prob"] for s in ("edited", "original"))]
            for k in SCORES
            if states["edited"]["counterfact"][k]["n"]
        ]
        rows += [
            [
                f"greedy answer gives the {which} object",
                *(states[s]["generation"][which] for s in ("edited", "original")),
            ]
            for which in ("new", "old")
        ]
        rows.append(["P(old object)", states["edited"]["old_mass"], states["original"]["old_mass"]])
        out.append(html_table(["score", "edited", "original"], rows))
    if report.checks:
        rows = [[c, v["old_returns"]] for c, v in report.checks.items()]
        out.append(html_table(["check", "requests whose old object returns"], rows))
    flagged = [r for r in report.requests if r["verdict"] != "rewritten"]
    if flagged:
        rows = [
            [
                r["subject"],
                r["prompt"],
                r["old"],
                r["new"],
                status_cell(r["verdict"]),
                ", ".join(r["old_returns_under"]),
            ]
            for r in flagged
        ]
        out.append(html_table(["subject", "prompt", "old", "new", "verdict", "old object returns under"], rows))
    for title, lines in (("Cannot conclude:", report.cannot_conclude), ("Caveats:", report.caveats)):
        if lines:
            out.append(f"<p>{title}</p><ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in lines) + "</ul>")
    out.append("</div>")
    return "".join(out)


def rewrite_report_page(report) -> str:
    """A standalone HTML page of the report with its JSON embedded; nothing is fetched when it opens.

    Examples:
        >>> from workbench.verify.rewrite_texts import RewriteTextReport
        >>> page = rewrite_report_page(RewriteTextReport("m", "rewritten", "1 of 1 requests rewritten"))
        >>> page.startswith("<!DOCTYPE html>"), "<script src" in page
        (True, False)
    """
    data = json.dumps(strict_json(report.to_dict()), allow_nan=False)
    return html_page(f"Rewrite: {report.model}", rewrite_report_table(report), data)


__all__ = ["rewrite_report_page", "rewrite_report_table"]
