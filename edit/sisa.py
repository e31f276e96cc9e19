"""SISA forgetting (Bourtoule et al., 2021): retrain only the shards that saw the forgotten people.

A SISA ensemble (``workbench world train sisa``) trains one constituent per disjoint shard of
the people, each in slices with a checkpoint after every slice. To forget, each shard holding a
forgotten person is retrained from the checkpoint before the earliest slice holding one, on the
same statements less the forgotten people's, by the same seeded stages: the result is bitwise
the constituent that would have been trained had those people never been in the data. No
constituent has then ever seen them, so the forgetting is exact by construction, at the cost of
the retrained stages alone (at most one shard, about 1/S of a full training, for one person).

The :class:`~edit.edit.Edit` holds, per retrained shard, every tensor's difference (new minus
old, in float64 so that applying it gives the retrained weights back), and ``revert`` restores
the ensemble bitwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from edit.edit import Delta, Edit
from edit.edit_request import Forget
from edit.forget_request import ForgetError, ForgetRequest
from locate.location import Location
from workbench.core.world.facts import Fact
from workbench.core.world.sisa_manifest import location, total_seconds, total_steps, trained_without
from workbench.core.world.sisa_model import SisaEnsemble, shard_hash
from workbench.core.world.sisa_train import retrain_shard


@dataclass(frozen=True)
class SisaForgetSettings:
    """Settings of SISA forgetting.

    Examples:
        >>> SisaForgetSettings().whole_people
        True

    Args:
        whole_people: Remove every statement of each person the request names (SISA's unit of
            data here is the person); False removes only the requested facts' statements.
    """

    whole_people: bool = True


def sisa_forget(
    handle,
    request: ForgetRequest,
    location: Location | None = None,
    settings: SisaForgetSettings | None = None,
    apply: bool = True,
    progress: bool = True,
) -> Edit:
    """Forget the request's people by retraining the shards of a SISA ensemble that held them.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world")
        >>> sisa_forget(h, forget_request(h.world, "forget01"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        edit.forget_request.ForgetError: method 'sisa' forgets in a SISA ensemble, not in 'world': ...

    Args:
        handle: A handle whose model is a :class:`~workbench.core.world.sisa_model.SisaEnsemble`
            (``workbench.load(folder)`` of a folder ``workbench world train sisa`` wrote).
        request: World facts to forget (texts cannot be: the ensemble was trained on world facts).
        location: Not used: SISA retrains whole constituents.
        settings: :class:`SisaForgetSettings`.
        apply: Leave the edit applied.
        progress: Show a bar over each retrained stage's epochs (stderr).

    Returns:
        An :class:`~edit.edit.Edit` with metrics: shards and slices retrained, retrain seconds and
        steps, and their fractions of the full training (the manifest's totals) beside the bar
        1/S plus one slice.

    Raises:
        ForgetError: not a SISA ensemble, a request of texts, or people the ensemble never trained on.
    """
    s = settings or SisaForgetSettings()
    model = handle.model
    check_sisa_request(handle, request)
    world = handle.world
    facts = frozenset(world.facts(request.people) if s.whole_people else request.forget)
    never = set(trained_without(model.manifest))
    if {f.subject for f in facts} <= never:
        raise ForgetError("the ensemble was trained without everyone the request names: there is nothing to forget")
    facts = frozenset(f for f in facts if f.subject not in never)
    where = location_of(model.manifest, facts)
    shards = sorted({k for k, _ in where.values()})
    deltas, retrained, targets, records = {}, [], {}, {}
    for k in shards:
        before = model.shards[k]
        known = model.excluded[k].get(shard_hash(before))
        if known is None:
            raise ForgetError(f"shard {k} was changed by something other than SISA forgetting: revert that edit first")
        excluded = known | {f for f in facts if where[f.subject][0] == k}
        r = retrain_shard(model.folder, k, frozenset(excluded), world, progress)
        new = dict(r.model.named_parameters())
        for name, p in before.named_parameters():
            # float64: a float32 difference added back would not always give the new weights bit for bit.
            deltas[f"shards.{k}.{name}"] = Delta(dense=new[name].detach().double() - p.detach().double())
            targets[f"shards.{k}.{name}"] = new[name].detach()
        records[k] = frozenset(excluded)
        retrained.append(r)
    edit = Edit(
        "sisa",
        # Every removed fact is named: with whole_people that is more than the request listed.
        replace(Forget.of(request), facts=tuple((f.subject, f.relation) for f in sorted(facts, key=_order(world)))),
        deltas,
        None,
        asdict(s),
        _metrics(model.manifest, retrained),
    )
    if apply:
        edit.apply(model)
        edit.metrics["exact_weights"] = weights_equal(model, targets)
    for k, excluded in records.items():
        # Keyed by the hash the shard has once the edit is applied, so that forgetting again there keeps these out.
        now = model.shards[k] if apply else next(r.model for r in retrained if r.shard == k)
        model.excluded[k][shard_hash(now)] = excluded
    return edit


def check_sisa_request(handle, request: ForgetRequest) -> None:
    """Refuse, before any work, a model that is not a SISA ensemble or a request of texts.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world")
        >>> check_sisa_request(h, forget_request(h.world, "forget01"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        edit.forget_request.ForgetError: method 'sisa' forgets in a SISA ensemble, not in 'world': ...
    """
    if not isinstance(handle.model, SisaEnsemble) or handle.model.folder is None:
        raise ForgetError(
            f"method 'sisa' forgets in a SISA ensemble, not in {handle.name!r}: train one with "
            "`workbench world train sisa --shards S --slices R --out DIR` and load DIR"
        )
    if request.forget_texts or request.forget_qa or not request.forget:
        raise ForgetError("method 'sisa' forgets world facts: the ensemble was trained on them, not on texts")


def location_of(manifest: dict, facts: frozenset[Fact]) -> dict[str, tuple[int, int]]:
    """Person -> (shard, slice) for every person the facts name; ForgetError for one the ensemble never saw.

    Examples:
        >>> from workbench.core.world.facts import Fact
        >>> m = {"shards": [{"slices": [["A"], ["B"]]}]}
        >>> location_of(m, frozenset({Fact("B", "pet", "cat")}))
        {'B': (0, 1)}
    """
    where = location(manifest)
    people = sorted({f.subject for f in facts})
    missing = [p for p in people if p not in where]
    if missing:
        raise ForgetError(f"{missing[0]!r} is in no shard of this ensemble: it never trained on them")
    return {p: where[p] for p in people}


def _order(world):
    people, relations = list(world.people), list(world.relations)
    return lambda f: (people.index(f.subject), relations.index(f.relation))


def _metrics(manifest: dict, retrained: list) -> dict:
    """What the forgetting cost, as a fraction of the full training, beside the bar 1/S plus one slice."""
    full_seconds, full_steps = total_seconds(manifest), total_steps(manifest)
    n_shards = len(manifest["shards"])
    one_slice = max(n for shard in manifest["shards"] for n in shard["steps"]) / max(1, full_steps)
    seconds, steps = sum(r.seconds for r in retrained), sum(r.steps for r in retrained)
    return {
        "shards_retrained": [r.shard for r in retrained],
        "first_slices": [r.first_slice for r in retrained],
        "slices_retrained": sum(r.slices for r in retrained),
        "retrain_seconds": round(seconds, 2),
        "retrain_steps": steps,
        "full_train_seconds": round(full_seconds, 2),
        "full_train_steps": full_steps,
        "cost_fraction": steps / max(1, full_steps),
        "cost_fraction_seconds": seconds / full_seconds if full_seconds else None,
        # One shard's share plus its largest stage, per shard retrained.
        "bar_fraction": len(retrained) * (1 / n_shards + one_slice),
    }


def weights_equal(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> bool:
    """Whether ``model``'s parameters are bitwise ``tensors`` (name -> tensor).

    Examples:
        >>> m = torch.nn.Linear(2, 2)
        >>> weights_equal(m, {"weight": m.weight.detach().clone()}), weights_equal(m, {"bias": m.bias.detach() + 1})
        (True, False)
    """
    params = dict(model.named_parameters())
    return all(torch.equal(params[n], t) for n, t in tensors.items())


__all__ = ["SisaForgetSettings", "location_of", "sisa_forget", "weights_equal"]
