"""RMU: representation misdirection for unlearning (Li et al. 2024, the WMDP paper).

At one layer l, the hidden states of the forget data (the residual stream after block l) are
pushed towards a fixed random direction u scaled by a steering coefficient c, while the retain
data's hidden states at that layer are held at the frozen model's:

    loss = mean ||h_l(forget) - c u||^2  +  alpha mean ||h_l(retain) - h_l^frozen(retain)||^2

Only the MLP output projections of layers max(0, l-2)..l are trained, as in the paper. Later
layers then read noise where the forgotten knowledge was. Only positions that carry that
knowledge are pushed: for a world fact, the prompt's last token (where the world model looks
facts up) or, with ``positions="subject"``, every token from the subject's first to the prompt's
end; never a frame such as "According to the registry ,", which is the same for every person
and must keep working. For a text, every token after a leading BOS. The frozen model's states come from the
same network with the saved original weights swapped in, so no second copy is held.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.func import functional_call
from tqdm.auto import tqdm

from edit.edit import Delta, Edit, EditError, restored_on_failure
from edit.edit_request import Forget
from edit.forget_request import ForgetError, ForgetRequest
from locate.location import Location
from workbench.core.examples import Example, encode_examples, example_batches, pad_examples
from workbench.core.hashing import tensor_hash
from workbench.core.tokens import encode_prompts, subject_span
from workbench.core.world.facts import Fact

# The world model looks its facts up in the layer-0 MLP at the prompt's last token; pushing the
# state after block 2 lets RMU rewrite the MLPs of layers 0, 1 and 2 (see docs/forget.md#rmu).
DEFAULT_LAYER = 2


@dataclass(frozen=True)
class RmuSettings:
    """Settings of an RMU unlearning run.

    Defaults come from a sweep on the default world model, forget05 (figures in
    docs/forget.md#rmu): pushing the last token alone, c 1, alpha 10, lr 3e-2 comes close to
    the model trained without those people while keeping retained facts. Pushing from the
    subject's first token does worse at every point: the world's 300 people share 60 first
    names, so the first-name position of a forgotten person is the same state as a kept
    person's and the two losses fight over it. Smaller alpha forgets more and loses retained
    facts; layer 1 or 3 forgets less, layer 0 far less; lr 1e-2 and 1e-1 are no better.

    Examples:
        >>> RmuSettings().steps, RmuSettings(layer=1).layer, RmuSettings().positions
        (150, 1, 'last')

    Args:
        layer: The layer l whose output is misdirected; MLP output projections of layers
            max(0, l-2)..l are trained. None: the Location's best layer if one is given, else
            ``DEFAULT_LAYER`` (clipped to the model's depth). Negative counts from the end.
        steering_coefficient: c, in units of the mean norm of the frozen hidden states at the
            forget positions, so one value carries across layers and models (the paper's
            absolute c grows with depth for the same reason). The absolute c is in the metrics.
        alpha: Weight of the retain term.
        lr: AdamW learning rate (no weight decay: untouched weights must stay as they were).
        steps: Optimisation steps; each sees one forget batch and one retain batch.
        batch_size: Examples per forget batch and per retain batch.
        retain_samples: Retain facts (and texts) drawn for the retain term, None: all.
        positions: Which positions of a world fact's prompt are pushed: "subject" (from the
            subject's first token to the prompt's end) or "last" (the prompt's last token, where
            the world model looks facts up). A text's tokens are all pushed either way.
        seed: Seeds the direction u, the retain draw and the batch order.
    """

    layer: int | None = None
    steering_coefficient: float = 1.0
    alpha: float = 10.0
    lr: float = 3e-2
    steps: int = 150
    batch_size: int = 32
    retain_samples: int | None = 300
    positions: Literal["subject", "last"] = "last"
    seed: int = 0

    def __post_init__(self):
        if self.positions not in ("subject", "last"):
            raise ForgetError(f"unknown positions {self.positions!r}; expected 'subject' or 'last'")
        if self.steps < 1 or self.batch_size < 1:
            raise ForgetError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if not self.lr > 0 or self.alpha < 0 or self.steering_coefficient < 0:
            raise ForgetError("lr must be > 0, alpha and steering_coefficient >= 0")


def rmu(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    settings: RmuSettings | None = None,
    apply: bool = True,
    progress: bool = True,
) -> Edit:
    """Unlearn a forget set by scrambling its hidden states at one layer; returns a dense :class:`Edit`.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world", device="cpu")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> e = rmu(h, r, settings=RmuSettings(steps=40), progress=False)
        >>> e.names, e.metrics["stopped"]  # doctest: +NORMALIZE_WHITESPACE
        (['transformer.h.0.mlp.c_proj.weight', 'transformer.h.1.mlp.c_proj.weight',
          'transformer.h.2.mlp.c_proj.weight'], 'steps')
        >>> h.score(list(r.forget)).accuracy < 0.5, e.revert(h.model).applied
        (True, False)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        request: What to forget and what to keep (:func:`edit.forget_request.forget_request`).
        location: Supplies the layer (its best site's) when ``settings.layer`` is None.
        settings: :class:`RmuSettings`.
        apply: Apply the edit to ``handle.model`` before returning it.
        progress: Show a progress bar (stderr).

    Raises:
        ForgetError: an unknown layer, data with nothing to push.
        EditError: a non-finite loss (the model is left as it was).
    """
    s = settings or RmuSettings()
    t0 = time.perf_counter()
    model, sites = handle.model, handle.sites
    layer = _layer(s.layer, location, sites.n_layers)
    names = [sites.mlp_out_path(i) + ".weight" for i in range(max(0, layer - 2), layer + 1)]
    forget = _forget_examples(handle, request, s.positions)
    retain = _all_positions(encode_examples(handle, request.retain_data(s.retain_samples, s.seed), what="retain"))
    block = sites.module(model, layer, "resid")
    pad = handle.tokenizer.pad_token_id or 0
    gen = torch.Generator().manual_seed(s.seed)
    u = torch.randn(sites.d_model, generator=gen)
    # On a sharded model (device_map) the block and each edited tensor may sit on their own
    # devices: the direction goes where the block's states are, each frozen copy beside its tensor.
    u = (u / u.norm()).to(next(block.parameters()).device)
    hashes = {n: tensor_hash(model.get_parameter(n)) for n in names}
    params = [model.get_parameter(n) for n in names]
    losses: list[list[float]] = []
    training = model.training
    model.eval()  # no dropout: the same settings must give the same weights
    try:
        with restored_on_failure(model, names) as originals:
            frozen = {n: t.to(model.get_parameter(n).device) for n, t in originals.items()}
            scale = _mean_norm(model, block, forget, pad, handle.device)
            c = s.steering_coefficient * scale
            optimiser = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
            batches = zip(
                example_batches(forget, s.batch_size, pad, s.seed, handle.device),
                example_batches(retain, s.batch_size, pad, s.seed + 1, handle.device),
                strict=True,
            )
            bar = tqdm(range(s.steps), desc="rmu", disable=not progress)
            # The batches are endless: the steps decide where training stops.
            for _, (f, r) in zip(bar, batches, strict=False):
                with torch.no_grad():
                    target = _hidden(model, block, r[0], r[1], frozen)
                h_f = _hidden(model, block, f[0], f[1])
                h_r = _hidden(model, block, r[0], r[1])
                lf = _masked_mse(h_f, c * u, f[2])
                lr_ = _masked_mse(h_r, target, r[2])
                loss = lf + s.alpha * lr_
                if not torch.isfinite(loss):
                    raise EditError(
                        f"rmu loss became {float(loss.detach())} at step {len(losses) + 1}; the model is unchanged"
                    )
                # Gradients of the trained tensors only: the model's other .grad fields stay untouched.
                for p, g in zip(params, torch.autograd.grad(loss, params), strict=True):
                    p.grad = g
                optimiser.step()
                optimiser.zero_grad(set_to_none=True)
                losses.append([float(lf.detach()), float(lr_.detach())])
                bar.set_postfix(forget=f"{losses[-1][0]:.3g}", retain=f"{losses[-1][1]:.3g}", refresh=False)
            with torch.no_grad():
                deltas = {n: Delta(dense=(model.get_parameter(n).detach() - originals[n]).cpu()) for n in names}
                if not all(torch.isfinite(d.dense).all() for d in deltas.values()):
                    raise EditError("rmu produced non-finite weights; the model is unchanged")
                for n in names:
                    model.get_parameter(n).copy_(originals[n])
    finally:
        model.train(training)
    metrics = {
        "layer": layer,
        "steering": c,
        "hidden_norm": scale,
        "steps": len(losses),
        "stopped": "steps",
        "loss_forget": [pair[0] for pair in losses],
        "loss_retain": [pair[1] for pair in losses],
        "forget_positions": sum(len(p) for _, p in forget),
        "retain_examples": len(retain),
        "seconds": time.perf_counter() - t0,
    }
    edit = Edit(
        "rmu", Forget.of(request), deltas, location, dict(asdict(s), layer=layer), metrics, hashes_before=hashes
    )
    return edit.apply(model) if apply else edit


def _layer(layer: int | None, location: Location | None, n_layers: int) -> int:
    if layer is None and location is not None:
        layers = location.layers()
        if not layers:
            raise ForgetError(f"the {location.method} location has no site with a layer: pass RmuSettings(layer=...)")
        layer = layers[0]
    if layer is None:
        return min(DEFAULT_LAYER, n_layers - 1)
    if not -n_layers <= layer < n_layers:
        raise ForgetError(f"layer {layer} out of range for a {n_layers}-layer model")
    return layer % n_layers


def _forget_examples(handle, request: ForgetRequest, positions: str = "subject") -> list[Example]:
    """(prompt ids, pushed positions) of everything to forget.

    A fact pushes its subject onwards (or its last token) in every trained phrasing; a text, every token.
    """
    out: list[Example] = []
    for d in request.forget_data():
        if isinstance(d, Fact):
            if handle.world is None:
                raise ForgetError(f"model {handle.name!r} has no fact world to phrase facts with")
            for ph in handle.world.phrasings(d.relation):
                prompt = ph.prompt(d.subject)
                ids = encode_prompts(handle.tokenizer, [prompt])[0]
                start = subject_span(handle.tokenizer, prompt, d.subject)[0] if positions == "subject" else len(ids) - 1
                out.append((ids, list(range(start, len(ids)))))
        else:
            # A (question, answer) pair is pushed as its text, every token, as a text is.
            ids = encode_prompts(handle.tokenizer, [d if isinstance(d, str) else f"{d[0]} {d[1]}"])[0]
            first = int(bool(ids) and ids[0] == handle.tokenizer.bos_token_id)
            out.append((ids, list(range(first, len(ids)))))
    out = [e for e in out if e[1]]
    if not out:
        raise ForgetError(f"nothing to push in {request.name!r}: every forget text is empty")
    return out


def _all_positions(examples: Sequence[Example]) -> list[Example]:
    return [(ids, list(range(len(ids)))) for ids, _ in examples]


class _Stop(Exception):
    """Raised by the capture hook: nothing after the misdirected layer needs computing."""


def _hidden(
    model: nn.Module,
    block: nn.Module,
    ids: Int[Tensor, "b t"],
    mask: Int[Tensor, "b t"],
    weights: dict[str, Tensor] | None = None,
) -> Float[Tensor, "b t d_model"]:
    """The residual stream after ``block``; with ``weights``, as if those tensors were swapped in."""
    seen: list[Tensor] = []

    def capture(_module, _inputs, output):
        seen.append(output[0] if isinstance(output, tuple) else output)
        raise _Stop

    hook = block.register_forward_hook(capture)
    try:
        if weights is None:
            model(input_ids=ids, attention_mask=mask, use_cache=False)
        else:
            functional_call(
                model, weights, args=(), kwargs=dict(input_ids=ids, attention_mask=mask, use_cache=False), strict=False
            )
    except _Stop:
        pass
    finally:
        hook.remove()
    return seen[0]


def _masked_mse(h: Float[Tensor, "b t d"], target: Float[Tensor, "... d"], where: Float[Tensor, "b t"]) -> Tensor:
    """Squared error per element, averaged over the selected positions and the hidden dimension."""
    err = ((h.float() - target.float()) ** 2).mean(-1)
    return (err * where).sum() / where.sum().clamp(min=1.0)


@torch.no_grad()
def _mean_norm(model: nn.Module, block: nn.Module, examples: Sequence[Example], pad: int, device) -> float:
    """Mean hidden-state norm at the pushed positions, over at most 256 examples."""
    total, count = 0.0, 0.0
    for i in range(0, min(len(examples), 256), 64):
        ids, mask, where = (t.to(device) for t in pad_examples(examples[i : i + 64], pad))
        norms = _hidden(model, block, ids, mask).float().norm(dim=-1)
        total, count = total + float((norms * where).sum()), count + float(where.sum())
    return total / max(count, 1.0)


__all__ = ["DEFAULT_LAYER", "RmuSettings", "rmu"]
