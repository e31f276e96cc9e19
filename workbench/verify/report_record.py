"""The verification Report: what :func:`~workbench.verify.report.verify` found, section by section.

Each section is a record of :mod:`~workbench.verify.report_sections`. The Report renders as a
table in a notebook, serialises to JSON (and reads back from it), and writes a standalone HTML
page with plotly figures (:mod:`~workbench.verify.report_html`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from workbench.verify.collateral import Collateral
from workbench.verify.report_html import report_figures, report_page, report_table
from workbench.verify.report_sections import (
    Baseline,
    Retained,
    RewriteCheck,
    RewriteFigures,
    States,
    VerdictSummary,
    check_from_dict,
    collateral_from_dict,
)
from workbench.verify.verdict import CheckResult


@dataclass
class Report:
    """What verification found about one edit, every figure beside its baseline.

    Each section is a record of :mod:`~workbench.verify.report_sections`, read by attribute
    (``report.states.edited.utility.accuracy``); :meth:`to_dict` and :meth:`to_json` give the
    report's JSON, which :meth:`from_dict` and :meth:`from_json` read back. As in every report's
    JSON (:class:`~workbench.verify.text_report.TextReport`'s too), ``"verdict"`` is the one word
    and ``"reason"`` its sentence; ``"verdict_details"`` holds the caveats, items and tolerances.

    Examples:
        >>> r = Report("forget", "none", {}, "world", Baseline(None, "chance"),
        ...            VerdictSummary("removed", "no check recovers them", [], []))
        >>> r.verdict.overall, Report.from_json(r.to_json()) == r, r.to_dict()["verdict"]
        ('removed', True, 'removed')

    Attributes:
        kind: "forget" or "rewrite".
        method: The edit's method ("ssd", "rome", ...; "none" for a model verified as it is).
        request: The edit's request (JSON).
        model: The model verified.
        baseline: What the figures are compared with: the retain model or None, in words.
        verdict: Overall, why, caveats, and the items (per person, or per rewrite request).
        checks: One row per check: :class:`~workbench.verify.verdict.CheckResult` when forgetting,
            :class:`~workbench.verify.report_sections.RewriteCheck` when rewriting.
        states: Per model state (edited, original, retain): utility, held-out loss, membership
            AUC (Min-K%++, which the verdict uses, and Min-K%), per-layer lens and probe accuracy,
            truth ratios.
        rewrite: For rewrites: CounterFact scores, old-object mass and generation, edited and original.
        collateral: :class:`~workbench.verify.collateral.Collateral`, or None.
        retained: Retained performance before and after (accuracy, held-out loss, utility); None
            only in a report built by hand (then ``{}`` in the JSON).
        not_guaranteed: What the report does not establish.
        settings: The settings used (:class:`~workbench.verify.report.VerifySettings` as a dict);
            seconds: wall time.
    """

    kind: str
    method: str
    request: dict
    model: str
    baseline: Baseline
    verdict: VerdictSummary
    checks: list[CheckResult] | list[RewriteCheck] = field(default_factory=list)
    states: States = field(default_factory=States)
    rewrite: RewriteFigures | None = None
    collateral: Collateral | None = None
    retained: Retained | None = None
    not_guaranteed: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "method": self.method,
            "request": copy.deepcopy(self.request),
            "model": self.model,
            "baseline": self.baseline.to_dict(),
            "verdict": self.verdict.overall,
            "reason": self.verdict.reason,
            "verdict_details": self.verdict.to_dict(),
            "checks": [asdict(c) for c in self.checks],
            "states": self.states.to_dict(),
            "rewrite": None if self.rewrite is None else self.rewrite.to_dict(),
            "collateral": None if self.collateral is None else copy.deepcopy(self.collateral.to_dict()),
            "retained": {} if self.retained is None else self.retained.to_dict(),
            "not_guaranteed": list(self.not_guaranteed),
            "settings": copy.deepcopy(self.settings),
            "seconds": self.seconds,
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_jsonable)

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        """The Report whose :meth:`to_dict` is ``d`` (a report's JSON, read back)."""
        return cls(
            d["kind"],
            d["method"],
            dict(d["request"]),
            d["model"],
            Baseline.from_dict(d["baseline"]),
            # Reports written before the verdict became one word held its details under "verdict".
            VerdictSummary.from_dict(d["verdict_details"] if "verdict_details" in d else d["verdict"]),
            [check_from_dict(c) for c in d["checks"]],
            States.from_dict(d["states"]),
            None if d["rewrite"] is None else RewriteFigures.from_dict(d["rewrite"]),
            None if d["collateral"] is None else collateral_from_dict(d["collateral"]),
            Retained.from_dict(d["retained"]) if d["retained"] else None,
            list(d["not_guaranteed"]),
            dict(d["settings"]),
            d["seconds"],
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))

    def table(self) -> list[dict]:
        """The check rows: check, group, edited, original, retain, status."""
        return [
            {k: getattr(c, k) for k in ("check", "group", "edited", "original", "retain", "status")}
            for c in self.checks
        ]

    def to_html(self) -> str:
        """A standalone HTML page with the verdict, every check and the figures (plotly.js inlined)."""
        return report_page(self)

    def write_html(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def figures(self) -> dict:
        """The report's plotly figures by name (checks, layers, truth ratios, collateral)."""
        return report_figures(self)

    def _repr_html_(self) -> str:
        return report_table(self)

    def __repr__(self) -> str:
        return f"Report({self.kind} by {self.method} on {self.model}: {self.verdict.overall}; {self.verdict.reason})"


def _jsonable(x: Any):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return str(x)


__all__ = ["Report"]
