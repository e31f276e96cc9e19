"""The manifest of a SISA ensemble folder: which person is in which shard and slice, and what each cost.

A SISA folder (Bourtoule et al., 2021) holds ``manifest.json``, the world's tokenizer and
``world.json`` at its top, and one checkpoint per shard and slice at ``shard<k>/slice<r>``
(a Hugging Face model directory), the model after training on slices 0..r of shard k. This
module only reads and writes the manifest and names the paths, so that telling a SISA folder
from a model directory costs no model import.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.core.files import write_atomically

MANIFEST = "manifest.json"
FORMAT = "sisa"


class SisaFolderError(ValueError):
    """A folder that is not a complete SISA ensemble, or whose manifest does not match the request."""


def is_sisa_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a SISA manifest (complete or not).

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> is_sisa_dir(d)
        False
        >>> _ = (d / MANIFEST).write_text('{"format": "sisa"}')
        >>> is_sisa_dir(d)
        True
    """
    path = Path(path) / MANIFEST
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (ValueError, AttributeError):
        return False


def checkpoint_dir(folder: str | Path, shard: int, stage: int) -> Path:
    """Where the checkpoint of ``shard`` after slices 0..``stage`` lives.

    Examples:
        >>> checkpoint_dir("/tmp/ens", 2, 0).as_posix()
        '/tmp/ens/shard2/slice0'
    """
    return Path(folder) / f"shard{shard}" / f"slice{stage}"


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a SISA folder; SisaFolderError (one line) if there is none or it is damaged."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise SisaFolderError(f"{folder} holds no {MANIFEST}: train one with `workbench world train sisa`") from None
    except ValueError as e:
        raise SisaFolderError(f"{path} is not JSON ({' '.join(str(e).split())})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "shards" not in manifest:
        raise SisaFolderError(f"{path} is not a SISA manifest (expected format {FORMAT!r} and shards)")
    return manifest


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Write the manifest atomically (training rewrites it after every slice)."""
    return write_atomically(Path(folder) / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))


def trained_without(manifest: dict) -> tuple[str, ...]:
    """The people a SISA folder was trained without (none for folders written before the option).

    Examples:
        >>> trained_without({"sisa": {"without": ["B", "A"]}}), trained_without({"sisa": {}})
        (('B', 'A'), ())
    """
    return tuple(manifest["sisa"].get("without", ()))


def same_plan(a: dict, b: dict, without: bool = True, train_defaults: dict | None = None) -> bool:
    """Whether two manifests plan the same ensemble: world, settings, partition (and ``without`` people).

    With ``without=False`` they may differ in the people they were trained without: the test
    for a reference ensemble of another. ``train_defaults`` fills training settings that a
    manifest written before they existed does not name (they had their default then).

    Examples:
        >>> m = {"world": 1, "train": {}, "slice_epochs": 2, "sisa": {"shards": 1}, "shards": [{"slices": [["A"]]}]}
        >>> r = m | {"sisa": {"shards": 1, "without": ["A"]}}
        >>> same_plan(m, m), same_plan(m, r), same_plan(m, r, without=False)
        (True, False, True)
        >>> new = m | {"train": {"world_version": 1}}
        >>> same_plan(m, new), same_plan(m, new, train_defaults={"world_version": 1})
        (False, True)
    """

    def sisa(m: dict) -> dict:
        return m["sisa"] | {"without": list(trained_without(m)) if without else None}

    def train(m: dict) -> dict:
        return (train_defaults or {}) | m["train"]

    keys = ("world", "slice_epochs")
    return (
        all(a.get(k) == b.get(k) for k in keys)
        and train(a) == train(b)
        and sisa(a) == sisa(b)
        and [x["slices"] for x in a["shards"]] == [x["slices"] for x in b["shards"]]
    )


def is_complete(manifest: dict) -> bool:
    """Whether every shard has trained every slice.

    Examples:
        >>> is_complete({"shards": [{"seconds": [1.0, 2.0]}, {"seconds": [1.0, None]}]})
        False
    """
    return all(t is not None for shard in manifest["shards"] for t in shard["seconds"])


def check_complete(folder: str | Path) -> dict:
    """The manifest of a fully trained SISA folder; SisaFolderError naming the first missing checkpoint."""
    manifest = read_manifest(folder)
    for k, shard in enumerate(manifest["shards"]):
        for r, seconds in enumerate(shard["seconds"]):
            if seconds is None or not (checkpoint_dir(folder, k, r) / "model.safetensors").is_file():
                raise SisaFolderError(
                    f"{folder} is not fully trained: shard {k} slice {r} is missing "
                    "(run `workbench world train sisa` again with the same --out to resume)"
                )
    return manifest


def location(manifest: dict) -> dict[str, tuple[int, int]]:
    """Person -> (shard, slice) as the manifest records them.

    Examples:
        >>> location({"shards": [{"slices": [["A"], ["B"]]}, {"slices": [["C"], []]}]})
        {'A': (0, 0), 'B': (0, 1), 'C': (1, 0)}
    """
    return {p: (k, r) for k, shard in enumerate(manifest["shards"]) for r, ps in enumerate(shard["slices"]) for p in ps}


def total_seconds(manifest: dict) -> float:
    """Seconds of the full training: every shard's every slice."""
    return float(sum(t for shard in manifest["shards"] for t in shard["seconds"] if t is not None))


def total_steps(manifest: dict) -> int:
    """Optimiser steps of the full training: every shard's every slice."""
    return int(sum(n for shard in manifest["shards"] for n in shard["steps"] if n is not None))


__all__ = [
    "FORMAT",
    "MANIFEST",
    "SisaFolderError",
    "check_complete",
    "checkpoint_dir",
    "is_complete",
    "is_sisa_dir",
    "location",
    "read_manifest",
    "same_plan",
    "total_seconds",
    "total_steps",
    "trained_without",
    "write_manifest",
]
