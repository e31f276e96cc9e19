"""The editing baseline of unlearning: erase every forgotten fact at once with MEMIT.

Each forgotten fact becomes an erase :class:`~edit.request.Request` (push the true object down
while keeping the rest of the next-token distribution), and :func:`edit.memit.memit` makes
them together as one least-squares update of the located MLP output projections, holding
the typical keys in place. It only touches facts it is told about: it has no notion of a
person beyond their listed facts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from edit.edit import Edit, EditError
from edit.edit_request import Forget
from edit.forget_request import ForgetRequest
from edit.memit import MemitSettings, memit
from edit.request import world_request
from locate.location import Location


@dataclass(frozen=True)
class EraseSettings:
    """Settings of the MEMIT erase baseline.

    Examples:
        >>> EraseSettings().mom2_weight
        10.0

    Args:
        mom2_weight: MEMIT's lambda: the weight of the preserved keys against the erased ones
            (larger erases less and keeps more; see docs/forget.md#memit-erase).
        layers: MLP layers; None: from the Location, or a causal trace of the first fact.
        memit: The other MEMIT settings.
        phrasing: Which trained phrasing each erase request is keyed on (values are averaged
            over random prefixes, so the others generalise).
    """

    mom2_weight: float = 10.0
    layers: tuple[int, ...] | None = None
    memit: MemitSettings = field(default_factory=MemitSettings)
    phrasing: int = 0


def memit_erase(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    settings: EraseSettings | None = None,
    apply: bool = True,
    progress: bool = True,
) -> Edit:
    """Erase every forget fact of ``request`` in one MEMIT update.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world", device="cpu")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> e = memit_erase(h, r)
        >>> h.score(list(r.forget)).accuracy < 0.5, e.method, e.request.name
        (True, 'memit_erase', 'Tikrelm Robreir')
        >>> _ = e.revert(h.model)

    Raises:
        EditError: a request made of texts (MEMIT erases facts), or a model without a world.
    """
    s = settings or EraseSettings()
    if not request.forget or handle.world is None:
        raise EditError(
            "the MEMIT erase baseline needs world facts to erase; texts are for rmu, gradient methods or ssd"
        )
    t0 = time.perf_counter()
    requests = [world_request(handle.world, f.subject, f.relation, None, s.phrasing) for f in request.forget]
    inner = memit(
        handle,
        requests,
        location,
        replace(s.memit, mom2_weight=s.mom2_weight, layers=s.layers),
        apply=False,
        progress=progress,
    )
    edit = Edit(
        "memit_erase",
        Forget.of(request),
        inner.deltas,
        inner.location,
        {"memit": inner.settings, "mom2_weight": s.mom2_weight, "phrasing": s.phrasing},
        {**inner.metrics, "seconds": time.perf_counter() - t0, "erased_facts": len(requests)},
        hashes_before=inner.hashes_before,
    )
    return edit.apply(handle.model) if apply else edit


__all__ = ["EraseSettings", "memit_erase"]
