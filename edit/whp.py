"""Who's Harry Potter (Eldan and Russinovich 2023): fine-tune towards generic predictions on the forget data.

1. A reinforced model: the model fine-tuned further on the forget set
   (:func:`edit.finetune_forget.reinforce`, the fine-tuning task vectors use too).
2. Generic targets at every scored position of the forget data:
   v_generic = v_base - alpha relu(v_reinforced - v_base), the logits the reinforcement raised
   pushed down. Where the forget data are world facts, the forgotten person is also an
   anchored term: each prompt is translated by replacing the person's name with a generic name
   (:func:`generic_names`), and the base model's logits on the translated prompt take
   v_base's place, the reinforcement offset still measured on the original prompt. Plain texts
   (a user's files) name no entity the request declares, so only the reinforcement part
   applies to them. As in the paper the targets are the argmax of v_generic (hard labels).
3. The model is fine-tuned to those labels on the original forget prompts, with the gradient
   methods' loop (:func:`edit.gradient_unlearn.gradient_unlearn`): inside the same mask, with
   a retain NLL term and its retain-accuracy floor, rolled back to the last check above it.

Where this differs from the paper: the anchors are the request's people, not terms an
external model extracts; the fine-tuning moves only a Location's masked elements and is held
by a retain term and floor, where the paper fine-tunes the whole model on generic labels alone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from edit.edit import Edit
from edit.edit_request import Forget
from edit.finetune_forget import reinforce
from edit.forget_request import ForgetError, ForgetRequest
from edit.gradient_unlearn import GradientSettings, gradient_unlearn
from edit.masked_elements import MaskedElements, masked_elements
from locate.location import Location
from workbench.core.examples import Datum, Example, encode_examples, pad_examples
from workbench.core.world.facts import Fact, World


@dataclass(frozen=True)
class WhpSettings:
    """Settings of Who's Harry Potter.

    Defaults: the reinforcement budget is task-vector's (checked on the default world model,
    forget01 and one person); the fine-tuning's steps, learning rate, retain term and floor are
    the gradient methods' defaults. On one person of the world model, with anchored names the
    generic labels differ from the true objects at most positions, so alpha matters most on
    plain texts, and a shorter run already lowers forget accuracy with retained facts kept
    (tests/edit/test_whp.py). Tensors: the gradient methods' Fisher Location (see
    :class:`~edit.task_vector.TaskVectorSettings` for why).

    Examples:
        >>> WhpSettings().alpha, WhpSettings().anchored, WhpSettings(alpha=0).alpha
        (1.0, True, 0)
        >>> WhpSettings(floor=2)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ForgetError: whp needs alpha >= 0, lr and reinforce_lr > 0, retain_weight >= 0, floor in [0, 1]

    Args:
        alpha: Weight of the reinforcement offset in v_generic (0: anchored terms alone).
        reinforce_steps, reinforce_lr: The reinforced model's fine-tuning budget and learning rate.
        steps, lr: Adam steps towards the generic labels (each one forget and one retain batch).
        batch_size: Examples per forget batch and per retain batch.
        retain_weight: Weight of the retain NLL beside the generic labels' cross-entropy.
        floor: Stop once retain accuracy falls below floor x the original's (and roll back).
        check_every, check_samples, retain_samples: As in :class:`~edit.gradient_unlearn.GradientSettings`.
        anchored: Translate world facts' prompts to generic names (False: reinforcement alone).
        fisher_top_fraction, fisher_examples, fisher_params: Without a Location: the Fisher
            Location, as the gradient methods have it.
        seed: Seeds the generic names, the batch order and the samples.
    """

    alpha: float = 1.0
    reinforce_steps: int = 30
    reinforce_lr: float = 3e-3
    steps: int = 150
    lr: float = 3e-3
    batch_size: int = 32
    retain_weight: float = 1.0
    floor: float = 0.98
    check_every: int = 10
    check_samples: int = 50
    retain_samples: int | None = 300
    anchored: bool = True
    fisher_top_fraction: float = 0.01
    fisher_examples: int | None = 128
    fisher_params: Literal["all", "blocks"] = "all"
    seed: int = 0

    def __post_init__(self):
        ok = self.alpha >= 0 and self.lr > 0 and self.reinforce_lr > 0 and self.retain_weight >= 0
        if not ok or not 0 <= self.floor <= 1:
            raise ForgetError("whp needs alpha >= 0, lr and reinforce_lr > 0, retain_weight >= 0, floor in [0, 1]")


def generic_names(world: World, people: Sequence[str], seed: int = 0) -> dict[str, str]:
    """A generic stand-in per person: two of the world's first names, a full name nobody has.

    The world's tokenizer knows only the world's words, so a stand-in is built from words it
    has seen as names: a first name, then another first name where a family name goes. No
    person's family name is a first name, so the model looks up nobody's facts at its last
    token; no word of a forgotten person's name is used, so no part of the anchor survives.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> people = w.split("forget05").forget
        >>> names = generic_names(w, people)
        >>> len(set(names.values())) == len(people), any(n in w.people for n in names.values())
        (True, False)
        >>> generic_names(w, people) == names
        True
    """
    firsts = sorted({p.split()[0] for p in world.people})
    lasts = {p.split()[-1] for p in world.people}
    avoid = {word for p in people for word in p.split()}
    pool = [
        f"{a} {b}"
        for a in firsts
        for b in firsts
        if a != b and b not in lasts and not {a, b} & avoid and f"{a} {b}" not in world.people
    ]
    if len(pool) < len(people):
        raise ForgetError(f"the world has {len(pool)} generic names for {len(people)} forgotten people")
    return dict(zip(people, random.Random(seed).sample(pool, len(people)), strict=True))


def anchored_data(world: World | None, data: Sequence[Datum], names: dict[str, str]) -> list[Datum | None]:
    """Per example of ``data`` (as :func:`~workbench.core.examples.encode_examples` expands it), its translation.

    A world fact gives one (prompt, object) pair per trained phrasing with the person's name
    replaced by its generic name; a text or a pair gives None (nothing to translate).

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> f = w.facts(["Fareiv Stohith"], ["pet"])[0]
        >>> out = anchored_data(w, [f, "a text"], {"Fareiv Stohith": "Gen Name"})
        >>> len(out), out[0], out[-1]
        (10, ('Gen Name owns a pet', 'goldfish'), None)
    """
    out: list[Datum | None] = []
    for d in data:
        if isinstance(d, Fact) and world is not None:
            out += [(ph.prompt(names.get(d.subject, d.subject)), d.object) for ph in world.phrasings(d.relation)]
        else:
            out.append(None)
    return out


@torch.no_grad()
def generic_labels(
    handle,
    examples: Sequence[Example],
    anchors: Sequence[Example | None],
    me: MaskedElements,
    reinforced: dict[str, Tensor],
    alpha: float,
    batch_size: int = 64,
) -> list[Tensor]:
    """Per example, the argmax of v_generic at each scored position (module docstring, step 2).

    The model holds the base weights on entry and on exit; the reinforced ones are written into
    the masked elements only for their own forward pass.
    """
    model, pad, device = handle.model, handle.tokenizer.pad_token_id or 0, handle.device
    out = []
    for i in range(0, len(examples), batch_size):
        chunk, anchor = examples[i : i + batch_size], anchors[i : i + batch_size]
        ids, mask, scored = (t.to(device) for t in pad_examples(chunk, pad))
        try:
            me.write(reinforced)
            v_reinforced = _scored_logits(model, ids, mask, scored)
        finally:
            me.write(me.originals)
        v_base = _scored_logits(model, ids, mask, scored)
        targets = list(v_base)
        rows = [j for j, a in enumerate(anchor) if a is not None]
        if rows:
            t_ids, t_mask, t_scored = (t.to(device) for t in pad_examples([anchor[j] for j in rows], pad))
            for j, v in zip(rows, _scored_logits(model, t_ids, t_mask, t_scored), strict=True):
                # Same object tokens after either name; a tokenizer that splits them otherwise keeps v_base.
                if v.shape == targets[j].shape:
                    targets[j] = v
        for v, b, r in zip(targets, v_base, v_reinforced, strict=True):
            out.append((v - alpha * torch.relu(r - b)).argmax(-1).cpu())
    return out


def _scored_logits(
    model: nn.Module, ids: Tensor, mask: Tensor, scored: Float[Tensor, "b t"]
) -> list[Float[Tensor, "scored vocab"]]:
    """Per row, the float logits that predict its scored tokens, in order."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
    return [logits[row, scored[row, 1:].bool()] for row in range(ids.shape[0])]


