"""Selective Synaptic Dampening (Foster et al., 2024): forget without a single gradient step.

With F_f and F_r the diagonal Fisher of the forget and the retain data, every parameter element
where F_f > alpha F_r is multiplied by beta = min(lambda F_r / F_f, 1): the more a weight
matters to the forget data alone, the harder it is pulled to zero. Elements outside the
selection, and outside a given Location's mask, are left bitwise alone, so the Edit is dense
only in the tensors that hold a selected element.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch
from jaxtyping import Float
from torch import Tensor

from edit.edit import Delta, Edit, EditError
from edit.edit_request import Forget
from edit.forget_request import ForgetRequest
from locate.fisher import FisherScores, FisherSettings, fisher
from locate.location import Location
from workbench.core.hashing import tensor_hash


@dataclass(frozen=True)
class SsdSettings:
    """Settings of Selective Synaptic Dampening.

    Examples:
        >>> SsdSettings().alpha, SsdSettings().dampening, SsdSettings().params
        (3000.0, 1.0, 'all')

    Args:
        alpha: Selection threshold: an element is dampened where forget Fisher > alpha x retain
            Fisher (smaller dampens more). Foster et al. use 10 on image classifiers; here 10
            halves retain accuracy along with forget accuracy, because the world model's MLP
            units each serve many people. Both Fishers are means, so a larger forget set needs a
            smaller alpha for the same selection; 3,000 suits forget01 to forget10 alike (see
            docs/forget.md#selective-synaptic-dampening).
        dampening: lambda in beta = min(lambda F_r / F_f, 1); larger dampens less (Foster et al.: 1).
        retain_examples: Retain examples the retain Fisher is estimated on, drawn with ``seed``
            (the full forget05 retain set is 15,390 examples, about 30 s; 2,000 take about 4 s).
        params: Which parameters are candidates: "all" (embeddings too) or "blocks" (only inside
            the transformer blocks). With "blocks" no alpha separates forget from retain on the
            world model (forget and retain accuracy fall together); with "all"
            the selection is mostly the forgotten people's own name-token embeddings, which no
            one else's facts use.
        seed: Seed of the retain draw.
    """

    alpha: float = 3000.0
    dampening: float = 1.0
    retain_examples: int | None = 2000
    params: str = "all"
    seed: int = 0

    def __post_init__(self):
        if not self.alpha > 0 or not self.dampening > 0:
            raise EditError(f"alpha and dampening must be > 0, got {self.alpha} and {self.dampening}")


def dampening_factors(scores: FisherScores, alpha: float, dampening: float) -> dict[str, torch.Tensor]:
    """Per selected tensor, the factor each element is multiplied by (1 outside the selection).

    Examples:
        >>> from locate.fisher import FisherSettings
        >>> s = FisherScores({"w": torch.tensor([5.0, 20.0])}, {"w": torch.tensor([1.0, 1.0])}, FisherSettings(), None)
        >>> dampening_factors(s, alpha=10, dampening=1)["w"].tolist()
        [1.0, 0.05000000074505806]
    """
    out = {}
    for name, f in scores.forget.items():
        beta = _factor(f, scores.retain[name], alpha, dampening)
        if beta is not None:
            out[name] = beta
    return out


def _factor(
    forget: Float[Tensor, ...], retain: Float[Tensor, ...], alpha: float, dampening: float
) -> Float[Tensor, ...] | None:
    """One tensor's dampening factors, or None where no element passes the threshold."""
    mask = forget > alpha * retain
    if not mask.any():
        return None
    return torch.where(mask, (dampening * retain / forget.clamp_min(1e-30)).clamp(max=1.0), 1.0)


def ssd(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    settings: SsdSettings | None = None,
    apply: bool = True,
    progress: bool = True,
    scores: FisherScores | None = None,
) -> Edit:
    """Dampen the parameters that matter to the forget data far more than to the retain data.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world", device="cpu")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> e = ssd(h, r, settings=SsdSettings(retain_examples=300), progress=False)
        >>> h.score(list(r.forget)).accuracy < 0.5, e.metrics["elements"] > 0
        (True, True)
        >>> _ = e.revert(h.model)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        request: What to forget and keep (:func:`edit.forget_request.forget_request`).
        location: If given, only elements inside its ``parameter_mask`` may be dampened.
        settings: :class:`SsdSettings`.
        apply: Apply the edit to ``handle.model`` before returning it.
        scores: Fisher scores already computed for this request (saves the two passes).

    Raises:
        EditError: nothing selected (no element passes the threshold inside the Location).
    """
    s = settings or SsdSettings()
    t0 = time.perf_counter()
    given = scores
    if scores is None:
        fs = FisherSettings(max_examples=None, params=s.params, seed=s.seed, alpha=s.alpha)
        scores = _fisher_with_retain_cut(handle, request, fs, s.retain_examples, progress)
    if scores.retain is None:
        raise EditError("SSD needs Fisher scores with a retain set; these have only the forget set")
    model = handle.model
    allowed = location.parameter_mask(model) if location is not None else None
    fisher_seconds, examples = scores.seconds, {"forget": scores.n_forget, "retain": scores.n_retain}
    # Scores computed here are consumed a tensor at a time, so that the deltas replace them in
    # memory rather than add to them; the factors of one tensor live only while its delta is made.
    forget, retain = (scores.forget, scores.retain) if given is None else (dict(scores.forget), dict(scores.retain))
    del scores
    deltas, hashes, elements = {}, {}, 0
    for name in list(forget):
        beta = _factor(forget.pop(name), retain.pop(name), s.alpha, s.dampening)
        if beta is None or (allowed is not None and name not in allowed):
            continue
        if allowed is not None:
            beta = beta.masked_fill_(~allowed[name].cpu(), 1.0)
            if not (beta < 1).any():
                continue
        p = model.get_parameter(name).detach()
        hashes[name] = tensor_hash(p)
        deltas[name] = Delta(dense=(p.float() * (beta.to(p.device) - 1.0)).to(p.dtype))
        elements += int((beta < 1).sum())
    if not deltas:
        raise EditError("SSD selected no parameter: lower alpha, or widen the Location")
    edit = Edit(
        "ssd",
        Forget.of(request),
        deltas,
        location,
        asdict(s),
        {
            "elements": elements,
            "tensors": len(deltas),
            "seconds": time.perf_counter() - t0,
            "fisher_seconds": fisher_seconds,
            "examples": examples,
        },
        hashes_before=hashes,
    )
    return edit.apply(model) if apply else edit


def _fisher_with_retain_cut(
    handle, request: ForgetRequest, fs: FisherSettings, n: int | None, progress: bool
) -> FisherScores:
    # The forget set is scored in full (every forgotten example matters); only the retain set is cut.
    forget = fisher(handle, request.forget_data(), None, replace(fs, score="forget"), progress=progress)
    retain = fisher(handle, request.retain_data(), None, replace(fs, score="forget", max_examples=n), progress=progress)
    return FisherScores(
        forget.forget,
        retain.forget,
        fs,
        handle.sites,
        {"forget": forget.target["forget"], "retain": retain.target["forget"]},
        forget.n_forget,
        retain.n_forget,
        forget.seconds + retain.seconds,
    )


__all__ = ["SsdSettings", "dampening_factors", "ssd"]
