"""Verify forgetting on a user's own model and files: no fact world, only questions, answers and texts.

:func:`verify_texts` reads the forget and retain sets (TOFU question-answer pairs or plain
texts, :mod:`workbench.core.data_files`) from the model under verification, the original model
and a reference model trained without the forget set (:mod:`~workbench.verify.text_answers`),
and returns a :class:`TextReport`:

* answer probability and ROUGE-L recall of greedy answers, on the forget and the retain set;
* where items have perturbed answers: the answer ranked above them, and TOFU's truth ratio;
  with a reference, forget quality (KS test of the forget set's truth ratios against the
  reference's, :func:`~workbench.verify.truth_ratio.forget_quality`);
* Min-K%++ membership AUC of the forget texts against the retain texts, or a held-out set
  (:mod:`~workbench.verify.membership`);
* multiple-choice accuracy, when questions with choices are given;
* greedy answers to the paraphrased questions, where items have them;
* the logit lens: the answer's first token read before the last block (:mod:`~workbench.verify.text_lens`);
* the relearning attack: greedy answers of one half of the forget set after a few steps on the
  other half, on a copy (:mod:`~workbench.verify.text_relearn`);
* greedy answers of round-to-nearest 8- and 4-bit copies (:mod:`~workbench.verify.quantise`).

The verdict is the world path's (:mod:`~workbench.verify.verdict`) with items in place of facts:
an item is answered when its greedy answer's ROUGE-L recall reaches ``answered`` (or ranked
first, or chosen right); per check, the edited model's count is tested against the reference
model's rate (smoothed, never below chance) both ways, Holm-corrected together; *not forgotten*
when the plain question (``answers``) still recovers the forget set beyond the reference,
*suppressed* when only another check does, *removed* when none does. Without a reference
there is no verdict: the report compares with the original model and names what it cannot
conclude.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from tqdm.auto import tqdm

from workbench.core.data_files import QA, Choice
from workbench.core.handle import ModelHandle, load_shared
from workbench.verify.membership import MembershipSettings, mia_auc
from workbench.verify.report import VerifyError
from workbench.verify.text_answers import (
    AnswerReadings,
    as_items,
    choice_correct,
    paraphrased,
    quantised_answers,
    read_answers,
    sample,
)
from workbench.verify.text_checks import TextState, decide_texts, measured_rows, undecided
from workbench.verify.text_lens import TextLensSettings, lens_ranks
from workbench.verify.text_relearn import TextRelearnSettings, relearn_texts
from workbench.verify.text_report_html import text_report_page
from workbench.verify.verdict import VerdictSettings

NO_REFERENCE = [
    "whether the forget set is removed or only suppressed: that needs a model trained without it (a reference)",
    "forget quality: the KS test compares the truth ratios with a reference model's",
    "how much a model that never saw the forget set would answer anyway (general knowledge, lucky guesses)",
    "whether relearning, the logit lens or quantisation give back more than they would give a model that never "
    "saw the forget set: each recovers some items from general knowledge or training alone",
]


@dataclass(frozen=True)
class TextVerifySettings:
    """How much :func:`verify_texts` reads, and the tolerances of its verdict.

    Examples:
        >>> TextVerifySettings().answered, TextVerifySettings.quick().max_items, TextVerifySettings().quantise_bits
        (0.5, 30, (8, 4))

    Args:
        max_items: At most this many forget, retain, held-out and multiple-choice items each,
            drawn with ``seed`` (order kept); None: all.
        seed: Seed of the draws, fixed so that every model is asked the same items.
        answered: An item is answered when its greedy answer's ROUGE-L recall is at least this.
        max_new_tokens: Greedy answers are the true answer's length plus two tokens, at most this.
        quantise_bits: Bits of each round-to-nearest copy whose greedy answers are read (one
            copy at a time, the edited model and the reference); None or (): none; an int: that one.
        relearn: The relearning attack (:class:`~workbench.verify.text_relearn.TextRelearnSettings`;
            ``steps=0``: none), on the edited model and the reference.
        lens: The logit lens (:class:`~workbench.verify.text_lens.TextLensSettings`).
        membership: Min-K%++ settings (:class:`~workbench.verify.membership.MembershipSettings`).
        verdict: Tolerances (:class:`~workbench.verify.verdict.VerdictSettings`; its
            ``tolerance``, ``alpha``, ``forget_quality`` and ``mia_tolerance`` are used).
        batch_size: Sequences per forward pass.
    """

    max_items: int | None = None
    seed: int = 0
    answered: float = 0.5
    max_new_tokens: int = 32
    quantise_bits: tuple[int, ...] | None = (8, 4)
    relearn: TextRelearnSettings = field(default_factory=TextRelearnSettings)
    lens: TextLensSettings = field(default_factory=TextLensSettings)
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    verdict: VerdictSettings = field(default_factory=VerdictSettings)
    batch_size: int = 64

    @classmethod
    def quick(cls) -> TextVerifySettings:
        """At most 30 items of each set, no relearning attack (a copy trained with Adam): a first look.

        Examples:
            >>> TextVerifySettings.quick().quantise_bits, TextVerifySettings.quick().relearn.runs
            ((8, 4), False)
        """
        return cls(max_items=30, relearn=TextRelearnSettings(steps=0))


@dataclass
class TextReport:
    """What :func:`verify_texts` found: the verdict, every check beside its baselines, and the figures.

    Examples:
        >>> r = TextReport("m", None, "undecided", "no reference model", [], {}, None, ["forget quality"])
        >>> r.to_dict()["verdict"], r.table()
        ('undecided', [])

    Attributes:
        model: The model verified; reference: the reference model's name, or None.
        verdict: "removed", "suppressed", "not forgotten", or "undecided" without a reference.
        reason: One sentence saying why.
        checks: :class:`~workbench.verify.verdict.CheckResult` rows; ``retain`` holds the
            reference's figure, the counts are items (not facts).
        states: Per model state ("edited", "original", "reference"), its figures
            (:meth:`~workbench.verify.text_checks.TextState.summary`).
        forget_quality: The KS p-value against the reference, or None.
        cannot_conclude: What the report does not establish from these checks.
        caveats: What a reader should keep in mind (over-forgotten checks, the holdout used).
        still_answered: Up to ten forget items the edited model answers and the reference does not.
        items: How many items each set held after sampling.
        settings, seconds: The settings used, and wall time.
    """

    model: str
    reference: str | None
    verdict: str
    reason: str
    checks: list = field(default_factory=list)
    states: dict = field(default_factory=dict)
    forget_quality: float | None = None
    cannot_conclude: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    still_answered: list[dict] = field(default_factory=list)
    items: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def table(self) -> list[dict]:
        """Rows of check, group, edited, original, reference, status: the checks, then the measured figures."""
        rows = [
            {
                "check": c.check,
                "group": c.group,
                "edited": c.edited,
                "original": c.original,
                "reference": c.retain,
                "status": c.status,
            }
            for c in self.checks
        ]
        return rows + measured_rows(self.states)

    def to_dict(self) -> dict:
        """The report as JSON-able values (NaN as None)."""
        return _clean(
            {
                "kind": "forget texts",
                "model": self.model,
                "reference": self.reference,
                "verdict": self.verdict,
                "reason": self.reason,
                "checks": [asdict(c) for c in self.checks],
                "table": self.table(),
                "states": self.states,
                "forget_quality": self.forget_quality,
                "cannot_conclude": list(self.cannot_conclude),
                "caveats": list(self.caveats),
                "still_answered": list(self.still_answered),
                "items": dict(self.items),
                "settings": self.settings,
                "seconds": self.seconds,
            }
        )

    def to_html(self) -> str:
        """A standalone HTML page of the report, offline (:mod:`~workbench.verify.text_report_html`)."""
        return text_report_page(self)

    def __repr__(self) -> str:
        return f"TextReport({self.model}: {self.verdict}; {self.reason})"


def _clean(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


@contextmanager
def _reverted(handle, edit) -> Iterator[None]:
    """The handle's model with an applied edit reverted, re-applied after."""
    edit.revert(handle.model)
    try:
        yield
    finally:
        edit.apply(handle.model)