def label_objective(labels: dict[tuple[int, ...], Tensor]):
    """The cross-entropy towards generic labels, as :func:`gradient_unlearn`'s ``objective``.

    Batches come shuffled and padded, so each row's labels are looked up by its tokens: an
    example's labels are a function of its tokens (identical examples have identical labels).
    """

    def objective(model: nn.Module, settings, batch, me) -> Float[Tensor, ""]:
        ids, mask, scored = batch
        target = torch.full_like(ids, -100)
        for row in range(ids.shape[0]):
            key = tuple(ids[row, : int(mask[row].sum())].tolist())
            target[row, scored[row].bool()] = labels[key].to(ids.device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
        return F.cross_entropy(logits.flatten(0, 1).float(), target[:, 1:].flatten(), ignore_index=-100)

    return objective


def whp(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    settings: WhpSettings | None = None,
    apply: bool = True,
    progress: bool = True,
) -> Edit:
    """Fine-tune the model towards generic predictions on its forget data (module docstring).

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world", device="cpu")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> s = WhpSettings(reinforce_steps=10, steps=30, floor=0.9, check_samples=20, retain_samples=100)
        >>> e = whp(h, r, settings=s, progress=False)
        >>> e.method, e.metrics["anchored_examples"], h.score(list(r.forget)).accuracy < 0.8
        ('whp', 54, True)
        >>> e.revert(h.model).applied
        False

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        request: What to forget and what to keep (facts of the world, or texts).
        location: Whose ``parameter_mask`` bounds both fine-tunings; None: a Fisher Location.
        settings: :class:`WhpSettings`.
        apply: Apply the edit to ``handle.model`` before returning it.
        progress: Show progress bars (stderr).

    Raises:
        ForgetError: a Location that selects no parameter, data with nothing to score.
        EditError: a non-finite loss (the model is left as it was).
    """
    s = settings or WhpSettings()
    t0 = time.perf_counter()
    model = handle.model
    # 1. The reinforced model, as tau on the masked elements (the model stays as it was).
    tau = reinforce(
        handle,
        request,
        location,
        steps=s.reinforce_steps,
        lr=s.reinforce_lr,
        batch_size=s.batch_size,
        check_samples=s.check_samples,
        fisher_top_fraction=s.fisher_top_fraction,
        fisher_examples=s.fisher_examples,
        fisher_params=s.fisher_params,
        seed=s.seed,
        progress=progress,
    )
    location = tau.location

    # 2. Generic labels: base and reinforced weights swapped in the masked elements per batch.
    data = request.forget_data()
    examples = encode_examples(handle, data, what="forget")
    names = generic_names(handle.world, request.people, s.seed) if s.anchored and request.people else {}
    pairs = anchored_data(handle.world, data, names) if names else [None] * len(examples)
    anchors: list[Example | None] = [None] * len(examples)
    translated = [i for i, p in enumerate(pairs) if p is not None]
    if translated:
        for i, ex in zip(
            translated, encode_examples(handle, [pairs[i] for i in translated], what="anchored"), strict=True
        ):
            anchors[i] = ex
    mask = location.parameter_mask(model)
    me = masked_elements(model, {n: mask[n] for n in tau.names})
    reinforced = {n: me.originals[n] + me.take(n, tau.deltas[n].dense.to(me.originals[n].device)) for n in tau.names}
    # Only the masked elements of the reinforced weights are needed from here, not tau's dense deltas.
    reinforce_loss = tau.metrics["loss_forget"]
    del tau, mask
    training = model.training
    model.eval()
    try:
        labels = generic_labels(handle, examples, anchors, me, reinforced, s.alpha)
    finally:
        model.train(training)
    del reinforced, me
    changed = sum(int((lab != torch.tensor(ids)[pos]).sum()) for lab, (ids, pos) in zip(labels, examples, strict=True))

    # 3. Fine-tune towards the labels inside the same mask, with a retain term and floor.
    gs = GradientSettings(
        method="gradiff",  # its retain term and floor; the objective replaces its ascent
        lr=s.lr,
        steps=s.steps,
        batch_size=s.batch_size,
        retain_weight=s.retain_weight,
        floor=s.floor,
        check_every=s.check_every,
        check_samples=s.check_samples,
        retain_samples=s.retain_samples,
        seed=s.seed,
    )
    objective = label_objective({tuple(ids): lab for (ids, _), lab in zip(examples, labels, strict=True)})
    e = gradient_unlearn(handle, request, location, gs, apply=False, progress=progress, objective=objective)
    metrics = {
        **{k: e.metrics[k] for k in ("steps", "stopped", "kept_step", "checks", "retain_floor", "masked_elements")},
        "loss_generic": e.metrics["loss_forget"],
        "loss_retain": e.metrics["loss_retain"],
        "reinforce_loss": reinforce_loss,
        "anchored_examples": len(translated),
        "generic_names": names,
        "labels_changed": changed / max(sum(len(pos) for _, pos in examples), 1),
        "seconds": time.perf_counter() - t0,
    }
    edit = Edit("whp", Forget.of(request), e.deltas, location, asdict(s), metrics, hashes_before=e.hashes_before)
    return edit.apply(model) if apply else edit


__all__ = ["WhpSettings", "anchored_data", "generic_labels", "generic_names", "label_objective", "whp"]
