"""Gradient unlearning inside a parameter mask: gradient ascent, gradient difference, NPO.

Three losses on the forget data x, y (the answer's tokens after the prompt, or a text's tokens):

- "ga": gradient ascent, minimise log p(y|x), unbounded, so it runs until something stops it;
- "gradiff": the same plus ``retain_weight`` x the retain data's negative log-likelihood;
- "npo": negative preference optimisation (Zhang et al. 2024),
  -(2/beta) log sigmoid(-beta (log p(y|x) - log p_ref(y|x))), which saturates once the answer's
  probability has fallen well below the original's, plus ``retain_weight`` x the retain NLL
  (NPO+RT; retain_weight 0 gives plain NPO). p_ref is the model as it was, computed with the
  saved originals of the masked elements swapped in, so no second copy of the model is held.

Only the elements of a Location's parameter mask move (by default a Fisher Location: the
elements the forget set leans on far more than the retain set). Adam runs on flat leaves of
those elements alone (:mod:`edit.masked_elements`), so its state, the saved originals and the
gathered gradients are the mask's size, not the model's; no other element is ever written.
Every ``check_every`` steps the retain accuracy on a fixed sample is measured; once it falls
below ``floor`` x the original's, the run stops and rolls back to the last check that passed.

Other methods run through the same loop, mask, floor and rollback by passing their own pieces:
a forget loss, a retain loss, or forget batches of their own (KL minimisation in
:mod:`edit.kl_loss`, preference unlearning in :mod:`edit.preference_unlearn`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from edit.edit import Delta, Edit, EditError
from edit.edit_request import Forget
from edit.forget_request import ForgetError, ForgetRequest
from edit.masked_elements import MaskedElements, masked_elements
from locate.fisher import FisherSettings, fisher
from locate.location import Location
from workbench.core.examples import Example, encode_examples, example_batches, pad_examples, scored_logprobs
from workbench.core.hashing import tensor_hash

Method = Literal["ga", "gradiff", "npo"]
METHODS: tuple[str, ...] = ("ga", "gradiff", "npo")


@dataclass(frozen=True)
class GradientSettings:
    """Settings of a gradient unlearning run.

    Defaults from a sweep on the default world model, forget05 (figures in
    docs/forget.md#gradient-ascent-gradient-difference-npo). On this model forgetting costs
    retained facts at about the same rate, whatever the method, inside a block-only Fisher mask
    or on the whole model; a large retain weight keeps retained facts but forgets almost
    nothing, and GA at a high learning rate collapses the model. So the floor decides: at 0.98
    (the bar of a useful unlearning edit) NPO keeps only its first checks. Letting the Fisher
    mask reach the embeddings (``fisher_params="all"``, top 1%) changes that: the forgotten
    people's own name-token embeddings rank first, and NPO forgets much more before the floor
    stops it, with retained facts and neighbours nearly all kept. Hence those defaults.

    Examples:
        >>> GradientSettings().method, GradientSettings(method="ga").retain_weight
        ('npo', 1.0)
        >>> GradientSettings(method="sgd")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ForgetError: unknown method 'sgd'; expected one of ('ga', 'gradiff', 'npo')

    Args:
        method: "ga", "gradiff" or "npo" (see the module docstring).
        lr: Adam learning rate (no weight decay: elements outside the mask must not move).
        steps: At most this many steps; each sees one forget batch (and one retain batch).
        batch_size: Examples per forget batch and per retain batch.
        beta: NPO's inverse temperature.
        retain_weight: Weight of the retain NLL ("gradiff", "npo"); "ga" has no retain term.
        floor: Stop once retain accuracy on the check sample falls below floor x the original's,
            and roll back to the last check that passed.
        check_every: Steps between retain checks (also checked after the last step).
        check_samples: Retain facts (or texts) in the check sample; accuracy is argmax over the
            vocabulary on their answer tokens, so no world is needed.
        retain_samples: Retain facts (and texts) drawn for the retain term; None: all.
        fisher_top_fraction: Without a Location: the fraction of elements a Fisher Location
            keeps (ratio score, element granularity).
        fisher_examples: Without a Location: at most this many forget and retain examples
            each for the Fisher scores.
        fisher_params: Without a Location: which parameters the Fisher Location ranks, "all"
            (embeddings too) or "blocks" (inside the transformer blocks only).
        seed: Seeds the retain draws, the check sample and the batch order.
    """

    # The method names these settings accept; the settings of methods that reuse the loop
    # (edit/kl_loss.py, edit/preference_unlearn.py) subclass these with names of their own.
    NAMES: ClassVar[tuple[str, ...]] = METHODS
    method: Method = "npo"
    lr: float = 3e-3
    steps: int = 150
    batch_size: int = 32
    beta: float = 0.1
    retain_weight: float = 1.0
    floor: float = 0.98
    check_every: int = 10
    check_samples: int = 50
    retain_samples: int | None = 300
    fisher_top_fraction: float = 0.01
    fisher_examples: int | None = 128
    fisher_params: Literal["all", "blocks"] = "all"
    seed: int = 0

    def __post_init__(self):
        if self.method not in self.NAMES:
            raise ForgetError(f"unknown method {self.method!r}; expected one of {self.NAMES}")
        if min(self.steps, self.batch_size, self.check_every, self.check_samples) < 1:
            raise ForgetError("steps, batch_size, check_every and check_samples must be >= 1")
        if not self.lr > 0 or not self.beta > 0 or self.retain_weight < 0 or not 0 <= self.floor <= 1:
            raise ForgetError("lr and beta must be > 0, retain_weight >= 0, floor in [0, 1]")


def gradient_unlearn(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    settings: GradientSettings | None = None,
    apply: bool = True,
    progress: bool = True,
    objective: Callable[..., Tensor] | None = None,
    retain_objective: Callable[..., Tensor] | None = None,
    make_forget_batches: Callable[..., Iterator] | None = None,
) -> Edit:
    """Unlearn a forget set by gradient steps on a parameter mask; returns a dense :class:`Edit`.

    1. Encode the forget and retain data, and fixed retain and forget samples for the checks.
    2. The mask: the Location's parameter mask (by default a Fisher Location of the request).
    3. Each step: the method's loss (module docstring) on one forget batch and, but for "ga",
       one retain batch; Adam on the masked elements' gradient; them written into the model.
    4. Every ``check_every`` steps and after the last, retain accuracy on the check sample:
       below ``floor`` x the original's, stop; otherwise keep these weights.
    5. The Edit is the kept weights minus the original ones; the model is restored (and the
       Edit applied if ``apply``).

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world", device="cpu")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> s = GradientSettings(steps=30, floor=0.9, check_samples=20, retain_samples=100)
        >>> e = gradient_unlearn(h, r, settings=s, progress=False)
        >>> e.location.method, e.metrics["stopped"] in ("steps", "retain floor"), e.metrics["checks"][0][:2]
        ('fisher', True, [0, 1.0])
        >>> h.score(list(r.forget)).accuracy < 0.8, e.revert(h.model).applied
        (True, False)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        request: What to forget and what to keep (:func:`edit.forget_request.forget_request`).
        location: Whose ``parameter_mask`` bounds the update; None: a Fisher Location of the request.
        settings: :class:`GradientSettings`.
        apply: Apply the edit to ``handle.model`` before returning it.
        progress: Show a progress bar (stderr).
        objective: ``objective(model, settings, forget_batch, masked_elements)``, the loss on a
            forget batch in place of the method's (edit/finetune_forget.py fine-tunes with it).
        retain_objective: ``retain_objective(model, settings, retain_batch, masked_elements)``,
            the loss on a retain batch in place of its NLL (edit/kl_loss.py holds the retain
            set's next-token distribution with it).
        make_forget_batches: ``make_forget_batches(handle, request, settings)``, endless batches
            for ``objective`` in place of the forget data's shuffled examples
            (edit/preference_unlearn.py: the true answers with the preferred ones).

    Raises:
        ForgetError: a Location that selects no parameter, data with nothing to score.
        EditError: a non-finite loss (the model is left as it was).
    """
    s = settings or GradientSettings()
    t0 = time.perf_counter()
    model = handle.model
    # 1. The data: forget and retain batches for the losses, fixed samples for the checks.
    forget_batches = (make_forget_batches or _forget_batches)(handle, request, s)
    retain = encode_examples(handle, request.retain_data(s.retain_samples, s.seed), what="retain")
    retain_check = encode_examples(handle, request.retain_data(s.check_samples, s.seed + 1), what="retain check")
    forget_check = encode_examples(handle, request.forget_data(), s.check_samples * 4, s.seed, "forget")

    # 2. The elements that may move: the Location's parameter mask.
    if location is None:
        location = _fisher_location(handle, request, s)
    t_locate = time.perf_counter() - t0
    masks = {n: m for n, m in location.parameter_mask(model).items() if m.any()}
    if not masks:
        raise ForgetError(f"the {location.method} location selects no parameter to update")
    names = sorted(masks)
    hashes = {n: tensor_hash(model.get_parameter(n)) for n in names}
    # Only the masked elements move, so only they get leaves, Adam state and saved originals
    # (edit/masked_elements.py); whole-tensor copies of each would be about four models' worth.
    me = masked_elements(model, {n: masks.pop(n) for n in names})
    pad = handle.tokenizer.pad_token_id or 0
    losses, checks, stopped = [], [], "steps"
    training = model.training
    model.eval()  # no dropout: the same settings must give the same weights
    try:
        original_acc = _accuracy(model, retain_check, pad, handle.device)
        floor = s.floor * original_acc
        checks.append([0, original_acc, _accuracy(model, forget_check, pad, handle.device)])
        # The masked elements of the last check that passed: what the run rolls back to.
        kept, kept_step = me.originals, 0
        optimiser = torch.optim.Adam(list(me.values.values()), lr=s.lr)
        retain_batches = example_batches(retain, s.batch_size, pad, s.seed + 1, handle.device)
        bar = tqdm(range(1, s.steps + 1), desc=s.method, disable=not progress)
        with me.gathering_gradients():
            for step in bar:
                # 3. One step: the method's loss on a forget batch (and a retain batch), its
                # gradient gathered on the masked elements, Adam on them, and them written back.
                forget_batch = next(forget_batches)
                retain_batch = next(retain_batches) if s.method != "ga" else None
                # One graph at a time, each with its own backward: the forget and retain passes'
                # activations together, or every gradient of one waiting whole for the other's
                # in a shared backward, would be most of a step's memory on a 124M model.
                forget_loss = (objective or _forget_loss)(model, s, forget_batch, me)
                forget_loss.backward(inputs=list(me.params.values()))
                retain_loss = torch.zeros(())
                if retain_batch is not None:
                    retain_loss = (
                        retain_objective(model, s, retain_batch, me)
                        if retain_objective is not None
                        else _retain_nll(model, retain_batch)
                    )
                    (s.retain_weight * retain_loss).backward(inputs=list(me.params.values()))
                loss = forget_loss.detach() + s.retain_weight * retain_loss.detach()
                if not torch.isfinite(loss):
                    raise EditError(f"{s.method} loss became {float(loss)} at step {step}; the model is unchanged")
                optimiser.step()
                optimiser.zero_grad(set_to_none=True)
                me.write()
                losses.append([float(forget_loss.detach()), float(retain_loss.detach())])
                bar.set_postfix(forget=f"{losses[-1][0]:.3g}", retain=f"{losses[-1][1]:.3g}", refresh=False)

                # 4. Every check_every steps (and after the last): stop once retain accuracy
                # falls below the floor; otherwise these weights are the ones to keep.
                if step % s.check_every and step != s.steps:
                    continue
                retain_acc = _accuracy(model, retain_check, pad, handle.device)
                checks.append([step, retain_acc, _accuracy(model, forget_check, pad, handle.device)])
                if retain_acc < floor:
                    stopped = "retain floor"
                    break
                kept, kept_step = {n: v.detach().clone() for n, v in me.values.items()}, step

        # 5. The Edit holds the kept weights' difference; the model goes back as it was.
        with torch.no_grad():
            deltas = {n: Delta(dense=_masked_delta(kept[n], me, n)) for n in names}
            if not all(torch.isfinite(d.dense).all() for d in deltas.values()):
                raise EditError(f"{s.method} produced non-finite weights; the model is unchanged")
    finally:
        # Exact on success and on any failure alike: no element outside the mask was ever written.
        me.write(me.originals)
        model.train(training)
    metrics = {
        "steps": len(losses),
        "stopped": stopped,
        "kept_step": kept_step,
        "checks": checks,
        "retain_floor": floor,
        "loss_forget": [pair[0] for pair in losses],
        "loss_retain": [pair[1] for pair in losses],
        "masked_elements": sum(v.numel() for v in me.originals.values()),
        "locate_seconds": t_locate,
        "seconds": time.perf_counter() - t0,
    }
    edit = Edit(s.method, Forget.of(request), deltas, location, asdict(s), metrics, hashes_before=hashes)
    return edit.apply(model) if apply else edit


def _masked_delta(kept: Tensor, me: MaskedElements, name: str) -> Tensor:
    """The dense change of tensor ``name`` when its masked elements become ``kept``; zero elsewhere."""
    p = me.params[name]
    delta = torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
    i = me.index[name]
    change = kept - me.originals[name]
    if i is None:
        delta.copy_(change)
    else:
        delta.index_copy_(0, i, change)
    return delta.view(p.shape).cpu()


def _forget_batches(handle, request: ForgetRequest, s: GradientSettings) -> Iterator:
    """Endless shuffled batches of the forget data's examples (each method's own, but for its objective)."""
    forget = encode_examples(handle, request.forget_data(), what="forget")
    pad = handle.tokenizer.pad_token_id or 0
    return example_batches(forget, s.batch_size, pad, s.seed, handle.device)


def _fisher_location(handle, request: ForgetRequest, s: GradientSettings) -> Location:
    """The default mask: a Fisher Location of the elements the forget set leans on far more than the retain set."""
    return fisher(
        handle,
        request.forget_data(),
        request.retain_data(s.fisher_examples, s.seed),
        FisherSettings(
            top_fraction=s.fisher_top_fraction, max_examples=s.fisher_examples, seed=s.seed, params=s.fisher_params
        ),
        progress=False,
    ).to_location()


def batch_logp(model: nn.Module, batch) -> Float[Tensor, " b"]:
    """Per example of a padded (ids, mask, scored) batch, the summed log-probability of its scored tokens.

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> m = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16))
        >>> batch = (torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([[0.0, 1.0, 1.0]]))
        >>> batch_logp(m, batch).shape
        torch.Size([1])
    """
    ids, mask, scored = batch
    return scored_logprobs(model(input_ids=ids, attention_mask=mask, use_cache=False).logits, ids, scored)


@contextmanager
def original_weights(me: MaskedElements) -> Iterator[None]:
    """Within the block the model is as it was (the masked originals in) and records no gradient.

    The reference model of NPO, DPO and KL minimisation, without a second copy of the model.
    Enter it before the forward pass whose graph is kept: the swap writes the very tensors
    that pass saves for its backward.

    Examples:
        >>> from edit.masked_elements import masked_elements
        >>> m = nn.Linear(2, 1)
        >>> me = masked_elements(m, {"bias": torch.tensor([True])})
        >>> with torch.no_grad():
        ...     me.values["bias"] += 1.0
        >>> me.write()
        >>> with original_weights(me):
        ...     bool(torch.equal(m.bias, me.originals["bias"]))
        True
        >>> bool(torch.equal(m.bias, me.values["bias"]))
        True
    """
    with torch.no_grad():
        me.write(me.originals)
        try:
            yield
        finally:
            me.write()


def _forget_loss(model: nn.Module, s: GradientSettings, batch, me: MaskedElements) -> Float[Tensor, ""]:
    """The method's loss on a forget batch (see the module docstring)."""
    if s.method == "npo":
        # The reference model is this one with the masked originals swapped in (nothing else
        # differs), before the forward pass whose saved weights the swap must not touch.
        with original_weights(me):
            ref = batch_logp(model, batch)
    logp = batch_logp(model, batch)
    if s.method == "npo":
        return -(2.0 / s.beta) * F.logsigmoid(-s.beta * (logp - ref)).mean()
    return (logp / batch[2][:, 1:].sum(-1).clamp(min=1.0)).mean()


def _retain_nll(model: nn.Module, batch) -> Float[Tensor, ""]:
    """The retain batch's negative log-likelihood per scored token."""
    return -(batch_logp(model, batch).sum() / batch[2][:, 1:].sum().clamp(min=1.0))


@torch.no_grad()
def _accuracy(model: nn.Module, examples: Sequence[Example], pad: int, device, batch_size: int = 256) -> float:
    """Fraction of scored tokens that are the model's argmax over the whole vocabulary."""
    right, total = 0.0, 0.0
    for i in range(0, len(examples), batch_size):
        ids, mask, scored = (t.to(device) for t in pad_examples(examples[i : i + batch_size], pad))
        hit = _argmax_hits(model(input_ids=ids, attention_mask=mask, use_cache=False).logits, ids)
        right, total = right + float((hit * scored[:, 1:]).sum()), total + float(scored[:, 1:].sum())
    return right / max(total, 1.0)


def _argmax_hits(logits: Float[Tensor, "b t vocab"], ids: Int[Tensor, "b t"]) -> Float[Tensor, "b t-1"]:
    return (logits[:, :-1].argmax(-1) == ids[:, 1:]).float()


__all__ = ["METHODS", "GradientSettings", "batch_logp", "gradient_unlearn", "original_weights"]
