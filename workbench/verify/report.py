"""One call to verify an edit: every check, on the edited model, the original, and the exact answer.

:func:`verify` takes an :class:`~edit.edit.Edit` (applied or not; or anything with ``applied``
and ``applied_to(model)``, such as the constructed suppression) and returns a :class:`Report`:

* forgetting (an unlearning edit, an erase, or ``edit=None`` to verify the model as it is): every
  check of :mod:`~workbench.verify.readings` plus TOFU's forget quality and the Min-K%++
  membership AUC, each on the edited model, the original and the retain model (a shipped
  model trained without the forgotten people: the smallest forget split holding all of them),
  then the verdict of :mod:`~workbench.verify.verdict` per person and overall;
* rewriting (ROME, MEMIT): CounterFact's scores, the old object's probability, greedy
  generation, and where the old object ranks under every check, against the original model;
* for either: collateral damage by group (:mod:`~workbench.verify.collateral`), model
  utility on retained facts, and held-out loss, before and after.

The :class:`~workbench.verify.report_record.Report` holds one record per section
(:mod:`~workbench.verify.report_sections`); it renders as a table in a notebook, serialises to
JSON, and writes a standalone HTML page with plotly figures (:mod:`~workbench.verify.report_html`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from edit.edit_request import Forget, Mixed
from edit.forget_request import ForgetError, ForgetRequest, forget_request
from workbench.core.handle import load_shared
from workbench.core.world.facts import Fact
from workbench.core.world.registry import SHIPPED, resolve_world_model
from workbench.verify import readings_cache
from workbench.verify.collateral import CollateralSettings, collateral
from workbench.verify.ensemble import notes, reference_ensemble
from workbench.verify.membership import MembershipSettings, mia_auc, mia_texts
from workbench.verify.probe import ProbeSettings
from workbench.verify.readings import Readings, ReadSettings, group_of, object_columns, read
from workbench.verify.report_record import Report
from workbench.verify.report_sections import (
    Baseline,
    RequestVerdict,
    Retained,
    RewriteCheck,
    RewriteFigures,
    StateFigures,
    States,
    SurfaceFigures,
    VerdictSummary,
)
from workbench.verify.rewrite import overall_rewrite, request_verdicts, requests_of, surface_figures
from workbench.verify.truth_ratio import UtilitySettings, forget_quality, model_utility, ratios_of
from workbench.verify.verdict import CheckResult, Verdict, VerdictSettings, decide

NOT_GUARANTEED = [
    "Only the listed checks were run; a stronger attack (longer fine-tuning, other quantisers, "
    "white-box extraction) may recover what they miss.",
    "The verdict is a statistical statement at the stated family-wise error rate, not a proof; "
    "per-person tests rest on each person's few facts.",
    "It concerns the facts of the embedded world named in the request; knowledge outside them was "
    "measured only through the retained facts and held-out text sampled here.",
]


class VerifyError(ValueError):
    """A verification that cannot be run: no world, nothing to verify, a mixed request."""


@dataclass(frozen=True)
class VerifySettings:
    """How much every part of a report measures; defaults suit the world's splits on a laptop CPU.

    Examples:
        >>> VerifySettings().verdict.alpha, VerifySettings().utility.max_facts
        (0.05, 300)

    Args:
        read: The checks asked of every model (:class:`~workbench.verify.readings.ReadSettings`).
        verdict: Tolerances of the verdict (:class:`~workbench.verify.verdict.VerdictSettings`).
        collateral: Collateral damage (:class:`~workbench.verify.collateral.CollateralSettings`).
        utility: Model utility on retained facts (:class:`~workbench.verify.truth_ratio.UtilitySettings`).
        membership: Min-K%++ settings (:class:`~workbench.verify.membership.MembershipSettings`).
        heldout_texts: Held-out loss of every model state on a fixed sample of this many of the
            world's held-out sentences; None: all of them.
    """

    read: ReadSettings = field(default_factory=ReadSettings)
    verdict: VerdictSettings = field(default_factory=VerdictSettings)
    collateral: CollateralSettings = field(default_factory=CollateralSettings)
    utility: UtilitySettings = field(default_factory=UtilitySettings)
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    heldout_texts: int | None = None

    @classmethod
    def quick(cls) -> VerifySettings:
        """Fewer people to train probes on, fewer retained facts scored, held-out loss on a sample: a first look.

        Examples:
            >>> VerifySettings.quick().read.probe.train_people
            60
        """
        return cls(
            read=ReadSettings(probe=ProbeSettings(train_people=60)),
            utility=UtilitySettings(max_facts=60),
            collateral=CollateralSettings(max_facts=40, kl_prompts=64, heldout_texts=200),
            heldout_texts=500,
        )


@contextmanager
def _state(handle, edit, edited: bool) -> Iterator[None]:
    """The model with the edit applied (``edited``) or not, whatever state it came in; restored after."""
    if edit is None or edit.applied == edited:
        yield
    elif edited:
        with edit.applied_to(handle.model):
            yield
    else:
        edit.revert(handle.model)
        try:
            yield
        finally:
            edit.apply(handle.model)


def reference_model(world, people: Sequence[str]) -> str | None:
    """The shipped model trained without all of these people: the smallest forget split holding them.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> reference_model(w, w.split("forget01").forget[:1]), reference_model(w, [w.split("forget10").retain[0]])
        ('world:retain-forget01', None)
    """
    for name, split in sorted(world.splits.items(), key=lambda kv: len(kv[1].forget)):
        if f"retain-{name}" in SHIPPED and set(people) <= set(split.forget):
            return f"world:retain-{name}"
    return None


_SHIPPED_CACHE: dict[tuple, tuple] = {}


def _shipped_readings(name: str, facts: list[Fact], retain: list[Fact], s: VerifySettings, unseen=None) -> tuple:
    """Readings and figures of a shipped model as it ships; every check is deterministic, so they are kept.

    The retain model's are the same for every edit verified on a split, and so are the base
    model's (the "original" state of every edit made on it): in memory, and on disk
    (:mod:`~workbench.verify.readings_cache`) for later sessions.
    """
    question = (
        name,
        tuple(facts),
        tuple(retain),
        tuple((k, tuple(v)) for k, v in sorted((unseen or {}).items())),
        repr(s.read),
        repr(s.membership),
        repr(s.utility),
        s.heldout_texts,
    )
    if question not in _SHIPPED_CACHE:
        model = load_shared(name)
        key = readings_cache.entry_key(model.model, question)
        entry = readings_cache.load_entry(key, facts)
        if entry is None:
            entry = _measure(model, facts, retain, s, unseen)
            readings_cache.save_entry(key, *entry)
        _SHIPPED_CACHE[question] = entry
    return copy.deepcopy(_SHIPPED_CACHE[question])  # a report's figures are its own to change


def _shipped_as(handle) -> str | None:
    """The shipped world model whose weights the handle holds exactly, with no hooks, or None."""
    try:
        resolve_world_model(handle.name)
    except KeyError:
        return None
    ref = load_shared(handle.name)
    if handle.model is ref.model:
        return handle.name
    mine, theirs = dict(handle.model.named_parameters()), dict(ref.model.named_parameters())
    hooked = any(m._forward_hooks or m._forward_pre_hooks for m in handle.model.modules())
    same = (
        not hooked
        and mine.keys() == theirs.keys()
        and all(
            mine[k].device == theirs[k].device and mine[k].dtype == theirs[k].dtype and torch.equal(mine[k], theirs[k])
            for k in mine
        )
    )
    return handle.name if same else None


def _measure(handle, facts: list[Fact], retain: list[Fact], s: VerifySettings, unseen) -> tuple[Readings, dict]:
    readings = read(handle, facts, retain, s.read, unseen)
    forget_texts, holdout = mia_texts(handle.world, facts)
    lens = [c for c in readings.tables if c.startswith("lens")]
    probe = [c for c in readings.tables if c.startswith("probe")]
    figures = {
        "utility": model_utility(handle, retain, s.utility),
        "heldout_loss": handle.heldout_loss(sample=s.heldout_texts),
        "mia_auc": mia_auc(handle, forget_texts, holdout, "min_k++", s.membership),
        "mia_auc_min_k": mia_auc(handle, forget_texts, holdout, "min_k", s.membership),
        "lens": {c: readings.accuracy(c) for c in lens},
        "probe": {c: readings.accuracy(c) for c in probe},
        "truth_ratios": ratios_of(readings.tables["paraphrase"], len(facts)).tolist(),
    }
    return readings, figures


def _what(handle, edit, forget) -> tuple[str, list[Fact], list | None]:
    """(kind, facts, rewrite requests) of the thing to verify."""
    world = handle.world
    if forget is not None:
        request = forget if isinstance(forget, ForgetRequest) else forget_request(world, forget)
        return "forget", list(request.forget), None
    if edit is None:
        raise VerifyError("nothing to verify: pass an edit, or forget=... to verify the model as it is")
    if isinstance(edit.request, Mixed):
        raise VerifyError("the edits mix rewrites and forgetting: verify them separately")
    requests = requests_of(edit.request)
    if requests is None:
        # A note names no facts: it is refused as a forget request that names none.
        named = edit.request if isinstance(edit.request, Forget) else Forget()
        try:
            return "forget", named.world_facts(world), None
        except ForgetError as e:
            raise VerifyError(f"{e}: pass forget=... (a split, people or facts)") from None
    if any(r.relation is None or r.subject not in world.people for r in requests):
        raise VerifyError("the edit's requests are not about world facts; verification asks about world facts")
    facts = [world.fact(r.subject, r.relation) for r in requests]
    erase = {r.erase for r in requests}
    if len(erase) > 1:
        raise VerifyError("the edit mixes rewrites and erasures: verify them as separate edits")
    return ("forget", facts, None) if erase == {True} else ("rewrite", facts, requests)


def verify(
    handle,
    edit=None,
    forget=None,
    reference: str | None = "auto",
    settings: VerifySettings | None = None,
    progress: bool = True,
) -> Report:
    """Verify an edit against the original model and, for forgetting, the model that never saw the facts.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> person = h.world.split("forget01").forget[0]
        >>> r = verify(h, forget=person, settings=VerifySettings.quick(), progress=False)  # nothing was edited
        >>> r.verdict.overall, r.baseline.model, r.table()[0]["status"]
        ('not forgotten', 'world:retain-forget01', 'recovered')

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world; the edit's state is kept.
        edit: The :class:`~edit.edit.Edit` to verify (applied or not), a
            :class:`~workbench.verify.suppression.ConstructedSuppression`, or None to verify the
            model as it is (then ``forget`` says what it should not know).
        forget: What was forgotten, when the edit does not say or to override it: a split, a
            person, people, facts, or a :class:`~edit.forget_request.ForgetRequest`.
        reference: The retain model to compare with: "auto" (the shipped one trained without
            all the forgotten people, if any; for a SISA ensemble, an ensemble of the same plan
            trained without them, if one is beside it or in the cache), a model name or folder,
            or None (compare with chance).
        settings: :class:`VerifySettings`.
        progress: Show a bar over the stages (stderr).

    Raises:
        VerifyError: no world, nothing to verify, an edit that mixes rewrites and erasures.
    """
    s = settings or VerifySettings()
    t0 = time.perf_counter()
    world = handle.world
    if world is None:
        raise VerifyError(f"model {handle.name!r} has no fact world: verification asks about world facts")
    kind, facts, requests = _what(handle, edit, forget)
    people = list(dict.fromkeys(f.subject for f in facts))
    # Forgetting keeps nothing of the forgotten people; a rewrite keeps the subject's other facts.
    asked = set(facts)
    retain = [f for f in world.facts() if (f not in asked if kind == "rewrite" else f.subject not in set(people))]
    ref_name = None
    if kind == "forget":
        auto = reference == "auto"
        ref_name = (reference_ensemble(handle, people) or reference_model(world, people)) if auto else reference
    unseen = {r.subject: [r.relation] for r in requests} if requests else None
    stages = (
        ["edited", "original"] + (["retain model"] if ref_name else []) + (["collateral"] if _is_edit(edit) else [])
    )
    bar = tqdm(stages, desc="verify", leave=False, disable=not progress)
    figures, readings, surface = {}, {}, {}
    for stage in bar:
        bar.set_postfix_str(stage)
        if stage in ("edited", "original"):
            if edit is None and stage == "original":
                continue
            with _state(handle, edit, stage == "edited"):
                shipped = _shipped_as(handle)
                if shipped is not None:  # a model as it ships (the base before an edit, a retain model): read once
                    readings[stage], figures[stage] = _shipped_readings(shipped, facts, retain, s, unseen)
                else:
                    readings[stage], figures[stage] = _measure(handle, facts, retain, s, unseen)
                if requests:
                    surface[stage] = SurfaceFigures.from_dict(surface_figures(handle, requests))
        elif stage == "retain model":
            readings["retain"], figures["retain"] = _shipped_readings(ref_name, facts, retain, s)
        else:
            coll = collateral(handle, edit, facts, s.collateral)
    bar.close()
    # The measured figures are plain dicts (the readings cache stores them so): typed here.
    states = States(**{name: StateFigures.from_dict(f) for name, f in figures.items()})
    rewrite = RewriteFigures(**surface) if surface else None
    report = _forget_report if kind == "forget" else _rewrite_report
    verdict, checks = report(handle, facts, requests, readings, states, rewrite, s)
    edited = states.edited
    before = states.original if states.original is not None else edited
    retain_model = states.retain
    retained = Retained(
        accuracy_before=before.utility.accuracy,
        accuracy_after=edited.utility.accuracy,
        heldout_loss_before=before.heldout_loss,
        heldout_loss_after=edited.heldout_loss,
        utility_before=before.utility.utility,
        utility_after=edited.utility.utility,
        facts=edited.utility.facts,
        accuracy_retain_model=None if retain_model is None else retain_model.utility.accuracy,
        utility_retain_model=None if retain_model is None else retain_model.utility.utility,
    )
    description = (
        f"{ref_name}, trained without the forgotten people"
        if ref_name
        else "the model before the edit"
        if kind == "rewrite"
        else "chance (no model trained without these people ships)"
    )
    asked = (
        edit.request.to_dict()
        if edit is not None and forget is None
        else {
            "name": getattr(forget, "name", forget if isinstance(forget, str) else f"{len(facts)} facts"),
            "facts": [[f.subject, f.relation] for f in facts],
        }
    )
    return Report(
        kind,
        getattr(edit, "method", "none"),
        dict(asked),
        handle.name,
        Baseline(ref_name, description),
        verdict,
        checks,
        states,
        rewrite,
        coll if _is_edit(edit) else None,
        retained,
        list(NOT_GUARANTEED) + notes(handle, ref_name),
        asdict(s),
        time.perf_counter() - t0,
    )


def _is_edit(edit) -> bool:
    """A weight edit (an Edit or an EditSequence), whose collateral damage can be measured by reverting it."""
    return edit is not None and hasattr(edit, "revert")


def _distribution(states: States, s: VerifySettings) -> list[CheckResult]:
    """Forget quality and membership AUC, against the retain model (skipped without one)."""
    if states.retain is None:
        return []
    ref = states.retain.truth_ratios
    fq = {k: forget_quality(v.truth_ratios, ref) for k, v in states.by_name().items() if k != "retain"}
    e = states.edited.truth_ratios
    lower = torch.tensor(e).median() < torch.tensor(ref).median()  # the true object relatively likelier: known
    fq_status = "consistent" if fq["edited"] >= s.verdict.forget_quality else "recovered" if lower else "over-forgotten"
    auc = {k: v.mia_auc for k, v in states.by_name().items()}
    gap = auc["edited"] - auc["retain"]
    mia_status = (
        "recovered"
        if gap >= s.verdict.mia_tolerance
        else "over-forgotten"
        if -gap >= s.verdict.mia_tolerance
        else "consistent"
    )
    return [
        CheckResult(
            "forget quality",
            "truth ratio",
            fq["edited"],
            1.0,
            fq.get("original"),
            None,
            None,
            None,
            fq["edited"],
            fq_status,
        ),
        CheckResult(
            "membership AUC",
            "membership",
            auc["edited"],
            auc["retain"],
            auc.get("original"),
            None,
            None,
            None,
            math.nan,
            mia_status,
        ),
    ]


def _forget_report(
    handle, facts, requests, readings, states: States, rewrite, s: VerifySettings
) -> tuple[VerdictSummary, list[CheckResult]]:
    v: Verdict = decide(
        readings["edited"], readings.get("retain"), readings.get("original"), _distribution(states, s), s.verdict
    )
    return VerdictSummary(v.overall, v.reason, list(v.caveats), list(v.items), v.settings), list(v.checks)


def _rewrite_report(
    handle, facts, requests, readings, states, rewrite: RewriteFigures, s: VerifySettings
) -> tuple[VerdictSummary, list[RewriteCheck]]:
    edited, original = readings["edited"], readings.get("original")
    new = object_columns(handle.world, facts, [r.new_object for r in requests])
    efficacy = rewrite.edited.efficacy
    rows, per_check = request_verdicts(requests, edited, new, efficacy, s.verdict.majority)
    base = request_verdicts(requests, original, new, [False] * len(requests), s.verdict.majority)[1] if original else {}
    overall, reason = overall_rewrite(rows)
    checks = [
        RewriteCheck(
            check=c,
            group=group_of(c),
            edited=per_check[c]["old_first"],
            original=base.get(c, {}).get("old_first"),
            retain=None,
            new_first=per_check[c]["new_first"],
            old_mean_rank=per_check[c]["old_mean_rank"],
            status="old returns" if per_check[c]["old_first"] > 0 else "old gone",
        )
        for c in per_check
    ]
    return VerdictSummary(overall, reason, [], [RequestVerdict(**r) for r in rows]), checks


__all__ = ["NOT_GUARANTEED", "Report", "VerifyError", "VerifySettings", "reference_model", "verify"]
