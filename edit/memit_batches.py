"""Edits that arrive one batch after another: MEMIT batch by batch, plain or in null-space mode, as one Edit.

Each batch is solved on the model the earlier batches left, with the base model's key
statistics throughout (as MEMIT and AlphaEdit do: C stands for what the model knew before any
edit), at the layers and key position the first request decides. In null-space mode the
:class:`edit.null_space.NullSpace` passed in confines every update to the preserved keys' null
space and collects the edits' keys, so that a later batch does not undo an earlier one; it is
the caller's object, so one session can save it and a later one load it. The batches' updates
come back as one :class:`edit.edit.Edit`, reversible bitwise like any other, and all or
nothing: a failure or Ctrl-C in any batch leaves the model and the NullSpace as they were.

On the world models plain batches beat one call on efficacy (1,000 edits in 100 batches of 10
against all at once), at the cost of neighbours (see docs/edit.md#rome-and-memit-measured).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, replace

from tqdm.auto import tqdm

from edit.covariance import layer_statistics
from edit.edit import Edit, EditError, EditSequence, summed
from edit.edit_request import Rewrite
from edit.memit import (
    CapacityWarning,
    MemitSettings,
    batches_capacity_note,
    capacity_note,
    check_requests,
    memit,
    memit_site,
)
from edit.null_space import NullSpace
from edit.request import Request
from edit.values import statistics_position
from locate.location import Location
from workbench.core.hashing import tensor_hash


def memit_batches(
    handle,
    requests: list[Request],
    batch_size: int = 10,
    settings: MemitSettings | None = None,
    location: Location | None = None,
    null_space: NullSpace | None = None,
    texts: list[str] | None = None,
    apply: bool = True,
    progress: bool = True,
) -> Edit:
    """Make ``requests`` with MEMIT ``batch_size`` at a time, each batch on the model the earlier left.

    1. The layers and key position from the first request (or the Location), C at each layer
       from the base model: both fixed for every batch.
    2. Each batch is one :func:`edit.memit.memit` call, applied before the next batch runs (in
       null-space mode it also adds the batch's keys to ``null_space``).
    3. All batches reverted, their deltas summed per parameter into one Edit (one batch: that
       batch's own Edit); on any failure the batches made so far are reverted and the
       NullSpace's keys restored.

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world", device="cpu")
        >>> facts = h.world.facts()[:6]
        >>> reqs = [world_request(h.world, f.subject, f.relation, next(
        ...     c for c in h.world.relation(f.relation).candidates if c != f.object)) for f in facts]
        >>> ns = NullSpace.for_layers(h, [0], position="last")
        >>> e = memit_batches(h, reqs, 3, MemitSettings(layers=(0,), token="last"), null_space=ns)
        >>> e.metrics["batches"], ns.edited(0), e.deltas[e.names[0]].rank
        (2, 6, 6)
        >>> _ = e.revert(h.model)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        requests: The edits, in the order they arrive.
        batch_size: Edits per MEMIT call.
        settings: :class:`edit.memit.MemitSettings`; the layers and key position are fixed from
            the first request (or the Location) for every batch.
        location: Where, as for :func:`edit.memit.memit`.
        null_space: A :class:`NullSpace` for the layers edited (AlphaEdit); it keeps the
            edits' keys, so pass the same one to later calls to go on from them.
        texts: Text for the key statistics (a model without a world needs it).
        apply: Leave the edit applied to ``handle.model``.
        progress: A progress bar over the batches (stderr).

    Raises:
        RequestError: a request that cannot be carried out (before any batch runs).
        EditError: no requests, a batch size under 1, a NullSpace without the edited layers.
    """
    settings = settings or MemitSettings()
    if batch_size < 1:
        raise EditError(f"batch size must be at least 1, got {batch_size}")
    check_requests(handle, requests, texts, "memit_batches")
    t0 = time.perf_counter()
    layers, role, location = memit_site(handle, requests[0], location, settings)
    if null_space is not None and (missing := [layer for layer in layers if layer not in null_space.projections]):
        raise EditError(f"the null space has no projection for layer {missing[0]}: build it for layers {list(layers)}")
    # 1. Site and statistics, the same for every batch.
    batch_settings = replace(settings, layers=layers, token=role)
    stats = layer_statistics(
        handle, layers, texts, samples=settings.samples, progress=False, position=statistics_position(role)
    )
    model = handle.model
    keys_before = dict(null_space.keys) if null_space is not None else {}
    batch_edits: list[Edit] = []  # applied, in order
    batch_starts = range(0, len(requests), batch_size)
    bar = tqdm(
        total=len(requests),
        desc="memit batches",
        unit="edit",
        leave=False,
        disable=not progress or len(batch_starts) <= 1,
    )
    try:
        with warnings.catch_warnings():  # one line for all batches, below, not one a batch
            warnings.simplefilter("ignore", CapacityWarning)
            # 2. The batches, each on the model the earlier ones left.
            for start in batch_starts:
                batch = requests[start : start + batch_size]
                batch_edits.append(
                    memit(
                        handle,
                        batch,
                        location,
                        batch_settings,
                        texts,
                        null_space=null_space,
                        statistics=stats,
                        progress=False,
                    )
                )
                bar.update(len(batch))
        bar.close()  # cleared before the warning below, so that it gets a line of its own
        written = [e.metrics["target_written"] for e in batch_edits]
        note = (
            capacity_note(written[0], len(requests), handle.sites.d_mlp, layers)
            if len(batch_edits) == 1
            else batches_capacity_note(written, batch_size, handle.sites.d_mlp, layers)
        )
        if note:
            warnings.warn(note, CapacityWarning, stacklevel=2)
        # 3. One Edit for all batches.
        if len(batch_edits) == 1:  # all at once: memit's own Edit, with its factors and metrics
            edit = batch_edits[0]
            edit.settings["batch_size"] = batch_size
            edit.metrics |= {"batches": 1, "target_written_per_batch": written}
            return edit if apply else edit.revert(model)
        EditSequence(batch_edits).revert(model)
        names = sorted({n for e in batch_edits for n in e.names})
        params = dict(model.named_parameters())
        deltas = {n: summed([e.deltas[n] for e in batch_edits if n in e.deltas]) for n in names}
        edit = Edit(
            "memit",
            Rewrite(tuple(requests)),
            deltas,
            location,
            dict(
                asdict(batch_settings),
                layers=list(layers),
                token=role,
                null_space=null_space.describe() if null_space is not None else None,
                batch_size=batch_size,
            ),
            {
                "batches": len(batch_edits),
                "seconds": time.perf_counter() - t0,
                "value_seconds": sum(e.metrics["value_seconds"] for e in batch_edits),
                # Each batch's share of its own targets that its update wrote.
                "target_written": sum(written) / len(written),
                "target_written_per_batch": written,
                "relative_update_norm": {
                    n: float(d.tensor().norm() / params[n].detach().float().norm()) for n, d in deltas.items()
                },
            },
            hashes_before={n: tensor_hash(params[n]) for n in names},
        )
        return edit.apply(model) if apply else edit
    except BaseException:
        for e in reversed(batch_edits):
            if e.applied:
                e.revert(model)
        if null_space is not None:
            null_space.keys = keys_before
        raise
    finally:
        bar.close()
