"""The sections of a verification Report as small records, each serialising to the report's JSON.

A :class:`~workbench.verify.report_record.Report` holds one record per section, read by
attribute (``report.states.edited.utility.accuracy``, ``report.verdict.overall``). Every
record's ``to_dict()`` gives the section as the report's JSON holds it (the same keys in the
same order; a state or figure that was not measured is left out, not written as null), and
``from_dict()`` reads it back, so a report written to disk loads as the object it was.

The check rows, the people's verdicts and collateral damage are the records their own modules
build: :class:`~workbench.verify.verdict.CheckResult` and :class:`~workbench.verify.verdict.ItemVerdict`
for forgetting, :class:`RewriteCheck` and :class:`RequestVerdict` for rewrites,
:class:`~workbench.verify.collateral.Collateral`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from workbench.verify.collateral import Collateral, CollateralSettings, GroupChange
from workbench.verify.rewrite import GenerationResult
from workbench.verify.truth_ratio import UtilitySettings
from workbench.verify.verdict import CheckResult, ItemVerdict, VerdictSettings

STATE_NAMES = ("edited", "original", "retain")


@dataclass(frozen=True)
class Baseline:
    """What a report's figures are compared with.

    Examples:
        >>> Baseline("world:retain-forget01", "world:retain-forget01, trained without the forgotten people").model
        'world:retain-forget01'

    Attributes:
        model: The retain model, or None (rewrites compare with the original, forgetting with chance).
        description: The baseline in words.
    """

    model: str | None
    description: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Baseline:
        return cls(**d)


@dataclass(frozen=True)
class UtilityFigures:
    """Model utility on retained facts (:func:`~workbench.verify.truth_ratio.model_utility`).

    Examples:
        >>> u = UtilityFigures.from_dict({"probability": 0.9, "accuracy": 1.0, "truth_ratio": 0.8,
        ...     "utility": 0.894, "facts": 60, "settings": {"max_facts": 60, "seed": 0}})
        >>> u.accuracy, u.settings.max_facts
        (1.0, 60)
    """

    probability: float
    accuracy: float
    truth_ratio: float
    utility: float
    facts: int
    settings: UtilitySettings

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UtilityFigures:
        return cls(**{**d, "settings": UtilitySettings(**d["settings"])})


@dataclass(frozen=True)
class StateFigures:
    """The figures of one model state (edited, original or retain model) on the verified facts.

    Attributes:
        utility: Model utility on retained facts.
        heldout_loss: Loss on the world's held-out sentences.
        mia_auc: Membership AUC by Min-K%++ (the verdict's); mia_auc_min_k: by Min-K%.
        lens, probe: Accuracy per check name ("lens L0", "probe L1", ...), by layer.
        truth_ratios: One per forgotten fact, on held-out phrasings.
    """

    utility: UtilityFigures
    heldout_loss: float
    mia_auc: float
    mia_auc_min_k: float
    lens: dict[str, float]
    probe: dict[str, float]
    truth_ratios: list[float]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StateFigures:
        return cls(**{**d, "utility": UtilityFigures.from_dict(d["utility"])})


@dataclass(frozen=True)
class States:
    """The figures of every model state measured: the edited model, the original, the retain model.

    A state that was not measured is None: ``original`` when the model was verified as it is,
    ``retain`` when no retain model ships for the facts (and for rewrites).

    Examples:
        >>> States().by_name(), States().to_dict()
        ({}, {})
    """

    edited: StateFigures | None = None
    original: StateFigures | None = None
    retain: StateFigures | None = None

    def by_name(self) -> dict[str, StateFigures]:
        """The measured states by name, in the order edited, original, retain."""
        return {name: getattr(self, name) for name in STATE_NAMES if getattr(self, name) is not None}

    def to_dict(self) -> dict:
        return {name: s.to_dict() for name, s in self.by_name().items()}

    @classmethod
    def from_dict(cls, d: dict) -> States:
        return cls(**{name: StateFigures.from_dict(s) for name, s in d.items()})


@dataclass(frozen=True)
class RewriteCheck:
    """One check of a rewrite, over its requests: how often the old object still comes first.

    Attributes:
        check, group: The check and its kind of attack.
        edited, original: Fraction of requests whose old object ranks first under the check, on
            the edited and the original model.
        retain: Always None: no model was trained on the new facts.
        new_first: Fraction of requests whose new object ranks first, edited model.
        old_mean_rank: The old object's mean rank among the candidates, edited model.
        status: "old returns" or "old gone".
    """

    check: str
    group: str
    edited: float
    original: float | None
    retain: None
    new_first: float
    old_mean_rank: float
    status: str


@dataclass(frozen=True)
class RequestVerdict:
    """The verdict on one rewrite request and the checks under which its old object returns.

    Examples:
        >>> RequestVerdict("Ann Lee", "pet", "cat", "dog", "partly rewritten", ["probe L0"]).old_returns_under
        ['probe L0']
    """

    subject: str
    relation: str
    old: str
    new: str
    verdict: str
    old_returns_under: list[str]


@dataclass(frozen=True)
class VerdictSummary:
    """The report's verdict: overall, why, what to keep in mind, and one verdict per person or request.

    Examples:
        >>> v = VerdictSummary("removed", "no check recovers them", [], [ItemVerdict("Ann Lee", 6, "removed")])
        >>> v.items[0].verdict, VerdictSummary.from_dict(v.to_dict()) == v
        ('removed', True)

    Attributes:
        overall, reason: The verdict and the sentence that explains it.
        caveats: What a reader should keep in mind.
        items: Per person (:class:`~workbench.verify.verdict.ItemVerdict`) when forgetting, per
            request (:class:`RequestVerdict`) when rewriting.
        settings: The verdict's tolerances (forgetting only; None for rewrites, and then left
            out of the JSON).
    """

    overall: str
    reason: str
    caveats: list[str]
    items: list[ItemVerdict] | list[RequestVerdict]
    settings: VerdictSettings | None = None

    def to_dict(self) -> dict:
        d = {
            "overall": self.overall,
            "reason": self.reason,
            "caveats": list(self.caveats),
            "items": [asdict(i) for i in self.items],
        }
        if self.settings is not None:
            d["settings"] = asdict(self.settings)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VerdictSummary:
        item = RequestVerdict if any("subject" in i for i in d["items"]) else ItemVerdict
        settings = d.get("settings")
        return cls(
            d["overall"],
            d["reason"],
            list(d["caveats"]),
            [item(**i) for i in d["items"]],
            None if settings is None else VerdictSettings(**settings),
        )


def check_from_dict(d: dict) -> CheckResult | RewriteCheck:
    """A check row of the report's JSON as its record: a forgetting check, or a rewrite's.

    Examples:
        >>> row = {"check": "surface", "group": "surface", "edited": 0.0, "original": 1.0, "retain": None,
        ...        "new_first": 1.0, "old_mean_rank": 3.5, "status": "old gone"}
        >>> check_from_dict(row).new_first
        1.0
    """
    return RewriteCheck(**d) if "new_first" in d else CheckResult(**d)


@dataclass(frozen=True)
class CounterfactScore:
    """One kind of CounterFact prompt: fractions won by probability and by rank, over ``n`` prompts."""

    prob: float
    accuracy: float
    n: int


@dataclass(frozen=True)
class CounterfactScores:
    """CounterFact's three scores (:func:`edit.counterfact.score_requests`) of one model state."""

    efficacy: CounterfactScore
    paraphrase: CounterfactScore
    neighbourhood: CounterfactScore

    @classmethod
    def from_dict(cls, d: dict) -> CounterfactScores:
        return cls(**{kind: CounterfactScore(**d[kind]) for kind in ("efficacy", "paraphrase", "neighbourhood")})


