"""Verify a rewrite on a model without a fact world, from the requests' own prompts.

A rewrite patch made from CounterFact, zsRE or plain request files carries, per request, the
edit prompt, its paraphrases and its neighbourhood prompts (:class:`edit.request.Request`).
That is all :func:`verify_rewrite_texts` needs. It reads, on the edited model and on the model
with the edit reverted:

* CounterFact's efficacy, paraphrase and neighbourhood scores
  (:func:`edit.counterfact.score_requests`), the old object's probability and greedy generation
  (:func:`~workbench.verify.rewrite.surface_figures`);
* per request, where the old object still ranks above the new one: on most of its paraphrases,
  in the greedy answers to its prompts, and on the edit prompt of a round-to-nearest int8 and
  int4 copy of the edited model (:mod:`~workbench.verify.quantise`), where an edit that only
  nudged the weights can round away.

A request is *rewritten* when its edit prompt gives the new object and no check brings the old
one back, *partly rewritten* when some check does, *not rewritten* otherwise
(:func:`~workbench.verify.rewrite.overall_rewrite`). No model was trained on the new fact, so
the original model is the only baseline; the report says what that leaves open.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from edit.request import Request
from workbench.core.metrics import candidate_logprobs
from workbench.core.sites import UnsupportedArchitecture
from workbench.core.strict_json import strict_json
from workbench.verify.quantise import QuantiseSettings, quantised
from workbench.verify.report import VerifyError
from workbench.verify.rewrite import greedy_matches, overall_rewrite, requests_of, surface_figures
from workbench.verify.rewrite_texts_html import rewrite_report_page, rewrite_report_table

CANNOT_CONCLUDE = [
    "whether the old fact is gone from the weights or only outranked: no model trained on the new fact exists "
    "to compare with, so every figure is set against the unedited model",
]


@dataclass(frozen=True)
class RewriteTextSettings:
    """What :func:`verify_rewrite_texts` reads.

    Examples:
        >>> RewriteTextSettings().quantise_bits
        (8, 4)

    Args:
        quantise_bits: Bit widths of the round-to-nearest copies whose edit prompts are read.
        majority: The old object "returns" under a check when it ranks above the new one on
            more than this fraction of the check's prompts.
    """

    quantise_bits: tuple[int, ...] = (8, 4)
    majority: float = 0.5


@dataclass
class RewriteTextReport:
    """What :func:`verify_rewrite_texts` found.

    Examples:
        >>> r = RewriteTextReport("m", "rewritten", "1 of 1 requests rewritten", [], {}, {})
        >>> r.to_dict()["kind"], r.verdict
        ('rewrite requests', 'rewritten')

    Attributes:
        model: The model verified.
        verdict: "rewritten", "partly rewritten" or "not rewritten".
        reason: One sentence with the counts.
        requests: Per request: subject, prompt, old, new, verdict, old_returns_under.
        states: "edited" and "original": CounterFact scores, old-object mass, generation.
        checks: Per check, the fraction of requests whose old object returns under it.
        cannot_conclude, caveats: What the report does not establish, and what to keep in mind.
        settings, seconds: The settings used, and wall time.
    """

    model: str
    verdict: str
    reason: str
    requests: list[dict] = field(default_factory=list)
    states: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)
    cannot_conclude: list[str] = field(default_factory=lambda: list(CANNOT_CONCLUDE))
    caveats: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The report as JSON-able values (NaN as None)."""
        return strict_json({"kind": "rewrite requests", **asdict(self)})

    def to_html(self) -> str:
        """A standalone HTML page of the report, offline (:mod:`~workbench.verify.rewrite_texts_html`)."""
        return rewrite_report_page(self)

    def write_html(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path``; returns the path."""
        path = Path(path)
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        return rewrite_report_table(self)

    def __repr__(self) -> str:
        return f"RewriteTextReport({self.model}: {self.verdict}; {self.reason})"


def old_first(handle, requests: Sequence[Request], prompts_of) -> list[list[bool]]:
    """Per request, per prompt of ``prompts_of(request)``: does the old object outrank the new one?

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world")
        >>> p = list(h.world.people)[0]
        >>> new = "cat" if h.world.fact(p, "pet").object != "cat" else "dog"
        >>> old_first(h, [world_request(h.world, p, "pet", new)], lambda r: [r.prompt])  # no edit yet
        [[True]]
    """
    out = []
    for r in requests:
        prompts = list(prompts_of(r))
        if not prompts:
            out.append([])
            continue
        lp = candidate_logprobs(handle.model, handle.tokenizer, prompts, [r.true_object, r.new_object])
        out.append((lp[:, 0] > lp[:, 1]).tolist())
    return out


def _per_request(hits: list[bool], requests: Sequence[Request]) -> list[list[bool]]:
    """Per-prompt flags in :func:`~workbench.verify.rewrite.greedy_matches`' order, grouped by request."""
    it = iter(hits)
    return [[next(it) for _ in (r.prompt, *r.paraphrases)] for r in requests]


def _returns(hits: list[bool], majority: float) -> bool:
    return bool(hits) and sum(hits) / len(hits) > majority


@torch.no_grad()
def verify_rewrite_texts(handle, edit, settings: RewriteTextSettings | None = None) -> RewriteTextReport:
    """Verify an applied rewrite Edit from its requests' prompts alone: did it take, and does the old object return?

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> from edit.rome import RomeSettings, rome
        >>> h = workbench.load("world")
        >>> p = list(h.world.people)[0]
        >>> new = "cat" if h.world.fact(p, "pet").object != "cat" else "dog"
        >>> e = rome(h, world_request(h.world, p, "pet", new), settings=RomeSettings(layer=0, token="last"))
        >>> r = verify_rewrite_texts(h, e, RewriteTextSettings(quantise_bits=(8,)))
        >>> r.verdict, r.states["edited"]["counterfact"]["efficacy"]["accuracy"]
        ('rewritten', 1.0)
        >>> _ = e.revert(h.model)

    Args:
        handle: The model with ``edit`` applied.
        edit: A ROME or MEMIT rewrite :class:`~edit.edit.Edit` (from a patch file or a call).
        settings: :class:`RewriteTextSettings`.

    Raises:
        VerifyError: the edit holds no rewrite, or only erasures.
    """
    s = settings or RewriteTextSettings()
    t0 = time.perf_counter()
    requests = requests_of(edit.request)
    if not requests:
        raise VerifyError("the edit holds no rewrite request: verify forgetting with --forget FILE --retain FILE")
    if any(r.erase for r in requests):
        raise VerifyError("the edit erases facts: verify forgetting with --forget FILE --retain FILE")
    matches = greedy_matches(handle, requests)  # read once: for the figures and per request
    states = {"edited": surface_figures(handle, requests, matches)}
    edit.revert(handle.model)
    try:
        states["original"] = surface_figures(handle, requests)
    finally:
        edit.apply(handle.model)
    under: dict[str, list[bool]] = {
        "paraphrases": [_returns(h, s.majority) for h in old_first(handle, requests, lambda r: r.paraphrases)],
        "generation": [_returns(h, s.majority) for h in _per_request(matches[2], requests)],
    }
    caveats = []
    if not any(r.paraphrases for r in requests):
        caveats.append("no request has paraphrases: generalisation beyond the edit prompt is not measured")
    for bits in s.quantise_bits:
        try:
            q = quantised(handle, QuantiseSettings(bits=bits))
        except UnsupportedArchitecture as e:
            caveats.append(f"int{bits}: not run ({e})")
            continue
        under[f"int{bits}"] = [h[0] for h in old_first(q, requests, lambda r: [r.prompt])]
        del q
    efficacy = states["edited"]["efficacy"]
    rows = []
    for i, r in enumerate(requests):
        back = [check for check, hits in under.items() if hits[i]]
        verdict = "not rewritten" if not efficacy[i] else "partly rewritten" if back else "rewritten"
        rows.append(
            {
                "subject": r.subject,
                "prompt": r.prompt,
                "old": r.true_object,
                "new": r.new_object,
                "verdict": verdict,
                "old_returns_under": back,
            }
        )
    overall, reason = overall_rewrite(rows)
    checks = {c: {"old_returns": sum(hits) / len(hits)} for c, hits in under.items()}
    return RewriteTextReport(
        handle.name,
        overall,
        reason,
        rows,
        states,
        checks,
        caveats=caveats,
        settings=asdict(s),
        seconds=time.perf_counter() - t0,
    )


__all__ = ["CANNOT_CONCLUDE", "RewriteTextReport", "RewriteTextSettings", "old_first", "verify_rewrite_texts"]
