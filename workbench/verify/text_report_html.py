"""A :class:`~workbench.verify.text_report.TextReport` as HTML: a fragment for notebooks and a standalone page.

The page is the world report's frame (:func:`~workbench.verify.report_html.html_page`) without
figures, so it holds no script to fetch and opens offline; the report's JSON (strict: no NaN)
rides along in ``<script type="application/json" id="report">``.
"""

from __future__ import annotations

import html
import json

from workbench.core.strict_json import strict_json
from workbench.verify.report_html import STYLE, format_number, html_page, html_table, status_cell, verdict_badge
from workbench.verify.text_checks import measured_rows

ITEM_NAMES = (
    ("forget", "forget"),
    ("retain", "retain"),
    ("holdout", "held-out"),
    ("choices", "multiple-choice"),
    ("with_perturbed_answers", "forget items with perturbed answers"),
)


def answered_text(c) -> str:
    """A check's answered items beside the reference's, e.g. "3/30 vs 1", or "3/30" with no reference.

    Examples:
        >>> from workbench.verify.verdict import CheckResult
        >>> answered_text(CheckResult("answers", "surface", 0.1, 0.03, 1.0, 3, 1, 30, 0.2, "consistent"))
        '3/30 vs 1'
        >>> answered_text(CheckResult("membership AUC", "membership", 0.5, 0.5, None, None, None, None, 1.0, "x"))
        '–'
    """
    if c.facts is None:
        return "–"
    return f"{c.recovered}/{c.facts}" + ("" if c.retain_recovered is None else f" vs {c.retain_recovered}")


def _items(counts: dict) -> str:
    parts = [f"{counts[k]} {name}" for k, name in ITEM_NAMES if counts.get(k)]
    return ", ".join(parts) + " items" if parts else "no items"


def _bullets(title: str, lines: list[str]) -> str:
    if not lines:
        return ""
    return f"<p>{html.escape(title)}</p><ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in lines) + "</ul>"


def text_report_table(report) -> str:
    """The report as an HTML fragment: verdict and reason, checks, measured figures, what it cannot conclude.

    Examples:
        >>> from workbench.verify.text_report import TextReport
        >>> r = TextReport("m", None, "undecided", "no reference model", [], {}, None, ["forget quality"])
        >>> fragment = text_report_table(r)
        >>> "undecided" in fragment, "Cannot conclude" in fragment
        (True, True)

    Args:
        report: A :class:`~workbench.verify.text_report.TextReport`.
    """
    baseline = (
        f"{report.reference}, the reference model trained without the forget set"
        if report.reference
        else "no reference model (no verdict: compared with the original model only, where one was given)"
    )
    out = [
        STYLE,
        '<div class="wb-report">',
        f"<p>{verdict_badge(report.verdict)} forget texts on <b>{html.escape(report.model)}</b>: "
        f"{html.escape(report.reason)}</p>",
        f"<p>Baseline: {html.escape(baseline)}. Read: {html.escape(_items(report.items))}.</p>",
    ]
    if report.forget_quality is not None:
        fq = format_number(report.forget_quality)
        out.append(f"<p>Forget quality (KS p-value of the truth ratios against the reference's): {fq}.</p>")
    if report.checks:
        head = ["check", "kind", "edited", "original", "reference", "items answered", "p (Holm)", "status"]
        rows = [
            [c.check, c.group, c.edited, c.original, c.retain, answered_text(c), c.p_value, status_cell(c.status)]
            for c in report.checks
        ]
        out.append(html_table(head, rows))
    measured = measured_rows(report.states)
    if measured:
        rows = [[r["check"], r["group"], r["edited"], r["original"], r["reference"]] for r in measured]
        out.append(html_table(["measured (not tested)", "set", "edited", "original", "reference"], rows))
    out.append(_bullets("Cannot conclude:", list(report.cannot_conclude)))
    out.append(_bullets("Caveats:", list(report.caveats)))
    if report.still_answered:
        rows = [[i["question"], i["answer"], i["edited"], i["reference"]] for i in report.still_answered]
        out.append(
            "<p>Forget items the edited model still answers and the reference does not:</p>"
            + html_table(["question", "answer", "edited model's answer", "reference's answer"], rows)
        )
    out.append("</div>")
    return "".join(out)


def text_report_page(report) -> str:
    """A standalone HTML page of the report, with its JSON embedded; nothing is fetched when it opens.

    Examples:
        >>> from workbench.verify.text_report import TextReport
        >>> r = TextReport("m", None, "undecided", "no reference model", [], {}, float("nan"), ["forget quality"])
        >>> page = text_report_page(r)
        >>> page.startswith("<!DOCTYPE html>"), "NaN" in page, "<script src" in page
        (True, False, False)

    Args:
        report: A :class:`~workbench.verify.text_report.TextReport`.
    """
    data = json.dumps(strict_json(report.to_dict()), allow_nan=False)
    return html_page(f"Forget texts: {report.model}", text_report_table(report), data)


__all__ = ["answered_text", "text_report_page", "text_report_table"]
