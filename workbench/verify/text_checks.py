"""The checks of a text verification and their verdict, from each model state's answer readings.

Items take the place of the world's facts (:mod:`~workbench.verify.verdict`): a count check
counts the forget items a model answers (greedy answer, the answer ranked above the perturbed
ones, the right choice, the greedy answer to the paraphrased question, the answer read by the
logit lens before the last block, the unseen half's greedy answer after relearning the other
half, each quantised copy's greedy answer); the edited model's count is tested
against the reference model's rate, both ways, and every p-value of a report is Holm-corrected
together. Forget quality and the membership AUC join as distribution checks, as on the world.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from workbench.core.data_files import QA
from workbench.verify.text_answers import AnswerReadings
from workbench.verify.text_lens import LensReadings
from workbench.verify.text_relearn import TextRelearned
from workbench.verify.truth_ratio import forget_quality, forget_truth_score, harmonic_mean
from workbench.verify.verdict import CheckResult, VerdictSettings, excess_p, holm, overall_of, reason_of, status_of

SURFACE = "answers"
GROUPS = {
    SURFACE: "surface",
    "ranked first": "answer ranking",
    "choices": "multiple choice",
    "paraphrased questions": "paraphrase",
    "logit lens": "hidden states",
    "relearn": "relearning",
}


def _mean(values) -> float | None:
    return statistics.fmean(values) if len(values) else None


@dataclass(frozen=True)
class TextState:
    """One model state's readings of the forget and retain items.

    Attributes:
        model: The model's name.
        forget, retain: :class:`~workbench.verify.text_answers.AnswerReadings` of each set.
        mia_auc, mia_auc_min_k: Membership AUC of the forget texts against the holdout, Min-K%++ and Min-K%.
        choices: Per multiple-choice question, whether the right choice was likeliest; None without them.
        choice_chance: The mean of 1 / choices.
        quantised: Per quantised check ("answers int8"), the round-to-nearest copy's readings
            of the forget items.
        paraphrased: Readings of the forget items that have a paraphrased question, asked it; or None.
        lens: The logit lens's ranks of the forget items' answers, or None.
        relearned: The relearning attack's readings of the unseen half, or None.
        note: Why a reading was not taken, or None.
    """

    model: str
    forget: AnswerReadings
    retain: AnswerReadings
    mia_auc: float
    mia_auc_min_k: float
    choices: list[bool] | None = None
    choice_chance: float = 0.0
    quantised: dict[str, AnswerReadings] = field(default_factory=dict)
    paraphrased: AnswerReadings | None = None
    lens: LensReadings | None = None
    relearned: TextRelearned | None = None
    note: str | None = None

    def counts(self, answered: float, items: list[QA]) -> dict[str, tuple[list[bool], float]]:
        """Per count check, whether each forget item is answered under it, and chance.

        Examples:
            >>> r = AnswerReadings([0.9], [1.0], ["Paris"], [True], [0.01])
            >>> TextState("m", r, r, 0.5, 0.5).counts(0.5, [QA("Q", "Paris", None, ("Rome",))])
            {'answers': ([True], 0.0), 'ranked first': ([True], 0.5)}
        """
        out = {SURFACE: ([x >= answered for x in self.forget.recall], 0.0)}
        if self.forget.ranked_first:
            chance = _mean([1 / (1 + len(i.perturbed_answers)) for i in items if i.perturbed_answers])
            out["ranked first"] = (list(self.forget.ranked_first), chance)
        if self.choices is not None:
            out["choices"] = (list(self.choices), self.choice_chance)
        if self.paraphrased is not None:
            out["paraphrased questions"] = ([x >= answered for x in self.paraphrased.recall], 0.0)
        if self.lens is not None:
            out["logit lens"] = (self.lens.recovered(), 0.0)
        if self.relearned is not None:
            out["relearn"] = ([x >= answered for x in self.relearned.readings.recall], 0.0)
        for check, q in self.quantised.items():
            out[check] = ([x >= answered for x in q.recall], 0.0)
        return out

    def summary(self, answered: float) -> dict:
        """The state's figures by name (JSON-able); None where a reading was not taken.

        Examples:
            >>> r = AnswerReadings([0.5], [1.0], ["Paris"], [], [])
            >>> s = TextState("m", r, r, 0.5, 0.5).summary(0.5)
            >>> s["forget_answer_probability"], s["forget_truth_ratios"], s["model_utility"]
            (0.5, [], 0.6666666666666666)
        """
        f, r, p, lens, rl = self.forget, self.retain, self.paraphrased, self.lens, self.relearned
        retain_truth = _mean([max(0.0, 1 - x) for x in r.truth_ratios])
        parts = [_mean(r.probability), _mean(r.recall)] + ([retain_truth] if retain_truth is not None else [])
        return {
            "model": self.model,
            "forget_answer_probability": _mean(f.probability),
            "retain_answer_probability": _mean(r.probability),
            "forget_rouge_recall": _mean(f.recall),
            "retain_rouge_recall": _mean(r.recall),
            "forget_answered": _mean([x >= answered for x in f.recall]),
            "forget_ranked_first": _mean(f.ranked_first),
            "forget_truth_score": forget_truth_score(f.truth_ratios) if f.truth_ratios else None,
            "forget_truth_ratio_median": statistics.median(f.truth_ratios) if f.truth_ratios else None,
            "forget_truth_ratios": list(f.truth_ratios),
            "retain_truth_score": retain_truth,
            "model_utility": harmonic_mean(parts),
            "mia_auc": self.mia_auc,
            "mia_auc_min_k": self.mia_auc_min_k,
            "choice_accuracy": _mean(self.choices) if self.choices is not None else None,
            **{f"{k.split()[-1]}_rouge_recall": _mean(q.recall) for k, q in self.quantised.items()},
            "paraphrase_rouge_recall": _mean(p.recall) if p is not None else None,
            "paraphrase_answer_probability": _mean(p.probability) if p is not None else None,
            "lens_recovered": _mean(lens.recovered()) if lens is not None else None,
            "lens_hidden": _mean(lens.hidden()) if lens is not None else None,
            "lens_layers": list(lens.layers) if lens is not None else None,
            "lens_by_layer": lens.by_layer() if lens is not None else None,
            "relearn_rouge_recall_before": _mean([f.recall[i] for i in rl.asked]) if rl is not None else None,
            "relearn_rouge_recall": _mean(rl.readings.recall) if rl is not None else None,
            "relearn_answer_probability": _mean(rl.readings.probability) if rl is not None else None,
            "relearn_trained_probability": _mean(rl.trained_probability) if rl is not None else None,
            "relearn_seconds": rl.seconds if rl is not None else None,
            "forget_greedy_answers": list(f.answers),
        }


# (row name, summary key, group) of the figures shown beside the checks, without a test.
MEASURED = [
    ("answer probability (forget)", "forget_answer_probability", "forget set"),
    ("ROUGE-L recall (forget)", "forget_rouge_recall", "forget set"),
    ("truth ratio score (forget)", "forget_truth_score", "forget set"),
    ("ROUGE-L recall (paraphrased)", "paraphrase_rouge_recall", "paraphrase"),
    ("answers hidden (logit lens)", "lens_hidden", "hidden states"),
    ("relearn: ROUGE-L before", "relearn_rouge_recall_before", "relearning"),
    ("relearn: ROUGE-L after", "relearn_rouge_recall", "relearning"),
    ("relearn: probability after", "relearn_answer_probability", "relearning"),
    ("relearn: trained probability", "relearn_trained_probability", "relearning"),
    ("answer probability (retain)", "retain_answer_probability", "retain set"),
    ("ROUGE-L recall (retain)", "retain_rouge_recall", "retain set"),
    ("truth ratio score (retain)", "retain_truth_score", "retain set"),
    ("model utility", "model_utility", "retain set"),
]


def measured_rows(states: dict[str, dict]) -> list[dict]:
    """Table rows of the figures measured but not tested, from each state's :meth:`TextState.summary`.

    Examples:
        >>> row = measured_rows({"edited": {"forget_answer_probability": 0.9}})[0]
        >>> row["check"], row["edited"], row["reference"], row["status"]
        ('answer probability (forget)', 0.9, None, 'measured')
    """
    rows = []
    for name, key, group in MEASURED:
        figures = {k: states.get(k, {}).get(key) for k in ("edited", "original", "reference")}
        if figures["edited"] is not None:
            rows.append({"check": name, "group": group, **figures, "status": "measured"})
    return rows


def _fraction(hits: list[bool] | None) -> float | None:
    return sum(hits) / len(hits) if hits else None


def undecided(
    states: dict[str, TextState], items: list[QA], answered: float
) -> tuple[str, str, list[CheckResult], None, list]:
    """Without a reference: every count check beside the original's, untested, and no verdict.

    Returns:
        ("undecided", reason, checks, forget quality None, no items).
    """
    edited, original = states["edited"], states.get("original")
    mine = edited.counts(answered, items)
    theirs = original.counts(answered, items) if original is not None else {}
    checks = [
        CheckResult(
            check,
            GROUPS.get(check, "quantisation"),
            _fraction(hits),
            None,
            _fraction(theirs.get(check, (None,))[0]),
            sum(hits),
            None,
            len(hits),
            math.nan,
            "not tested",
        )
        for check, (hits, _) in mine.items()
    ]
    if original is None:
        return "undecided", "no reference model and no original: the figures are the model's own", checks, None, []
    a, b = _fraction(mine[SURFACE][0]), _fraction(theirs[SURFACE][0])
    reason = (
        f"no reference model: compared with the original only, the forget set is answered {a:.3g} vs {b:.3g}; "
        "whether that is forgetting cannot be told without a model that never saw it"
    )
    return "undecided", reason, checks, None, []


def _distribution(
    states: dict[str, TextState], s: VerdictSettings, membership: bool
) -> tuple[list[CheckResult], float | None]:
    """Forget quality (where truth ratios exist) and membership AUC, against the reference.

    The membership AUC is tested only against a holdout no model saw (``membership``); against
    the retain texts it is shown, not tested (the caveat in :mod:`~workbench.verify.text_report`).
    """
    edited, ref, original = states["edited"], states["reference"], states.get("original")
    out, fq = [], None
    if edited.forget.truth_ratios and ref.forget.truth_ratios:
        fq = forget_quality(edited.forget.truth_ratios, ref.forget.truth_ratios)
        fq_original = forget_quality(original.forget.truth_ratios, ref.forget.truth_ratios) if original else None
        # The true answer relatively likelier than under the reference: known, not over-forgotten.
        lower = statistics.median(edited.forget.truth_ratios) < statistics.median(ref.forget.truth_ratios)
        status = "consistent" if fq >= s.forget_quality else "recovered" if lower else "over-forgotten"
        out.append(CheckResult("forget quality", "truth ratio", fq, 1.0, fq_original, None, None, None, fq, status))
    gap = edited.mia_auc - ref.mia_auc
    status = "recovered" if gap >= s.mia_tolerance else "over-forgotten" if -gap >= s.mia_tolerance else "consistent"
    status = status if membership else "not tested"
    auc_original = original.mia_auc if original else None
    out.append(
        CheckResult(
            "membership AUC",
            "membership",
            edited.mia_auc,
            ref.mia_auc,
            auc_original,
            None,
            None,
            None,
            math.nan,
            status,
        )
    )
    return out, fq


def decide_texts(
    states: dict[str, TextState],
    items: list[QA],
    answered: float,
    settings: VerdictSettings | None = None,
    membership: bool = True,
) -> tuple[str, str, list[CheckResult], float | None, list[dict], list[str]]:
    """The verdict on a forget set from the edited, reference and (shown only) original readings.

    ``membership``: whether the membership AUC joins the verdict (it does only against a holdout).

    Returns:
        (verdict, reason, checks, forget quality or None, up to ten forget items the edited model
        answers and the reference does not, caveats).
    """
    s = settings or VerdictSettings()
    edited, ref, original = states["edited"], states["reference"], states.get("original")
    mine, theirs = edited.counts(answered, items), ref.counts(answered, items)
    shown = original.counts(answered, items) if original is not None else {}
    pooled, tests = [], []
    for check, (hits, chance) in mine.items():
        if check not in theirs:
            continue
        k, n, k_ref = sum(hits), len(hits), sum(theirs[check][0])
        # The reference's rate smoothed, so that one that answered none is not a zero rate; never below chance.
        more, less = excess_p(k, n, None, None, max((k_ref + 1) / (n + 2), chance))
        pooled.append((check, k, n, k_ref))
        tests += [more, less]
    adjusted = holm(tests)
    checks = [
        CheckResult(
            check,
            GROUPS.get(check, "quantisation"),
            k / n,
            k_ref / n,
            _fraction(shown.get(check, (None,))[0]),
            k,
            k_ref,
            n,
            adjusted[2 * i],
            status_of(adjusted[2 * i], adjusted[2 * i + 1], (k - k_ref) / n, s.alpha, s.tolerance),
        )
        for i, (check, k, n, k_ref) in enumerate(pooled)
    ]
    distribution, fq = _distribution(states, s, membership)
    checks += distribution
    overall = overall_of({c.check: c.status for c in checks}, surface=SURFACE)
    reason = reason_of(overall, checks, "the reference model").replace("the forgotten facts", "the forget set")
    caveats = [
        f"{c.check} is below the reference ({c.edited:.3g} vs {c.retain:.3g}): the edit leaves a trace of its own"
        for c in checks
        if c.status == "over-forgotten"
    ]
    still = [
        {
            "question": it.question,
            "answer": it.answer,
            "edited": edited.forget.answers[j],
            "reference": ref.forget.answers[j],
        }
        for j, it in enumerate(items)
        if edited.forget.recall[j] >= answered and ref.forget.recall[j] < answered
    ][:10]
    return overall, reason, checks, fq, still, caveats


__all__ = ["GROUPS", "MEASURED", "SURFACE", "TextState", "decide_texts", "measured_rows", "undecided"]
