"""ROME: rewrite one fact with a rank-one update of one MLP output projection (Meng et al. 2022).

The MLP at layer l is read as a key-value memory: its output projection W maps a key k (the
MLP's hidden activation at one token) to a value. ROME picks the key k* the fact's prompt
produces, a value that makes the new object come out (:mod:`edit.values`), and the smallest
change to W, measured on typical keys (C = E[k k^T], :mod:`edit.covariance`), that maps k* to
it:  W' = W + (v* - W k*) (C^-1 k*)^T / (k*^T C^-1 k*).

Which layer and which token come from a Location: ROME's analysis of GPT-2 puts the key at the
subject's last token in mid layers; a model that looks facts up elsewhere (the default world
model does it at the prompt's last token, layer 0) is edited where its trace says.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from edit.covariance import key_statistics
from edit.edit import Delta, Edit, EditError
from edit.edit_request import Rewrite
from edit.key_states import TokenRole, mean_states
from edit.request import Request
from edit.values import ValueSettings, contexts, optimise_values, statistics_position
from locate.causal_trace import TraceSettings, trace
from locate.location import Location
from workbench.core.hashing import tensor_hash


@dataclass(frozen=True)
class RomeSettings:
    """Settings of a ROME edit.

    Examples:
        >>> RomeSettings().token, RomeSettings(layer=2).layer
        ('auto', 2)

    Args:
        layer: The MLP to edit; None takes the best MLP site of the Location (or of a fresh
            causal trace of the request's MLPs when no Location is given).
        token: Key position: "subject_last" (ROME), "last" (the prompt's last token), or "auto":
            where the Location's best MLP site is (subject_last when there is no Location).
        contexts: Random prefixes the key and value are averaged over (ROME: 10, plus none).
        context_length: Tokens per prefix.
        samples: Tokens for C (default: :func:`edit.covariance.default_samples`).
        ridge: C + ridge * mean(diag C) * I is inverted: keeps the solve stable where C is
            estimated from fewer tokens than it has dimensions (or has dead neurons).
        values: The value optimisation's settings.
        seed: Seed of the prefix sampling.
    """

    layer: int | None = None
    token: Literal["auto", "subject_last", "last"] = "auto"
    contexts: int = 10
    context_length: int = 5
    samples: int | None = None
    ridge: float = 1e-4
    values: ValueSettings = field(default_factory=ValueSettings)
    seed: int = 0


def site_of(location: Location, n_layers: int) -> tuple[int, TokenRole]:
    """The layer and key position a Location points an MLP editor at: its best MLP site.

    Examples:
        >>> from locate.location import Site
        >>> loc = Location("causal_trace", sites=[Site("activation", 1, "mlp", 5, score=0.9)],
        ...                tokens=list("abcdef"), extras={"subject_span": [1, 3]})
        >>> site_of(loc, 4)
        (1, 'last')
    """
    site = next((s for s in location.sites if s.component == "mlp" and s.layer is not None), None)
    if site is None:
        raise EditError(f"the {location.method} location names no MLP site to edit")
    if not 0 <= site.layer < n_layers:
        raise EditError(f"layer {site.layer} out of range 0..{n_layers - 1}")
    span = location.extras.get("subject_span")
    if site.token is not None and location.tokens and site.token == len(location.tokens) - 1:
        return site.layer, "last"
    if span and site.token is not None and not span[0] <= site.token < span[1]:
        return site.layer, "last"
    return site.layer, "subject_last"


def rome(
    handle,
    request: Request,
    location: Location | None = None,
    settings: RomeSettings | None = None,
    texts: list[str] | None = None,
    apply: bool = True,
) -> Edit:
    """Rewrite (or erase) one fact with a rank-one update at one layer; returns the :class:`Edit`.

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world", device="cpu")
        >>> p = list(h.world.people)[0]
        >>> new = [c for c in h.world.relation("pet").candidates if c != h.world.fact(p, "pet").object][0]
        >>> r = world_request(h.world, p, "pet", new)
        >>> e = rome(h, r, settings=RomeSettings(layer=0, token="last"))
        >>> h.rank_candidates(r.prompt, list(r.candidates))[0][0] == new
        True
        >>> e.names, e.revert(h.model).applied
        (['transformer.h.0.mlp.c_proj.weight'], False)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        request: What to change (:func:`edit.request.world_request` builds one from the world).
        location: Where: its best MLP site gives the layer and key position.
        settings: :class:`RomeSettings`.
        texts: Text for the key statistics C; default the world's training sentences (a model
            without a world needs it).
        apply: Apply the edit to ``handle.model`` before returning it.

    Raises:
        RequestError: the request cannot be carried out (same object, unencodable words).
        EditError: a layer out of range, a Location without an MLP site.
    """
    settings = settings or RomeSettings()
    request.check(handle.tokenizer)
    if texts is None and handle.world is None:
        raise EditError(f"model {handle.name!r} has no fact world: pass texts=... for ROME's key statistics")
    t0 = time.perf_counter()
    layer, role, location = _where(handle, request, location, settings)
    ctxs = contexts(handle, settings.contexts, settings.context_length, settings.seed)
    k = mean_states(handle, [request], role, ctxs, handle.sites.key_module_path(layer), "input")[0]
    stats = key_statistics(
        handle, layer, texts, samples=settings.samples, progress=False, position=statistics_position(role)
    )
    values = optimise_values(handle, layer, [request], role, ctxs, settings.values)
    delta = _rank_one(handle, layer, k, values.delta[0], stats.second_moment, settings.ridge)
    name = handle.sites.mlp_out_path(layer) + ".weight"
    edit = Edit(
        "rome",
        Rewrite.one(request),
        {name: delta},
        location,
        dict(asdict(settings), layer=layer, token=role),
        {
            "value_loss": values.losses[0],
            "delta_norm": float(values.delta[0].norm()),
            "original_norm": float(values.original[0].norm()),
            "covariance_tokens": stats.count,
            "seconds": time.perf_counter() - t0,
        },
        hashes_before={name: tensor_hash(handle.model.get_parameter(name))},
    )
    return edit.apply(handle.model) if apply else edit


def _where(
    handle, request: Request, location: Location | None, s: RomeSettings
) -> tuple[int, TokenRole, Location | None]:
    n = handle.n_layers
    if s.layer is not None and not -n <= s.layer < n:
        raise EditError(f"layer {s.layer} out of range 0..{n - 1}")
    if location is None and s.layer is None:
        location = trace_location(handle, request)
    found = site_of(location, n) if location is not None else (None, "subject_last")
    layer = s.layer % n if s.layer is not None else found[0]
    role = found[1] if s.token == "auto" else s.token
    return layer, role, location


def trace_location(handle, request: Request) -> Location:
    """Where to edit when no Location is given: a causal trace of the request's prompt, MLPs only.

    The exact trace, not its gradient estimate: the estimate can rank a subject-token MLP first
    where restoring it does nothing, and an edit there changes nothing.
    """
    return trace(
        handle, request.prompt, request.subject, request.true_object, TraceSettings(samples=5), components=("mlp",)
    ).to_location()


def _rank_one(
    handle,
    layer: int,
    k: Float[Tensor, " d_mlp"],
    delta: Float[Tensor, " d_model"],
    c: Float[Tensor, "d_mlp d_mlp"],
    ridge: float,
) -> Delta:
    # delta is v* - W k*: the value optimisation starts from W k* + b (the mean original output).
    c = c.to(k.device, torch.float64)
    c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
    u = torch.linalg.solve(c, k)
    u = u / (u @ k)
    dtype = handle.sites.mlp_out_weight(handle.model, layer).dtype
    left, right = (u, delta.double()) if handle.sites.weight_is_transposed() else (delta.double(), u)
    return Delta(left=left[:, None].to(torch.float32).to(dtype), right=right[:, None].to(torch.float32).to(dtype))
