"""Membership inference: can the model's likelihoods tell the forgotten text from text it never saw?

Two reference-free scores of a text, higher meaning "more likely trained on":

* Min-K% (Shi et al., 2024): the mean of the lowest k% of the per-token log-probabilities
  log p(x_t | x_<t). Unseen text tends to hold a few very unlikely tokens.
* Min-K%++ (Zhang et al., 2025): each token's log-probability standardised against the model's
  own next-token distribution at that position, (log p(x_t) - mu_t) / sigma_t with
  mu_t = E_z[log p(z)] and sigma_t^2 = Var_z[log p(z)] for z ~ p(. | x_<t); then the mean of the
  lowest k%. Training makes seen tokens local maxima of the likelihood, not merely likely ones.

Every token after the first is scored (the first has no context; in the world it is BOS), except
those of a substring the caller names: the world's subject names are inputs only in training
(``workbench/core/world/train.py`` never predicts them, being random draws), so their likelihood says
nothing about membership and, being the least likely tokens of every sentence, would fill the
lowest k% of seen and unseen text alike.

:func:`mia_auc` is the ROC AUC of telling forget texts from holdout texts by a score, and, as in
MUSE's privacy leakage (Shi et al., 2024), the reference is the same AUC under the model trained
without the forgotten people. The world has no person that no model saw, so the holdout set that
neither model trained on and that is otherwise like the forget set is counterfactual
(:func:`mia_texts`): the forgotten people's training sentences with the object swapped for
another candidate of the relation, names not scored. Objects are drawn independently and
uniformly, so a model that never saw those people finds true and swapped sentences equally
likely, while the original model, trained on the true ones, tells them apart: on forget05 both
scores separate them perfectly for the default model and not at all for the retain models.
Other people's sentences make a poor holdout: they are trained on by every model, so the gap
between the original and the retain model measures who the model knows rather than what it
memorised (figures in docs/verify.md#what-each-check-reads-on-the-known-answers).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from scipy.stats import mannwhitneyu
from torch import Tensor

from workbench.core.padding import pad_right
from workbench.core.tokens import encode_prompts
from workbench.core.world.facts import Fact, World

# A text, or a (text, substring of it whose tokens are not scored) pair.
Text = str | tuple[str, str]


@dataclass(frozen=True)
class MembershipSettings:
    """Settings of the Min-K% and Min-K%++ scores.

    Examples:
        >>> MembershipSettings().k
        0.2

    Args:
        k: Fraction of a text's scored tokens that are averaged, the least likely ones (at least
            one token). Both papers find 20% about best; world sentences have 8 to 14 tokens, so
            20% is one or two tokens.
        batch_size: Texts per forward pass.
    """

    k: float = 0.2
    batch_size: int = 256

    def __post_init__(self):
        if not 0 < self.k <= 1:
            raise ValueError(f"k must be in (0, 1], got {self.k}")


def _split(texts: Sequence[Text]) -> tuple[list[str], list[str | None]]:
    plain = [t if isinstance(t, str) else t[0] for t in texts]
    return plain, [None if isinstance(t, str) else t[1] for t in texts]


def _scored(handle, texts: list[str], ignore: list[str | None]) -> list[list[bool]]:
    """Per text, whether each token is scored: never the first, nor one inside the ignored substring."""
    enc = handle.tokenizer(texts, return_offsets_mapping=True)
    out = []
    for text, skip, offs in zip(texts, ignore, enc.offset_mapping, strict=True):
        a = text.find(skip) if skip else -1
        if skip and a < 0:
            raise ValueError(f"{skip!r} does not occur in {text!r}")
        b = a + len(skip) if skip else -1
        out.append([i > 0 and not (a >= 0 and s < b and e > a) for i, (s, e) in enumerate(offs)])
    return out


@torch.no_grad()
def token_scores(
    handle, texts: Sequence[Text], plus_plus: bool, batch_size: int = 256
) -> list[Float[Tensor, " tokens"]]:
    """Per text, each scored token's log-probability (or its Min-K%++ standardised form).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> fact = h.world.facts()[0]
        >>> text = fact.sentence(h.world.phrasings(fact.relation)[0])
        >>> s = token_scores(h, [text], plus_plus=False)[0]
        >>> len(s) == len(h.tokens(text)) - 1, bool((s <= 0).all())
        (True, True)
        >>> len(token_scores(h, [(text, fact.subject)], plus_plus=False)[0]) == len(s) - 2  # two name tokens
        True

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        texts: Texts, or (text, substring whose tokens are not scored) pairs.
        plus_plus: Standardise as Min-K%++ does; else plain log-probabilities.
        batch_size: Texts per forward pass.
    """
    plain, ignore = _split(texts)
    ids = encode_prompts(handle.tokenizer, plain)
    scored = _scored(handle, plain, ignore)
    if not all(any(row) for row in scored):
        raise ValueError("every text needs a scored token: the first token and ignored substrings never are")
    pad = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None else 0
    out: list[Tensor] = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        x, mask = pad_right(chunk, pad)
        logits = handle.model(input_ids=x.to(handle.device), attention_mask=mask.to(handle.device)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        score = logp.gather(-1, x[:, 1:, None].to(logp.device))[..., 0]
        if plus_plus:
            p = logp.exp()
            mu = (p * logp).sum(-1)
            # The centred form of the variance; E[log p^2] - mu^2 cancels badly when p is peaked.
            sigma = (p * (logp - mu[..., None]) ** 2).sum(-1).clamp_min(1e-12).sqrt()
            score = (score - mu) / sigma
        for i, keep in enumerate(scored[start : start + len(chunk)]):
            # Position t - 1 predicts token t, so token t's score sits in column t - 1.
            out.append(score[i, : len(keep) - 1][torch.tensor(keep[1:], device=score.device)].cpu())
    return out


def _lowest_mean(scores: list[Tensor], k: float) -> Float[Tensor, " n"]:
    # Shi et al. take int(k * length) tokens; a short text still keeps its least likely one.
    return torch.stack([s.sort().values[: max(1, int(k * len(s)))].mean() for s in scores])


def min_k(handle, texts: Sequence[Text], settings: MembershipSettings | None = None) -> Float[Tensor, " n"]:
    """Min-K% score of each text: mean of its lowest k% token log-probabilities.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> forget, holdout = mia_texts(h.world, h.world.facts()[:1])
        >>> bool((min_k(h, forget) > min_k(h, holdout)).all())  # seen sentences vs swapped objects
        True
    """
    s = settings or MembershipSettings()
    return _lowest_mean(token_scores(handle, texts, False, s.batch_size), s.k)


def min_k_plus_plus(handle, texts: Sequence[Text], settings: MembershipSettings | None = None) -> Float[Tensor, " n"]:
    """Min-K%++ score of each text: mean of its lowest k% standardised token log-probabilities.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> forget, holdout = mia_texts(h.world, h.world.facts()[:1])
        >>> bool((min_k_plus_plus(h, forget) > min_k_plus_plus(h, holdout)).all())
        True
    """
    s = settings or MembershipSettings()
    return _lowest_mean(token_scores(handle, texts, True, s.batch_size), s.k)


SCORERS: dict[str, Callable] = {"min_k": min_k, "min_k++": min_k_plus_plus}


def roc_auc(positive: Sequence[float] | Tensor, negative: Sequence[float] | Tensor) -> float:
    """ROC AUC of telling positives from negatives by score: P(pos > neg) + P(tie) / 2.

    The Mann-Whitney U statistic of the positives divided by the number of pairs.

    Examples:
        >>> roc_auc([3.0, 4.0], [1.0, 2.0]), roc_auc([1.0, 2.0], [1.0, 2.0]), roc_auc([1.0], [2.0])
        (1.0, 0.5, 0.0)
    """
    a = torch.as_tensor(positive, dtype=torch.float64).numpy()
    b = torch.as_tensor(negative, dtype=torch.float64).numpy()
    if not len(a) or not len(b):
        raise ValueError("both sets need at least one score")
    return float(mannwhitneyu(a, b).statistic / (len(a) * len(b)))


def mia_auc(
    handle,
    forget_texts: Sequence[Text],
    holdout_texts: Sequence[Text],
    method: str = "min_k++",
    settings: MembershipSettings | None = None,
) -> float:
    """ROC AUC of a membership score telling forget texts (positive) from holdout texts.

    Near 1: the model still treats the forget texts as trained on; near 0.5: as unseen. Compare
    with the same figure of the model trained without them (:func:`privacy_leak`).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> forget, holdout = mia_texts(h.world, h.world.facts(list(h.world.people)[:2]))
        >>> mia_auc(h, forget, holdout, "min_k") > 0.9
        True

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        forget_texts, holdout_texts: Texts the model was (forget) and was not (holdout) trained
            on; each a string or a (text, substring not scored) pair.
        method: A key of :data:`SCORERS`: "min_k" or "min_k++".
        settings: :class:`MembershipSettings`.
    """
    if method not in SCORERS:
        raise ValueError(f"unknown membership score {method!r}: choose from {', '.join(SCORERS)}")
    score = SCORERS[method]
    return roc_auc(score(handle, forget_texts, settings), score(handle, holdout_texts, settings))


def privacy_leak(auc: float, reference_auc: float) -> float:
    """MUSE's privacy leakage: (AUC - reference AUC) / reference AUC, 0 for exact unlearning.

    Positive: the forget set still looks trained on; negative: it looks less seen than text the
    model never saw (over-unlearning, itself a tell).

    Examples:
        >>> privacy_leak(0.75, 0.5), privacy_leak(0.5, 0.5)
        (0.5, 0.0)
    """
    return (auc - reference_auc) / reference_auc


@dataclass(frozen=True)
class TextSettings:
    """How :func:`mia_texts` phrases the forget set and draws the counterfactual objects.

    Examples:
        >>> TextSettings().held_out
        False

    Args:
        held_out: Use the held-out phrasings (never trained on, for any person) instead of the
            trained ones; the forget texts are then not training data verbatim.
        seed: Seed of the swapped objects.
    """

    held_out: bool = False
    seed: int = 0


def mia_texts(
    world: World, facts: Sequence[Fact], settings: TextSettings | None = None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Forget texts (each fact's sentence in every trained phrasing) and their counterfactual holdout.

    The holdout sentence of a (fact, phrasing) is the same sentence with the object replaced by
    another candidate of the relation, drawn uniformly with the settings' seed: text no model
    was trained on, like the forget text in everything but the answer. Each text comes paired
    with its subject, whose tokens are not scored (module docstring).

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> forget, holdout = mia_texts(w, w.facts()[:1])
        >>> len(forget), forget[0][1] == holdout[0][1] == w.facts()[0].subject
        (9, True)
        >>> forget[0][0].rsplit(" ", 2)[0] == holdout[0][0].rsplit(" ", 2)[0], forget[0][0] != holdout[0][0]
        (True, True)
    """
    s = settings or TextSettings()
    rng = random.Random(s.seed)
    forget, holdout = [], []
    for f in facts:
        others = [c for c in world.relation(f.relation).candidates if c != f.object]
        for ph in world.phrasings(f.relation, held_out=s.held_out):
            forget.append((f.sentence(ph), f.subject))
            holdout.append((Fact(f.subject, f.relation, rng.choice(others)).sentence(ph), f.subject))
    return forget, holdout


__all__ = [
    "MembershipSettings",
    "SCORERS",
    "Text",
    "TextSettings",
    "mia_auc",
    "mia_texts",
    "min_k",
    "min_k_plus_plus",
    "privacy_leak",
    "roc_auc",
    "token_scores",
]
