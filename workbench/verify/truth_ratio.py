"""TOFU's truth ratio, forget quality and model utility (Maini et al., 2024) on the fact world.

A fact's truth ratio compares how likely the model finds wrong answers to the true one, on
prompts it was never trained on (the world's held-out phrasings stand in for TOFU's paraphrased
questions; every other candidate of the relation stands in for TOFU's perturbed answers). With
P̄(a | q) = P(a | q)^(1/|a|), the probability normalised per token, and W the wrong candidates,

    log R(fact) = mean over held-out phrasings q of [ mean over w in W of log P̄(w | q) - log P̄(true | q) ]

that is, the geometric mean of P̄(wrong) / P̄(true), as TOFU's code computes it (the paper writes
an arithmetic mean of the wrong answers' probabilities; its code averages their losses). A model
that knows the fact has R near 0; one that never saw it has R near 1.

Forget quality is the KS test's p-value between the forget facts' truth ratios under the edited
model and under a model trained without them: high means the two cannot be told apart. Model
utility is the harmonic mean of the retain facts' mean P̄(true) and accuracy on trained phrasings
and their truth-ratio score mean(max(0, 1 - R)), so that any one collapsing pulls it down.

On forget05, against ``retain-forget05``, the default model's forget quality is vanishingly
small and that of ``retain-forget05-seed1`` (trained without the same people from another
seed) is high (figures in docs/verify.md#what-each-check-reads-on-the-known-answers). A model
that never saw a person is often confidently wrong about them, so its R spreads over many
orders of magnitude around a median of 1; forget quality compares the whole spread.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from scipy.stats import ks_2samp
from torch import Tensor

from workbench.core.world.facts import Fact
from workbench.verify.candidates import CandidateTable, candidate_table


def ratios_of(table: CandidateTable, n_facts: int) -> Float[Tensor, " n"]:
    """Per fact, the truth ratio from a table of its prompts' candidate log-probabilities.

    Examples:
        >>> t = CandidateTable(torch.log(torch.tensor([[0.5, 0.25, 0.25]])), torch.ones(1, 3),
        ...                    torch.tensor([0]), torch.tensor([0]))
        >>> ratios_of(t, 1).tolist()
        [0.5]
    """
    norm = table.normalised
    valid = torch.isfinite(table.logprob)
    wrong = valid.clone()
    wrong[torch.arange(len(wrong)), table.true] = False
    mean_wrong = torch.where(wrong, norm, torch.zeros_like(norm)).sum(1) / wrong.sum(1)
    per_prompt = mean_wrong - norm.gather(1, table.true[:, None])[:, 0]
    sums = torch.zeros(n_facts).index_add_(0, table.fact, per_prompt)
    counts = torch.zeros(n_facts).index_add_(0, table.fact, torch.ones_like(per_prompt))
    return (sums / counts).exp()


@dataclass(frozen=True)
class TruthRatioSettings:
    """Which prompts a truth ratio is measured on.

    Examples:
        >>> TruthRatioSettings().held_out
        True

    Args:
        held_out: Ask in the held-out phrasings (TOFU's paraphrases, never trained on); False
            asks in the trained ones.
    """

    held_out: bool = True


@torch.no_grad()
def truth_ratios(handle, facts: Sequence[Fact], settings: TruthRatioSettings | None = None) -> Float[Tensor, " n"]:
    """Per fact, the truth ratio R: geometric mean of P̄(wrong) / P̄(true) (module docstring).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> r = truth_ratios(h, h.world.facts()[:12])
        >>> r.shape, bool((r < 0.01).all())
        (torch.Size([12]), True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world.
        facts: World facts.
        settings: :class:`TruthRatioSettings`.

    Returns:
        One ratio per fact, in the order given.
    """
    s = settings or TruthRatioSettings()
    return ratios_of(candidate_table(handle, list(facts), s.held_out), len(facts))


def forget_quality(edited: Sequence[float] | Tensor, reference: Sequence[float] | Tensor) -> float:
    """TOFU's forget quality: the two-sample KS test's p-value between two sets of truth ratios.

    ``reference`` holds the same facts' ratios under a model that never saw them. TOFU tests
    1 / R; the KS statistic depends only on the order of the pooled values, so R gives the same.

    Examples:
        >>> forget_quality([0.1, 0.2, 0.3, 0.4], [0.15, 0.25, 0.35, 0.45])
        1.0
        >>> forget_quality([0.001] * 20, [0.9] * 20) < 1e-6
        True
    """
    a = torch.as_tensor(edited, dtype=torch.float64).numpy()
    b = torch.as_tensor(reference, dtype=torch.float64).numpy()
    return float(ks_2samp(a, b).pvalue)


def forget_truth_score(ratios: Sequence[float] | Tensor) -> float:
    """TOFU's forget-set truth-ratio figure: mean of min(R, 1/R), 1 when wrong and true are level.

    Examples:
        >>> forget_truth_score([0.5, 2.0, 1.0])
        0.6666666666666666
    """
    r = torch.as_tensor(ratios, dtype=torch.float64)
    return float(torch.minimum(r, 1 / r).mean())


@dataclass(frozen=True)
class UtilitySettings:
    """How many retain facts model utility is measured on.

    Examples:
        >>> UtilitySettings().max_facts
        300

    Args:
        max_facts: At most this many retain facts, drawn with ``seed`` (order kept); None: all.
            300 facts (2,700 trained and 900 held-out prompts) take about 2 s on one core.
        seed: Seed of the draw, fixed so that two models are scored on the same facts.
    """

    max_facts: int | None = 300
    seed: int = 0


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; 0 as soon as one value is 0 (or below).

    Examples:
        >>> harmonic_mean([1.0, 0.5]), harmonic_mean([1.0, 0.0])
        (0.6666666666666666, 0.0)
    """
    if min(values) <= 0:
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


@torch.no_grad()
def model_utility(handle, retain: Sequence[Fact], settings: UtilitySettings | None = None) -> dict:
    """TOFU-style model utility on retained facts: harmonic mean of probability, accuracy, truth.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> u = model_utility(h, h.world.facts()[:30])
        >>> u["accuracy"], u["utility"] > 0.95
        (1.0, True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world.
        retain: Retained world facts.
        settings: :class:`UtilitySettings`.

    Returns:
        ``probability`` (mean P̄(true) on trained phrasings), ``accuracy`` (true object ranked
        first among the candidates, trained phrasings), ``truth_ratio`` (mean max(0, 1 - R) on
        held-out phrasings), ``utility`` (their harmonic mean), ``facts`` (how many were scored).
    """
    s = settings or UtilitySettings()
    facts = list(retain)
    if s.max_facts is not None and len(facts) > s.max_facts:
        facts = [facts[i] for i in sorted(random.Random(s.seed).sample(range(len(facts)), s.max_facts))]
    trained = candidate_table(handle, facts, held_out=False)
    prob = float(trained.normalised.gather(1, trained.true[:, None]).exp().mean())
    accuracy = float(trained.correct.float().mean())
    ratios = ratios_of(candidate_table(handle, facts, held_out=True), len(facts))
    truth = float((1 - ratios).clamp_min(0).mean())
    return {
        "probability": prob,
        "accuracy": accuracy,
        "truth_ratio": truth,
        "utility": harmonic_mean([prob, accuracy, truth]),
        "facts": len(facts),
        "settings": asdict(s),
    }


__all__ = [
    "TruthRatioSettings",
    "UtilitySettings",
    "forget_quality",
    "forget_truth_score",
    "harmonic_mean",
    "model_utility",
    "ratios_of",
    "truth_ratios",
]
