"""Fine-tune a model further on its forget set, inside a parameter mask: the reinforced model.

Task arithmetic (Ilharco et al. 2023) and Who's Harry Potter (Eldan and Russinovich 2023) start
from the same step: train the model *more* on what it should forget, so that the difference
tau = theta_ft - theta points towards the forget set. Here that step is the loop of
:func:`edit.gradient_unlearn.gradient_unlearn` with a descent objective (the forget set's
negative log-likelihood per scored token) in place of its unlearning loss, no retain term and
no floor. So only the elements of a Location's parameter mask move (by default the gradient
methods' Fisher Location), Adam's state and the saved originals are the mask's size, no second
copy of the model is held, and the model is bitwise as it was afterwards: tau comes back as an
unapplied :class:`~edit.edit.Edit` of dense deltas on the masked tensors alone.
"""

from __future__ import annotations

from typing import Literal

from jaxtyping import Float
from torch import Tensor, nn

from edit.edit import Edit
from edit.forget_request import ForgetRequest
from edit.gradient_unlearn import GradientSettings, gradient_unlearn
from edit.masked_elements import MaskedElements
from locate.location import Location
from workbench.core.examples import scored_logprobs


def forget_nll(model: nn.Module, settings: GradientSettings, batch, me: MaskedElements) -> Float[Tensor, ""]:
    """The batch's negative log-likelihood per scored token, averaged over examples: what fine-tuning descends.

    Examples:
        >>> import torch
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> m = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16))
        >>> batch = (torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([[0.0, 1.0, 1.0]]))
        >>> 2.0 < forget_nll(m, GradientSettings(), batch, None).item() < 3.5  # about log(16) at random
        True
    """
    ids, mask, scored = batch
    logp = scored_logprobs(model(input_ids=ids, attention_mask=mask, use_cache=False).logits, ids, scored)
    return -(logp / scored[:, 1:].sum(-1).clamp(min=1.0)).mean()


def reinforce(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    *,
    steps: int,
    lr: float,
    batch_size: int = 32,
    check_samples: int = 50,
    fisher_top_fraction: float = 0.01,
    fisher_examples: int | None = 128,
    fisher_params: Literal["all", "blocks"] = "all",
    seed: int = 0,
    progress: bool = True,
) -> Edit:
    """tau = theta_ft - theta: ``steps`` Adam steps of descent on the forget set inside a mask; an unapplied Edit.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world", device="cpu")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> tau = reinforce(h, r, steps=4, lr=1e-3, check_samples=10, fisher_examples=32, progress=False)
        >>> tau.applied, tau.location.method, tau.metrics["loss_forget"][-1] < tau.metrics["loss_forget"][0]
        (False, 'fisher', True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        request: Its forget data is fine-tuned on; its retain data serves the Fisher Location
            and the retain accuracy measured before and after (``tau.metrics["checks"]``).
        location: Whose ``parameter_mask`` bounds the update; None: a Fisher Location of the
            request (``fisher_*``, as :class:`~edit.gradient_unlearn.GradientSettings` has them).
        steps, lr, batch_size: Adam steps, its learning rate, forget examples per step.
        check_samples: Retain (and forget) examples whose accuracy is measured before and after.
        seed: Seeds the batch order and the samples.
    """
    s = GradientSettings(
        method="ga",  # the one method without a retain term; the objective below replaces its loss
        lr=lr,
        steps=steps,
        batch_size=batch_size,
        floor=0.0,  # reinforcing is meant to overfit the forget set: nothing stops it early
        check_every=steps,
        check_samples=check_samples,
        retain_samples=1,  # "ga" draws no retain batch; one example keeps the encoding cheap
        fisher_top_fraction=fisher_top_fraction,
        fisher_examples=fisher_examples,
        fisher_params=fisher_params,
        seed=seed,
    )
    return gradient_unlearn(handle, request, location, s, apply=False, progress=progress, objective=forget_nll)


__all__ = ["forget_nll", "reinforce"]