@dataclass(frozen=True)
class SurfaceFigures:
    """What a rewritten model says (:func:`~workbench.verify.rewrite.surface_figures`) in one state.

    Attributes:
        counterfact: CounterFact's efficacy, paraphrase and neighbourhood scores.
        efficacy: Per request, whether the edit prompt gives the new object.
        old_mass: Mean probability of the old object after the edit prompts and paraphrases.
        generation: Greedy generation after the same prompts.
    """

    counterfact: CounterfactScores
    efficacy: list[bool]
    old_mass: float
    generation: GenerationResult

    @classmethod
    def from_dict(cls, d: dict) -> SurfaceFigures:
        g = d["generation"]
        return cls(
            CounterfactScores.from_dict(d["counterfact"]),
            list(d["efficacy"]),
            d["old_mass"],
            GenerationResult(g["new"], g["old"], g["prompts"], [tuple(x) for x in g["examples"]]),
        )


@dataclass(frozen=True)
class RewriteFigures:
    """A rewrite's surface figures on the edited model and the original (None when not measured).

    Examples:
        >>> RewriteFigures().to_dict()
        {}
    """

    edited: SurfaceFigures | None = None
    original: SurfaceFigures | None = None

    def to_dict(self) -> dict:
        return {name: asdict(s) for name in ("edited", "original") if (s := getattr(self, name)) is not None}

    @classmethod
    def from_dict(cls, d: dict) -> RewriteFigures:
        return cls(**{name: SurfaceFigures.from_dict(s) for name, s in d.items()})