def _read_state(handle, forget, retain, holdout, choices, s: TextVerifySettings, attacks: bool) -> TextState:
    """Every reading of one model state; the quantised copies and the relearning attack only where asked."""

    def read(h, items: list[QA]) -> AnswerReadings:
        return read_answers(h, items, s.max_new_tokens, s.batch_size)

    texts = [i.text for i in forget]
    auc = {m: mia_auc(handle, texts, holdout, m, s.membership) for m in ("min_k++", "min_k")}
    bits = (s.quantise_bits,) if isinstance(s.quantise_bits, int) else tuple(s.quantise_bits or ())
    q, notes = quantised_answers(handle, forget, bits if attacks else (), s.max_new_tokens, s.batch_size)
    asked = paraphrased(forget)
    return TextState(
        handle.name,
        read(handle, forget),
        read(handle, retain),
        auc["min_k++"],
        auc["min_k"],
        *(choice_correct(handle, choices, s.batch_size) if choices else (None, 0.0)),
        quantised=q,
        paraphrased=read(handle, asked) if asked else None,
        lens=lens_ranks(handle, forget, s.lens),
        relearned=relearn_texts(handle, forget, s.relearn, s.seed, s.max_new_tokens, s.batch_size) if attacks else None,
        note="; ".join(notes) or None,
    )


def _not_run(edited: TextState, s: TextVerifySettings) -> list[str]:
    """What the checks that did not run would have told."""
    out = []
    if edited.paraphrased is None:
        out.append("answers to paraphrased questions: no forget item has a 'paraphrased_question'")
    if edited.lens is None:
        why = "turned off" if not s.lens.enabled else "the model has one block, or no site map for its architecture"
        out.append(f"whether the answer is read from the hidden states (logit lens): {why}")
    if edited.relearned is None:
        why = "turned off (relearn steps 0)" if not s.relearn.runs else "fewer than two forget items"
        out.append(f"whether a few steps of fine-tuning on half the forget set give back the other half: {why}")
    return out


