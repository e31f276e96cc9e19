"""``workbench world train sisa``: train a SISA ensemble of world models, resumably.

Examples:
    >>> train_sisa_command(None, 1, None, None, None, as_json=False)
    Traceback (most recent call last):
    workbench.cli.common.CliError: world train sisa needs --shards S (the number of constituent models)
    >>> train_sisa_command(400, 1, None, None, None, as_json=False)
    Traceback (most recent call last):
    workbench.cli.common.CliError: 300 people cannot fill 400 shards of 1 slices each
"""

from __future__ import annotations

from pathlib import Path

from workbench.cli.common import CliError, Output, check_new_folder
from workbench.core.world.facts import make_world
from workbench.core.world.registry import SHIPPED
from workbench.core.world.sisa_manifest import SisaFolderError
from workbench.core.world.sisa_train import SisaSettings, default_folder, partition, train_sisa
from workbench.core.world.train import TrainSettings


def train_sisa_command(
    shards: int | None,
    slices: int,
    out: str | None,
    epochs: int | None,
    people: int | None,
    as_json: bool,
    without: str | None = None,
) -> None:
    """Train S constituents on disjoint shards of the people, in R slices each; resume what exists."""
    if shards is None:
        raise CliError("world train sisa needs --shards S (the number of constituent models)")
    world = make_world()
    try:
        settings = SisaSettings(shards=shards, slices=slices, max_people=people, without=_people(world, without))
        partition(world, settings)  # too few people for the shards is refused before any training
    except ValueError as e:
        raise CliError(str(e)) from None
    train = TrainSettings(**SHIPPED["gpt2"])
    if epochs is not None:
        train.epochs = epochs
    if out:
        check_new_folder(out, "--out")
    folder = Path(out) if out else default_folder(train, settings)
    try:
        manifest = train_sisa(folder, train, settings, world)
    except SisaFolderError as e:
        raise CliError(str(e)) from None
    payload = {
        "path": str(folder),
        "shards": shards,
        "slices": slices,
        "slice_epochs": manifest["slice_epochs"],
        "total_seconds": manifest["total_seconds"],
        "seconds": [shard["seconds"] for shard in manifest["shards"]],
        "people": [sum(len(p) for p in shard["slices"]) for shard in manifest["shards"]],
        "without": list(settings.without),
    }
    Output(as_json).emit(
        payload,
        lambda o: (
            f"sisa: {o['shards']} shards x {o['slices']} slices ({o['slice_epochs']} epochs each), "
            f"{o['total_seconds']:.0f}s of training -> {o['path']}\n"
            f"load it with workbench.load({o['path']!r}); forget with "
            f"`workbench forget PERSON --method sisa -m {o['path']}`"
        ),
    )


def _people(world, without: str | None) -> tuple[str, ...]:
    """The people ``--without`` names: a split's forget people, or names separated by commas."""
    if not without:
        return ()
    if without in world.splits:
        return tuple(world.split(without).forget)
    names = tuple(n.strip() for n in without.split(",") if n.strip())
    unknown = [n for n in names if n not in world.people]
    if unknown or not names:
        raise CliError(
            f"--without {without!r}: {unknown[0] if unknown else 'nobody'!r} is neither a split "
            f"({', '.join(world.splits)}) nor a person of the world"
        )
    return names


__all__ = ["train_sisa_command"]
