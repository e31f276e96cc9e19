"""Preference unlearning (DPO, Rafailov et al. 2023): prefer a wrong answer, or a refusal, to the true one.

Each forget question x (a fact's trained phrasing, or a question-answer record's question)
gives a pair: the true answer y_r is rejected, another answer y_c chosen. The loss is DPO's,
scaled as TOFU and open-unlearning scale it:

    -(2/beta) log sigmoid(beta [(log p(y_c|x) - log p_ref(y_c|x)) - (log p(y_r|x) - log p_ref(y_r|x))])

plus ``retain_weight`` x the retain data's negative log-likelihood (as NPO+RT). p_ref is the
model as it was, with the saved originals of the masked elements swapped in, so no second copy
of the model is held; the mask, the retain floor and the rollback are those of
:func:`edit.gradient_unlearn.gradient_unlearn`, whose loop runs it. Two methods differ only in
the chosen answer:

- ``dpo``: a deliberately wrong answer: for a world fact, another candidate of its relation
  (``world.relation(r).candidates``), drawn with the seed; for a question-answer record, one of
  its perturbed answers;
- ``idk``: a refusal (TOFU's IdkDPO), one of a few phrasings drawn per question
  (:mod:`edit.refusal`); on the default world, whose word-level tokenizer spells none of them,
  the unknown token stands in for a refusal, and the Edit's metrics say so.

Plain texts have no question and answer to tell apart, so a request with forget texts is
refused. After the edit, the refusal rates on forget and retain prompts go into
``edit.metrics`` ("refusal_forget", "refusal_retain"): refusing everything is a failure.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from edit.edit import Edit
from edit.forget_request import ForgetError, ForgetRequest
from edit.gradient_unlearn import GradientSettings, batch_logp, gradient_unlearn, original_weights
from edit.masked_elements import MaskedElements
from edit.refusal import REFUSALS, is_unknown_token, refusal_rates, refusals_for
from locate.location import Location
from workbench.core.examples import Example, encode_examples, pad_examples


@dataclass(frozen=True)
class PreferenceSettings(GradientSettings):
    """Settings of preference unlearning: those of :class:`~edit.gradient_unlearn.GradientSettings`, and the refusals.

    Examples:
        >>> PreferenceSettings().method, PreferenceSettings().beta, PreferenceSettings(method="idk").refusals[0]
        ('dpo', 0.1, "I don't know")
        >>> PreferenceSettings(refusals=())  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ForgetError: refusals must be non-empty phrasings, got ()

    Args:
        method: "dpo" (a wrong answer is preferred) or "idk" (a refusal is preferred).
        beta: DPO's inverse temperature: 0.1, as TOFU and open-unlearning use. The loss
            saturates once the chosen answer's log-ratio exceeds the true one's by a few 1/beta.
        retain_weight: Weight of the retain NLL (1, as TOFU's DPO; 0: DPO alone).
        refusals: The refusal phrasings of ``idk``, each spelled after the question with one
            space; those the tokenizer can only spell with its unknown token are dropped, and
            where none is left the unknown token itself stands in (the default world).
        refusal_samples: Forget prompts, and retain prompts, whose greedy answers give the
            refusal rates after the edit.
        The others: as :class:`~edit.gradient_unlearn.GradientSettings`.
    """

    NAMES: ClassVar[tuple[str, ...]] = ("dpo", "idk")
    method: Literal["dpo", "idk"] = "dpo"
    refusals: tuple[str, ...] = REFUSALS
    refusal_samples: int = 50

    def __post_init__(self):
        super().__post_init__()
        if not self.refusals or not all(isinstance(r, str) and r.strip() for r in self.refusals):
            raise ForgetError(f"refusals must be non-empty phrasings, got {self.refusals!r}")
        if self.refusal_samples < 1:
            raise ForgetError(f"refusal_samples must be >= 1, got {self.refusal_samples}")


@dataclass(frozen=True)
class Pair:
    """One preference: after ``prompt``, ``chosen`` is to be preferred to ``rejected`` (the true answer)."""

    prompt: str
    rejected: str
    chosen: str


def preference_pairs(
    handle, request: ForgetRequest, method: str = "dpo", refusals: Sequence[str] = REFUSALS, seed: int = 0
) -> list[Pair]:
    """The request's forget questions, each with its true answer and the answer to prefer.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> p = preference_pairs(h, r, "dpo")[0]
        >>> p.rejected, p.chosen != p.rejected, p.chosen in h.world.relation("birthplace").candidates
        ('Krigril', True, True)
        >>> {p.chosen for p in preference_pairs(h, r, "idk")}  # the world's stand-in for a refusal
        {'[UNK]'}
        >>> preference_pairs(h, ForgetRequest("t", forget_texts=("a b",), retain_texts=("c d",)))
        ... # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ForgetError: dpo needs questions with answers (world facts or question-answer records), not plain texts

    Raises:
        ForgetError: forget texts (no question/answer split), a fact without a world, a
            question-answer record without a perturbed answer (``dpo``).
    """
    if request.forget_texts:
        raise ForgetError(
            f"{method} needs questions with answers (world facts or question-answer records), not plain texts: "
            f"the {len(request.forget_texts)} forget text(s) have no question/answer split"
        )
    rng = random.Random(seed)
    spelled = refusals_for(handle.tokenizer, refusals) if method == "idk" else ()
    pairs: list[Pair] = []
    for f in request.forget:
        if handle.world is None:
            raise ForgetError(f"model {handle.name!r} has no fact world to phrase facts with")
        # One wrong answer per fact, the same in every phrasing: the model is taught one lie, not several.
        wrong = [c for c in handle.world.relation(f.relation).candidates if c != f.object]
        if method == "dpo" and not wrong:
            raise ForgetError(f"relation {f.relation!r} has no candidate but {f.object!r} to prefer")
        lie = rng.choice(wrong) if method == "dpo" else None
        for ph in handle.world.phrasings(f.relation):
            pairs.append(Pair(ph.prompt(f.subject), f.object, lie or rng.choice(spelled)))
    for q in request.forget_qa:
        if method == "dpo":
            wrong = [a for a in q.perturbed_answers if a != q.answer]
            if not wrong:
                raise ForgetError(f"dpo needs a wrong answer to each question: {q.question!r} has no perturbed_answer")
            pairs.append(Pair(q.question, q.answer, rng.choice(wrong)))
        else:
            pairs.append(Pair(q.question, q.answer, rng.choice(spelled)))
    return pairs


def encode_pairs(handle, pairs: Sequence[Pair]) -> tuple[list[Example], list[Example]]:
    """(rejected, chosen) examples of the pairs, row for row: the prompt, then the answer's tokens scored.

    The unknown token as an answer is that one token (the tokenizer would refuse it as a word).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> rejected, chosen = encode_pairs(h, [Pair("Tikrelm Robreir was born in", "Krigril", "[UNK]")])
        >>> rejected[0][0][:-1] == chosen[0][0][:-1], chosen[0][0][-1] == h.tokenizer.unk_token_id, chosen[0][1]
        (True, True, [6])
    """
    tok = handle.tokenizer
    rejected = encode_examples(handle, [(p.prompt, p.rejected) for p in pairs], what="forget")
    spelled = [i for i, p in enumerate(pairs) if p.chosen != tok.unk_token]
    encoded = (
        encode_examples(handle, [(pairs[i].prompt, pairs[i].chosen) for i in spelled], what="chosen") if spelled else []
    )
    by_row = dict(zip(spelled, encoded, strict=True))
    chosen = []
    for i, (ids, scored) in enumerate(rejected):
        prompt = ids[: scored[0]]
        chosen.append(by_row[i] if i in by_row else (prompt + [tok.unk_token_id], [len(prompt)]))
    return rejected, chosen


def pair_batches(
    rejected: Sequence[Example], chosen: Sequence[Example], batch_size: int, pad: int, seed: int = 0, device=None
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Endless shuffled batches of ``batch_size`` pairs: their rejected rows, then their chosen rows in the same order.

    One padded batch holds both halves, so one forward pass scores a pair's two answers.

    Examples:
        >>> ids, mask, scored = next(pair_batches([([1, 2], [1])], [([1, 3, 4], [1, 2])], batch_size=4, pad=0))
        >>> ids.tolist(), scored.sum(-1).tolist()
        ([[1, 2, 0], [1, 3, 4]], [1.0, 2.0])
    """
    rng = random.Random(seed)
    order = list(range(len(rejected)))
    while True:
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = pad_examples([rejected[i] for i in chunk] + [chosen[i] for i in chunk], pad)
            yield tuple(t.to(device) if device is not None else t for t in batch)


def dpo_loss(model: nn.Module, settings: GradientSettings, batch, me: MaskedElements) -> Float[Tensor, ""]:
    """DPO's loss on a batch of :func:`pair_batches` (see the module docstring), averaged over pairs.

    Examples:
        >>> import torch
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> from edit.masked_elements import masked_elements
        >>> config = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, bos_token_id=0, eos_token_id=0)
        >>> m = AutoModelForCausalLM.from_config(config).eval()
        >>> me = masked_elements(m, {"lm_head.weight": torch.ones(16, 8, dtype=torch.bool)})
        >>> batch = next(pair_batches([([1, 2], [1])], [([1, 3], [1])], batch_size=1, pad=0))
        >>> s = PreferenceSettings()
        >>> round(float(dpo_loss(m, s, batch, me).detach()), 4)  # at the reference: (2 / beta) log 2
        13.8629
    """
    # The reference pass first: the swap writes the weights the second pass saves for backward.
    with original_weights(me):
        ref = batch_logp(model, batch)
    rejected, chosen = (batch_logp(model, batch) - ref).chunk(2)
    return -(2.0 / settings.beta) * F.logsigmoid(settings.beta * (chosen - rejected)).mean()


def preference_batches(handle, request: ForgetRequest, s: PreferenceSettings) -> Iterator:
    """The forget batches of :func:`preference_unlearn`: the request's pairs, encoded and shuffled."""
    rejected, chosen = encode_pairs(handle, preference_pairs(handle, request, s.method, s.refusals, s.seed))
    pad = handle.tokenizer.pad_token_id or 0
    return pair_batches(rejected, chosen, s.batch_size, pad, s.seed, handle.device)


def preference_unlearn(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    settings: PreferenceSettings | None = None,
    apply: bool = True,
    progress: bool = True,
) -> Edit:
    """Unlearn by preferring a wrong answer (``dpo``) or a refusal (``idk``) to the true one; a dense Edit.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world", device="cpu")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> s = PreferenceSettings(method="idk", steps=10, lr=1e-2, floor=0.9, check_every=5, check_samples=20,
        ...                        retain_samples=50, fisher_examples=32, refusal_samples=20)
        >>> e = preference_unlearn(h, r, settings=s, progress=False)
        >>> e.method, e.metrics["refusals"], e.metrics["refusal_unknown_token"], 0 <= e.metrics["refusal_retain"] <= 1
        ('idk', ['[UNK]'], True, True)
        >>> e.revert(h.model).applied
        False

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        request: Facts or question-answer records to forget (texts are refused), and what to keep.
        location: Whose ``parameter_mask`` bounds the update; None: a Fisher Location of the request.
        settings: :class:`PreferenceSettings`.
        apply: Apply the edit to ``handle.model`` before returning it (the refusal rates are
            measured with it applied either way).
        progress: Show a progress bar (stderr).

    Raises:
        ForgetError: forget texts, a question without a perturbed answer (``dpo``), a Location
            that selects no parameter.
        EditError: a non-finite loss (the model is left as it was).
    """
    s = settings or PreferenceSettings()
    edit = gradient_unlearn(
        handle, request, location, s, apply, progress, objective=dpo_loss, make_forget_batches=preference_batches
    )
    spelled = refusals_for(handle.tokenizer, s.refusals)
    if apply:
        rates = refusal_rates(handle, request, spelled, s.refusal_samples, s.seed)
    else:
        with edit.applied_to(handle.model):
            rates = refusal_rates(handle, request, spelled, s.refusal_samples, s.seed)
    edit.metrics.update(
        rates, refusals=list(spelled), refusal_unknown_token=is_unknown_token(handle.tokenizer, spelled)
    )
    return edit


__all__ = [
    "Pair",
    "PreferenceSettings",
    "dpo_loss",
    "encode_pairs",
    "pair_batches",
    "preference_batches",
    "preference_pairs",
    "preference_unlearn",
]
