"""KL minimisation (TOFU's "KL Min"): ascend on the forget set, hold the retain set's predictions.

Gradient ascent on the forget data, as ``ga`` (:mod:`edit.gradient_unlearn`), plus
``retain_weight`` x KL(p_orig || p) of the next-token distribution over the whole vocabulary,
at each retain example's scored positions, averaged over those positions. Where gradient
difference asks the model to keep *predicting the retain answers* (their NLL), this asks it to
keep *its whole distribution* there, the unlikely tokens included. p_orig is the model as it
was, computed with the saved originals of the masked elements swapped in, as NPO's reference
is, so no second copy of the model is held. The mask, the retain floor and the rollback are
those of :func:`edit.gradient_unlearn.gradient_unlearn`, whose loop runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from edit.edit import Edit
from edit.forget_request import ForgetRequest
from edit.gradient_unlearn import GradientSettings, gradient_unlearn, original_weights
from edit.masked_elements import MaskedElements
from locate.location import Location


@dataclass(frozen=True)
class KlSettings(GradientSettings):
    """Settings of KL unlearning: those of :class:`~edit.gradient_unlearn.GradientSettings`.

    ``retain_weight`` weighs the KL term (TOFU and open-unlearning use 1); ``beta`` is unused.
    The defaults are the gradient methods' (the floor decides how far it goes).

    Examples:
        >>> KlSettings().method, KlSettings(floor=0.9).retain_weight
        ('kl', 1.0)
        >>> KlSettings(method="npo")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ForgetError: unknown method 'npo'; expected one of ('kl',)
    """

    NAMES: ClassVar[tuple[str, ...]] = ("kl",)
    method: Literal["kl"] = "kl"


def retain_kl(model: nn.Module, settings: GradientSettings, batch, me: MaskedElements) -> Float[Tensor, ""]:
    """KL(p_orig || p) of the next token at the retain batch's scored positions, averaged over them.

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> from edit.masked_elements import masked_elements
        >>> config = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, bos_token_id=0, eos_token_id=0)
        >>> m = AutoModelForCausalLM.from_config(config).eval()
        >>> me = masked_elements(m, {"lm_head.weight": torch.ones(16, 8, dtype=torch.bool)})
        >>> batch = (torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([[0.0, 1.0, 1.0]]))
        >>> float(retain_kl(m, KlSettings(), batch, me).detach())  # the model is still the original
        0.0
        >>> with torch.no_grad():
        ...     _ = me.values["lm_head.weight"].mul_(3.0)
        >>> me.write(); float(retain_kl(m, KlSettings(), batch, me).detach()) > 0
        True
    """
    ids, mask, scored = batch
    # Position t predicts token t + 1: the rows that predict a scored token.
    at = scored[:, 1:].bool()
    with original_weights(me):
        ref = torch.log_softmax(
            model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][at].float(), -1
        )
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][at].float(), -1)
    # kl_div(input=log p, target=log p_orig) sums p_orig (log p_orig - log p); batchmean divides by positions.
    return F.kl_div(logp, ref, reduction="batchmean", log_target=True)


def kl_unlearn(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    settings: KlSettings | None = None,
    apply: bool = True,
    progress: bool = True,
) -> Edit:
    """Unlearn by gradient ascent on the forget set with the retain set held to its original predictions.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world", device="cpu")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> s = KlSettings(steps=10, floor=0.9, check_every=5, check_samples=20, retain_samples=50, fisher_examples=32)
        >>> e = kl_unlearn(h, r, settings=s, progress=False)
        >>> e.method, e.location.method, e.metrics["loss_retain"][0] >= 0.0
        ('kl', 'fisher', True)
        >>> e.revert(h.model).applied
        False

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        request: What to forget and what to keep (:func:`edit.forget_request.forget_request`).
        location: Whose ``parameter_mask`` bounds the update; None: a Fisher Location of the request.
        settings: :class:`KlSettings`.
        apply: Apply the edit to ``handle.model`` before returning it.
        progress: Show a progress bar (stderr).

    Raises:
        ForgetError: a Location that selects no parameter, data with nothing to score.
        EditError: a non-finite loss (the model is left as it was).
    """
    s = settings or KlSettings()
    # No forget objective: the loop's own for any method but "npo" is gradient ascent's.
    return gradient_unlearn(handle, request, location, s, apply, progress, retain_objective=retain_kl)


__all__ = ["KlSettings", "kl_unlearn", "retain_kl"]