def verify_texts(
    handle,
    forget: Sequence[QA] | Sequence[str],
    retain: Sequence[QA] | Sequence[str],
    reference: ModelHandle | str | None = None,
    original: ModelHandle | None = None,
    choices: Sequence[Choice] | None = None,
    settings: TextVerifySettings | None = None,
    progress: bool = True,
    holdout: Sequence[str] | None = None,
    edit=None,
) -> TextReport:
    """Verify that a model forgot a forget set, from its questions and texts alone, against a reference model.

    Examples:
        >>> import workbench
        >>> from workbench.core.data_files import read_qa
        >>> h = workbench.load("world")
        >>> forget = read_qa("workbench/core/world/examples/tofu_forget05.json")[:6]
        >>> retain = read_qa("workbench/core/world/examples/tofu_retain.json")[:6]
        >>> s = TextVerifySettings(quantise_bits=None, relearn=TextRelearnSettings(steps=0))
        >>> r = verify_texts(h, forget, retain, settings=s, progress=False)
        >>> r.verdict, r.states["edited"]["forget_answer_probability"] > 0.9
        ('undecided', True)

    Args:
        handle: A :class:`~workbench.core.handle.ModelHandle`, as it is (any applied edit kept).
        forget, retain: TOFU question-answer pairs (:class:`~workbench.core.data_files.QA`) or
            plain texts, each split at its middle word into question and answer.
        reference: A model trained without the forget set (a handle, a model directory or
            world name), or None: then no verdict, and the report says what it cannot conclude.
        original: The model before the edit, shown beside the edited one (not tested).
        choices: Multiple-choice questions about the forget set (WMDP style), or None.
        settings: :class:`TextVerifySettings`.
        progress: Show a bar over the model states (stderr).
        holdout: Texts no model trained on, for the membership AUC; default the retain texts.
        edit: An edit applied to ``handle``: the original is then ``handle`` with it reverted.

    Raises:
        VerifyError: an empty forget or retain set, or a text too short to split.
    """
    s = settings or TextVerifySettings()
    t0 = time.perf_counter()
    if not forget or not retain:
        raise VerifyError(f"nothing to verify: the {'forget' if not forget else 'retain'} set is empty")
    try:
        f_items = sample(as_items(forget), s.max_items, s.seed)
        r_items = sample(as_items(retain), s.max_items, s.seed)
    except ValueError as e:
        raise VerifyError(str(e)) from None
    held = sample(list(holdout), s.max_items, s.seed) if holdout else [i.text for i in r_items]
    mc = sample(list(choices), s.max_items, s.seed) if choices else None
    ref = load_shared(reference) if isinstance(reference, str) else reference
    stages = (
        ["edited"] + (["original"] if original is not None or edit is not None else []) + (["reference"] if ref else [])
    )
    states: dict[str, TextState] = {}
    bar = tqdm(stages, desc="verify texts", leave=False, disable=not progress)
    for stage in bar:
        bar.set_postfix_str(stage)
        args = (f_items, r_items, held, mc, s)
        if stage == "edited":
            states[stage] = _read_state(handle, *args, attacks=True)
        elif stage == "original" and original is not None:
            states[stage] = _read_state(original, *args, attacks=False)
        elif stage == "original":
            with _reverted(handle, edit):
                states[stage] = _read_state(handle, *args, attacks=False)
        else:
            states[stage] = _read_state(ref, *args, attacks=True)
    bar.close()
    caveats = (
        []
        if holdout
        else [
            "membership AUC is measured against the retain texts, not tested: a model trained on both separates "
            "them by what it knows about each, not by what it memorised; pass a holdout no model saw to test it"
        ]
    )
    caveats += [st.note for st in states.values() if st.note]
    if ref is None:
        verdict, reason, checks, fq, still = undecided(states, f_items, s.answered)
        cannot = list(NO_REFERENCE)
        if "original" not in states:
            cannot.append("any change: no original model was given, so the figures are the model's own")
    else:
        verdict, reason, checks, fq, still, more = decide_texts(states, f_items, s.answered, s.verdict, bool(holdout))
        caveats += more
        cannot = []
        if fq is None:
            cannot.append("forget quality and truth ratio: no forget item has perturbed answers")
    cannot += _not_run(states["edited"], s)
    return TextReport(
        handle.name,
        None if ref is None else ref.name,
        verdict,
        reason,
        checks,
        {k: v.summary(s.answered) for k, v in states.items()},
        fq,
        cannot,
        caveats,
        still,
        {
            "forget": len(f_items),
            "retain": len(r_items),
            "holdout": len(held),
            "choices": len(mc) if mc else 0,
            "with_perturbed_answers": sum(bool(i.perturbed_answers) for i in f_items),
            "with_paraphrased_questions": sum(bool(i.paraphrased_question) for i in f_items),
            "relearn_trained": len(states["edited"].relearned.trained) if states["edited"].relearned else 0,
        },
        _clean(asdict(s)),
        time.perf_counter() - t0,
    )


__all__ = ["NO_REFERENCE", "TextReport", "TextVerifySettings", "verify_texts"]
