"""Verification: does an unlearned model behave like one that never saw the forgotten facts?

Each check compares the edited model with the model trained without the forgotten people (the
world's ``retain-*`` models), because every figure only means something beside that answer:

* :mod:`~workbench.verify.truth_ratio`: TOFU's truth ratio, forget quality and model utility;
* :mod:`~workbench.verify.membership`: Min-K% and Min-K%++ membership inference, MUSE's privacy leak;
* :mod:`~workbench.verify.quantise`: round-to-nearest 4- and 8-bit quantisation, which can undo
  edits smaller than a quantisation step;
* :mod:`~workbench.verify.probe`: logit lens and linear probes, which find knowledge that an
  edit only hid from the output;
* :mod:`~workbench.verify.collateral`: what else an edit moved, fact by fact, grouped by how each
  fact relates to the edited ones (same person, same relation, same object, other);
* :mod:`~workbench.verify.relearn`: the relearning attack: fine-tune on half of a person's facts
  and see whether the other half comes back (attributes are independent, so nothing should);
* :mod:`~workbench.verify.in_context`: paraphrase and in-context recovery: held-out phrasings,
  a neighbour's fact stated first, the person's other facts stated first;
* :mod:`~workbench.verify.suppression`: an output-suppression edit built on purpose, the case
  that surface accuracy misses and the checks above must catch;
* :mod:`~workbench.verify.readings`: every check above asked of one model state, fact by fact;
* :mod:`~workbench.verify.verdict`: removed, suppressed or not forgotten, per person and overall,
  from those readings against the retain model's, with stated tolerances;
* :mod:`~workbench.verify.rewrite`: the checks of a rewrite (does the old object come back?);
* :mod:`~workbench.verify.report`: :func:`verify`, which runs all of it on an edit and returns a
  :class:`Report` (a notebook table, JSON, a standalone HTML page).

Examples:
    >>> import workbench
    >>> from workbench.verify import logit_lens, suppress_output
    >>> h = workbench.load("world")
    >>> facts = h.world.facts(list(h.world.people)[:2])
    >>> with suppress_output(h, facts):
    ...     h.score(facts).accuracy, logit_lens(h, facts).accuracy[0] > 0.5
    (0.0, True)
"""

from workbench.verify.candidates import CandidateTable, candidate_table, prompts_table
from workbench.verify.collateral import Collateral, CollateralSettings, GroupChange, collateral, collateral_groups
from workbench.verify.in_context import (
    ATTACKS,
    InContextError,
    InContextRecovery,
    InContextSettings,
    attack_prompts,
    best_attack,
    in_context_attacks,
)
from workbench.verify.membership import (
    SCORERS,
    MembershipSettings,
    TextSettings,
    mia_auc,
    mia_texts,
    min_k,
    min_k_plus_plus,
    privacy_leak,
    roc_auc,
    token_scores,
)
from workbench.verify.probe import (
    LayerAccuracy,
    LensSettings,
    ProbeSettings,
    fit_probe,
    last_token_states,
    linear_probe,
    logit_lens,
)
from workbench.verify.quantise import (
    QuantiseSettings,
    block_projections,
    quantise_model,
    quantise_rows,
    quantised,
    quantised_accuracy,
)
from workbench.verify.readings import Readings, ReadSettings, read
from workbench.verify.relearn import Relearned, RelearnSettings, relearn_attack
from workbench.verify.report import Report, VerifyError, VerifySettings, reference_model, verify
from workbench.verify.rewrite import generation, greedy_continuations
from workbench.verify.suppression import ConstructedSuppression, OutputSuppression, SuppressionSettings, suppress_output
from workbench.verify.truth_ratio import (
    TruthRatioSettings,
    UtilitySettings,
    forget_quality,
    forget_truth_score,
    harmonic_mean,
    model_utility,
    truth_ratios,
)
from workbench.verify.verdict import CheckResult, ItemVerdict, Verdict, VerdictSettings, decide

__all__ = [
    "CandidateTable",
    "CheckResult",
    "ConstructedSuppression",
    "ItemVerdict",
    "ReadSettings",
    "Readings",
    "Report",
    "Verdict",
    "VerdictSettings",
    "VerifyError",
    "VerifySettings",
    "candidate_table",
    "decide",
    "generation",
    "greedy_continuations",
    "prompts_table",
    "read",
    "reference_model",
    "verify",
    "Collateral",
    "CollateralSettings",
    "GroupChange",
    "RelearnSettings",
    "Relearned",
    "collateral",
    "collateral_groups",
    "relearn_attack",
    "ATTACKS",
    "InContextError",
    "InContextRecovery",
    "InContextSettings",
    "attack_prompts",
    "best_attack",
    "in_context_attacks",
    "SCORERS",
    "LayerAccuracy",
    "LensSettings",
    "MembershipSettings",
    "OutputSuppression",
    "ProbeSettings",
    "QuantiseSettings",
    "SuppressionSettings",
    "TextSettings",
    "TruthRatioSettings",
    "UtilitySettings",
    "block_projections",
    "fit_probe",
    "forget_quality",
    "forget_truth_score",
    "harmonic_mean",
    "last_token_states",
    "linear_probe",
    "logit_lens",
    "mia_auc",
    "mia_texts",
    "min_k",
    "min_k_plus_plus",
    "model_utility",
    "privacy_leak",
    "quantise_model",
    "quantise_rows",
    "quantised",
    "quantised_accuracy",
    "roc_auc",
    "suppress_output",
    "token_scores",
    "truth_ratios",
]