@dataclass(frozen=True)
class Retained:
    """Retained performance before and after the edit, and the retain model's when there is one.

    Examples:
        >>> r = Retained(1.0, 0.98, 2.06, 2.05, 0.95, 0.94, 60)
        >>> r.accuracy_after, "accuracy_retain_model" in r.to_dict()
        (0.98, False)

    Attributes:
        accuracy_before, accuracy_after: Accuracy on retained facts, original and edited model.
        heldout_loss_before, heldout_loss_after: Held-out loss, original and edited model.
        utility_before, utility_after: Model utility, original and edited model.
        facts: Retained facts scored.
        accuracy_retain_model, utility_retain_model: The retain model's, or None (left out of
            the JSON) without one.
    """

    accuracy_before: float
    accuracy_after: float
    heldout_loss_before: float
    heldout_loss_after: float
    utility_before: float
    utility_after: float
    facts: int
    accuracy_retain_model: float | None = None
    utility_retain_model: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("accuracy_retain_model", "utility_retain_model"):
            if d[name] is None:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Retained:
        return cls(**d)


def collateral_from_dict(d: dict) -> Collateral:
    """:class:`~workbench.verify.collateral.Collateral` from its ``to_dict()``.

    Examples:
        >>> d = {"groups": {"edited": {"n": 2, "prob_before": 1.0, "prob_after": 0.1, "change": -0.9,
        ...      "accuracy_before": 1.0, "accuracy_after": 0.0}}, "heldout_loss_before": 2.06,
        ...      "heldout_loss_after": 2.05, "kl": 0.003, "facts": [],
        ...      "settings": {"max_facts": 150, "kl_prompts": 256, "heldout_texts": 1000, "seed": 0}}
        >>> c = collateral_from_dict(d)
        >>> c.groups["edited"].prob_after, c.to_dict() == d
        (0.1, True)
    """
    return Collateral(
        {g: GroupChange(**x) for g, x in d["groups"].items()},
        d["heldout_loss_before"],
        d["heldout_loss_after"],
        d["kl"],
        list(d["facts"]),
        CollateralSettings(**d["settings"]),
    )


__all__ = [
    "Baseline",
    "CounterfactScore",
    "CounterfactScores",
    "RequestVerdict",
    "Retained",
    "RewriteCheck",
    "RewriteFigures",
    "STATE_NAMES",
    "StateFigures",
    "States",
    "SurfaceFigures",
    "UtilityFigures",
    "VerdictSummary",
    "check_from_dict",
    "collateral_from_dict",
]
