"""MEMIT: many edits at once, spread over several MLP layers (Meng et al. 2023).

Each request gets a target hidden state z_i = h_i + delta_i at the last edited layer (the value
optimisation of :mod:`edit.values`, all requests in one batch). Then, layer by layer, the
remaining gap z - h is split evenly over the layers still to go, and each layer's output
projection gets the least-squares update that writes its share for the requests' keys while
holding typical keys (C) in place:  Delta = R K^T (lambda C + K K^T)^-1, solved in float64.
Later layers see the earlier updates, as in MEMIT. The Edit holds one rank-B delta per layer.

A layer whose keys have d_mlp dimensions can meet at most d_mlp arbitrary targets: the Edit's
``metrics["target_written"]`` says how much of the targets the update wrote (a warning below
0.9); on the 512-wide world models 1,000 edits at once write little more than half of theirs
(see docs/edit.md#memit-capacity).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from edit.covariance import layer_statistics
from edit.edit import Delta, Edit, EditError, restored_on_failure
from edit.edit_request import Rewrite
from edit.key_states import KeyRows, TokenRole, mean_states
from edit.request import Request
from edit.rome import site_of, trace_location
from edit.values import ValueSettings, contexts, optimise_values, statistics_position
from locate.location import Location
from workbench.core.hashing import tensor_hash

# MemitSettings.keys: a column of the solve per edit at its mean key, or per edit and context.
KEYS = ("mean", "each")


@dataclass(frozen=True)
class MemitSettings:
    """Settings of a MEMIT batch edit.

    Examples:
        >>> MemitSettings().mom2_weight
        10.0

    Args:
        layers: MLP layers to spread the edits over; None: from the Location's best MLP layer
            on, the consecutive layers whose score at that token is at least half the best (on
            the world model that is layer 0 alone: its facts are looked up there).
        token: Key position, as for ROME: "auto" follows the Location.
        mom2_weight: lambda, the weight of the preserved-key statistics C against the edits'
            own keys (MEMIT: 15,000 for GPT-J, 20,000 for GPT-2 XL, whose keys have 16,384 and
            6,400 dimensions). On the default world model (512 key dimensions), lambda 10 with C
            over prompts' last tokens makes 100 edits at layer 0 and keeps their neighbours; at
            1,000 edits lambda trades one for the other (see docs/edit.md#one-layers-keys).
        contexts, context_length: Random prefixes keys and values are averaged over.
        keys: "mean": one column of the solve per edit, its key and state averaged over the
            contexts (MEMIT). "each": a column per edit and distinct context, every one with the
            edit's target, so the update holds at each context's key and not only at their
            mean. A wide layer's update amplifies what separates a prompt's key from the mean:
            on a 4,096-wide world model "each" makes far more of 1,000 edits than "mean" (see
            docs/edit.md#memit-capacity); on the shipped 512-wide one both are bound by the
            layer's width. It costs a column per context (the world model's ten sampled
            contexts are three distinct texts, with the empty one four).
        samples: Tokens for C.
        values: The value optimisation's settings (run at the last edited layer).
        seed: Seed of the prefix sampling.
    """

    layers: tuple[int, ...] | None = None
    token: Literal["auto", "subject_last", "last"] = "auto"
    mom2_weight: float = 10.0
    contexts: int = 10
    context_length: int = 5
    keys: Literal["mean", "each"] = "mean"
    samples: int | None = None
    values: ValueSettings = field(default_factory=lambda: ValueSettings(reference="resid"))
    seed: int = 0

    def __post_init__(self):
        if not math.isfinite(self.mom2_weight) or self.mom2_weight < 0:
            raise EditError(f"mom2_weight must be a finite number >= 0, got {self.mom2_weight}")
        if self.keys not in KEYS:
            raise EditError(f"keys must be {' or '.join(map(repr, KEYS))}, got {self.keys!r}")
        if self.layers is not None and (not self.layers or len(set(self.layers)) != len(self.layers)):
            raise EditError(f"layers must name each layer once, got {self.layers}")


def memit(
    handle,
    requests: list[Request],
    location: Location | None = None,
    settings: MemitSettings | None = None,
    texts: list[str] | None = None,
    apply: bool = True,
    null_space=None,
    statistics: dict | None = None,
    progress: bool = True,
) -> Edit:
    """Apply many rewrites (or erasures) together; returns one :class:`Edit` over the edited layers.

    1. Key statistics C at every edited layer, from one pass (:func:`edit.covariance.layer_statistics`).
    2. Per request, the residual delta at the last edited layer that makes the edit true
       (:func:`edit.values.optimise_values`, all requests in one batch).
    3. Layer by layer, the output projection's update Delta = R K^T (lambda C + K K^T)^-1 that
       writes the layer's share R of what is still missing at the requests' keys K
       (:func:`_spread_over_layers`); in null-space mode AlphaEdit's projected solve.
    4. The weights go back as they were; the Edit holds one low-rank delta per layer.

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world", device="cpu")
        >>> w = h.world
        >>> reqs = [world_request(w, p, "pet", [c for c in w.relation("pet").candidates
        ...                                     if c != w.fact(p, "pet").object][0]) for p in list(w.people)[:5]]
        >>> e = memit(h, reqs)  # layers and key position from a causal trace of the first request
        >>> [h.rank_candidates(r.prompt, list(r.candidates))[0][0] == r.new_object for r in reqs]
        [True, True, True, True, True]
        >>> e.names, e.deltas[e.names[0]].rank, e.revert(h.model).applied
        (['transformer.h.0.mlp.c_proj.weight'], 5, False)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        requests: The edits; all are made at once.
        location: Where (its best MLP site gives the first layer and the key position); without
            one, a causal trace of the first request decides.
        settings: :class:`MemitSettings`.
        texts: Text for the key statistics (a model without a world needs it).
        apply: Apply the edit to ``handle.model`` before returning it.
        null_space: A :class:`edit.null_space.NullSpace` for sequential editing: updates are
            projected away from preserved keys and earlier edits' keys (AlphaEdit).
        statistics: Layer -> :class:`edit.covariance.KeyStats` to use instead of computing them
            on the model as it is: sequential editing keeps the base model's, as MEMIT does.
        progress: Show the value optimisation's progress bar (stderr) for large batches.

    Raises:
        RequestError: a request that cannot be carried out.
        EditError: layers out of range, a Location without an MLP site, no requests.
    """
    settings = settings or MemitSettings()
    check_requests(handle, requests, texts, "memit")
    t0 = time.perf_counter()
    layers, role, location = memit_site(handle, requests[0], location, settings)
    sites, model = handle.sites, handle.model
    ctxs = contexts(handle, settings.contexts, settings.context_length, settings.seed)
    # 1. C per edited layer: the typical keys each update holds in place (sequential editing
    # passes the base model's).
    given = {layer: s for layer, s in (statistics or {}).items() if layer in layers and s is not None}
    todo = [layer for layer in layers if layer not in given]  # all of them from one pass over the text
    position = statistics_position(role)
    read = layer_statistics(handle, todo, texts, settings.samples, progress=False, position=position) if todo else {}
    stats = given | read
    # 2. Per request, the delta at the last edited layer that makes the edit true (edit.values).
    t_values = time.perf_counter()
    values = optimise_values(handle, layers[-1], requests, role, ctxs, settings.values, progress=progress)
    t_values = time.perf_counter() - t_values
    names = [sites.mlp_out_path(layer) + ".weight" for layer in layers]
    hashes = {n: tensor_hash(model.get_parameter(n)) for n in names}
    # 3. Write those deltas into the layers' output projections, spread over the layers.
    with restored_on_failure(model, names) as originals:
        deltas, written, reached = _spread_over_layers(
            handle, requests, role, ctxs, layers, values.delta, stats, settings, null_space
        )
        with torch.no_grad():  # the Edit is applied below, as a whole, or not at all
            for n in names:
                model.get_parameter(n).copy_(originals[n])
    # 4. One Edit over the layers, with how much of the targets the updates wrote.
    edit = Edit(
        "memit",
        Rewrite(tuple(requests)),
        deltas,
        location,
        dict(
            asdict(settings),
            layers=list(layers),
            token=role,
            null_space=null_space.describe() if null_space is not None else None,
        ),
        {
            "value_loss_final": [curve[-1] for curve in values.losses],
            "seconds": time.perf_counter() - t0,
            "value_seconds": t_values,
            "covariance_tokens": {layer: s.count for layer, s in stats.items()},
            # ||Delta|| / ||W|| per layer: far above 1 means the solve was ill-conditioned
            # (too many keys for lambda C to hold) and the edit rewrites the layer, not a fact.
            "relative_update_norm": {
                n: float(d.tensor().norm() / originals[n].float().norm()) for n, d in deltas.items()
            },
            "written_fraction": written,
            "target_written": reached,
        },
        hashes_before=hashes,
    )
    if short := capacity_note(reached, len(requests), sites.d_mlp, layers):
        warnings.warn(short, CapacityWarning, stacklevel=2)
    return edit.apply(model) if apply else edit


def check_requests(handle, requests: list[Request], texts: list[str] | None, editor: str) -> None:
    """Refuse, in one line, what MEMIT cannot carry out: no requests, a bad one, no text for the statistics.

    Raises:
        RequestError: a request that cannot be carried out.
        EditError: no requests, or a model without a world and no ``texts``.
    """
    if not requests:
        raise EditError(f"{editor} needs at least one request")
    for r in requests:
        r.check(handle.tokenizer)
    if texts is None and handle.world is None:
        raise EditError(f"model {handle.name!r} has no fact world: pass texts=... for MEMIT's key statistics")


def _spread_over_layers(
    handle,
    requests: list[Request],
    role: TokenRole,
    ctxs: list[str],
    layers: tuple[int, ...],
    target_delta: Float[Tensor, "request d_model"],
    stats: dict,
    settings: MemitSettings,
    null_space=None,
) -> tuple[dict[str, Delta], dict[int, float], float]:
    """MEMIT's layer loop: per layer, the least-squares update that writes its share of the targets.

    Target states z = h + delta at the last edited layer's output; at layer i of L, the gap
    z - h (h as the model now computes it, with the earlier layers' updates) is split evenly
    over the L - i layers left, and :func:`_solve` gives the update of layer i's output
    projection that adds its share at the requests' keys. The updates stay applied (later
    layers must see them): the caller restores the weights.

    Returns:
        The deltas by parameter name; per layer, the share of its target the update wrote; and
        the share of the targets all layers wrote together.
    """
    sites, model = handle.sites, handle.model
    last_block = sites.module_path(layers[-1], "resid")
    # The solve's columns: per edit, all contexts at once, or each distinct one (repeated
    # contexts would only weight a column twice).
    groups = [[c] for c in dict.fromkeys(ctxs)] if settings.keys == "each" else [ctxs]
    rows = [KeyRows.of(handle.tokenizer, requests, role, g) for g in groups]  # read after every layer: tokenised once

    def states(path: str, which: str) -> Float[Tensor, "column d"]:
        return torch.cat(
            [mean_states(handle, requests, role, g, path, which, r) for g, r in zip(groups, rows, strict=True)]
        )

    deltas: dict[str, Delta] = {}
    written: dict[int, float] = {}
    initial = current = states(last_block, "output")
    wanted = target_delta.double().repeat(len(groups), 1)  # column g * n + i: edit i
    target = initial + wanted
    for i, layer in enumerate(layers):
        keys = states(sites.key_module_path(layer), "input")
        # This layer's share: what is still missing, split over the layers still to go.
        layer_target = (target - current) / (len(layers) - i)
        out_factor, in_factor = _solve(
            layer_target,
            keys,
            stats[layer].second_moment,
            settings.mom2_weight,
            null_space.projection(layer) if null_space is not None else None,
            null_space.previous_keys(layer) if null_space is not None else None,
            null_space is None or null_space.keep_statistics,
        )
        written[layer] = _share((in_factor.T @ keys.T.double()).T @ out_factor.T, layer_target)
        w = sites.mlp_out_weight(model, layer)
        # Stored [d_mlp, d_model] (Conv1D) or [d_model, d_mlp]: the factors follow.
        left, right = (in_factor, out_factor) if sites.weight_is_transposed() else (out_factor, in_factor)
        name = sites.mlp_out_path(layer) + ".weight"
        deltas[name] = Delta(left=left.to(w.dtype), right=right.to(w.dtype))
        with torch.no_grad():  # later layers' keys and states see this layer's update
            w.copy_((w.detach().double() + deltas[name].tensor().double()).to(w.dtype))
        if null_space is not None:
            null_space.add_keys(layer, keys)
        current = states(last_block, "output")
    # What the layers wrote together, where the targets are set (each layer's share alone
    # undercounts: later layers make up what earlier ones left).
    return deltas, written, _share(current - initial, wanted)


def _share(got: Float[Tensor, "request d_model"], wanted: Float[Tensor, "request d_model"]) -> float:
    """Mean over requests of how much of ``wanted`` ``got`` delivers, along it (1: all of it)."""
    got, wanted = got.double(), wanted.double()
    return float(((got * wanted).sum(-1) / wanted.pow(2).sum(-1).clamp(min=1e-30)).mean())


class CapacityWarning(UserWarning):
    """An update wrote too little of the edits' target states for all of them to take."""


def capacity_note(
    written: float, n_requests: int, d_mlp: int, layers: tuple[int, ...], floor: float = 0.9
) -> str | None:
    """One line if the update wrote less than ``floor`` of the edits' target states; None otherwise.

    A d_mlp-wide map meets at most d_mlp arbitrary targets: past that every edit is only partly
    written, and efficacy falls with it (see docs/edit.md#memit-capacity).

    Examples:
        >>> print(capacity_note(0.57, 1000, 512, (0,)))  # doctest: +NORMALIZE_WHITESPACE
        the update wrote 57% of the edits' targets (1000 edits, layer 0, 512 key dimensions a layer):
        make fewer at a time (memit_batches, --batch-size) or spread them over more layers
        >>> capacity_note(0.98, 100, 512, (0,)) is None
        True
    """
    if written >= floor:
        return None
    return (
        f"the update wrote {written:.0%} of the edits' targets ({n_requests} edits, {_layers_phrase(layers)}, "
        f"{d_mlp} key dimensions a layer): make fewer at a time (memit_batches, --batch-size) or spread them over "
        "more layers"
    )


def batches_capacity_note(
    written: list[float], batch_size: int, d_mlp: int, layers: tuple[int, ...], floor: float = 0.9
) -> str | None:
    """One line if any batch's update wrote less than ``floor`` of its targets; None otherwise.

    In sequence the share falls batch by batch (each solves on the model the earlier left, and
    in null-space mode against their keys too), so one line says how many fell short and where.

    Examples:
        >>> print(batches_capacity_note([0.95, 0.8, 0.5], 10, 512, (0,)))  # doctest: +NORMALIZE_WHITESPACE
        2 of 3 batches' updates wrote less than 90% of their targets (lowest 50%, batch 3; 10 edits a batch,
        layer 0, 512 key dimensions a layer): later batches find less room; make fewer edits in all or
        spread them over more layers
        >>> batches_capacity_note([0.95, 0.93], 10, 512, (0,)) is None
        True
    """
    short = [w for w in written if w < floor]
    if not short:
        return None
    low = min(range(len(written)), key=written.__getitem__)
    return (
        f"{len(short)} of {len(written)} batches' updates wrote less than {floor:.0%} of their targets (lowest "
        f"{written[low]:.0%}, batch {low + 1}; {batch_size} edits a batch, {_layers_phrase(layers)}, {d_mlp} key "
        "dimensions a layer): later batches find less room; make fewer edits in all or spread them over more "
        "layers"
    )


def _layers_phrase(layers: tuple[int, ...]) -> str:
    return f"layer {layers[0]}" if len(layers) == 1 else f"layers {', '.join(map(str, layers))}"


def memit_site(
    handle, request: Request, location: Location | None, s: MemitSettings
) -> tuple[tuple[int, ...], TokenRole, Location | None]:
    """The layers and key position MEMIT edits for ``request`` under ``s``, and the Location that decided.

    Raises:
        EditError: a layer out of range.
    """
    n = handle.n_layers
    if s.layers is not None:
        bad = [layer for layer in s.layers if not -n <= layer < n]
        if bad or not s.layers:
            raise EditError(f"layer {bad[0] if bad else None} out of range 0..{n - 1}")
    if location is None and (s.layers is None or s.token == "auto"):
        location = trace_location(handle, request)
    first, role = site_of(location, n) if location is not None else (None, "subject_last")
    if s.layers is not None:
        layers = tuple(sorted({layer % n for layer in s.layers}))
    else:
        best = next(x for x in location.sites if x.component == "mlp" and x.layer == first)
        score = {x.layer: x.score for x in location.sites if x.component == "mlp" and x.token == best.token}
        layers = (first,)
        while layers[-1] + 1 < n and score.get(layers[-1] + 1, 0.0) >= 0.5 * best.score:
            layers += (layers[-1] + 1,)
    return layers, (role if s.token == "auto" else s.token), location


def _solve(
    gap: Float[Tensor, "request d_model"],
    keys: Float[Tensor, "request d_mlp"],
    c: Float[Tensor, "d_mlp d_mlp"],
    weight: float,
    projection: Tensor | None = None,
    previous: Tensor | None = None,
    keep_statistics: bool = True,
) -> tuple[Tensor, Tensor]:
    """Factors (left [d_model, B], right [d_mlp, B]) of the update, out x in: left @ right.T."""
    k = keys.T.double()  # [d_mlp, B]
    r = gap.T.double()  # [d_model, B]
    c = c.to(torch.float64)
    if projection is None:
        # Delta = R K^T (lambda C + K K^T)^-1  ->  right = (lambda C + K K^T)^-1 K  (symmetric)
        right = torch.linalg.solve(weight * c + k @ k.T, k)
        return r, right
    # AlphaEdit: Delta = R K^T P (K_p K_p^T P + K K^T P + I)^-1, P projecting onto the null
    # space of the preserved keys, so preserved keys map exactly as before; with
    # keep_statistics, lambda C P joins the sum. Any symmetric term there keeps Delta's input
    # side in P's range: (I + P A)^-1 maps P's range to itself.
    p = projection.double()
    kp = previous.T.double() if previous is not None and len(previous) else k.new_zeros(k.shape[0], 0)
    held = kp @ kp.T + k @ k.T + (weight * c if keep_statistics else 0.0)
    m = held @ p + torch.eye(k.shape[0], dtype=torch.float64)
    right = torch.linalg.solve(m.T, p.T @ k)  # (K^T P M^-1)^T = M^-T P^T K
    return r, right
