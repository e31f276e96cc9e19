"""What a patch file must hold, checked before any of it is believed.

A patch is two files: a JSON manifest and a safetensors file of delta parts. Every claim the
manifest makes is checked against the tensors when a patch is read: each field's kind, every
hash (of the file, of each part, of the revert data), each part's dtype, shape, rank and
finiteness, and that the tensors file holds exactly the tensors the manifest names. A patch
that fails any check is refused whole, naming the file and what is wrong, before a model loads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from edit.edit import EditError
from workbench.core.hashing import tensor_hash

FORMAT = "knowledge-workbench/patch/2"
# Format 1 had no revert data: such patches load and apply, but revert only where they were applied.
READABLE = ("knowledge-workbench/patch/1", FORMAT)

# Each field a patch manifest must hold, and what it must be.
FIELDS = {
    "method": str,
    "request": dict,
    "settings": dict,
    "metrics": dict,
    "location": (dict, type(None)),
    "hashes_before": dict,
    "deltas": dict,
    "tensors_sha256": str,
}
FACTORS = {"left", "right"}


def is_sha256(x: object) -> bool:
    """Whether ``x`` is a sha256 hex digest as the project writes them (64 lowercase hex digits).

    Examples:
        >>> is_sha256("0" * 64), is_sha256("0" * 63), is_sha256(64)
        (True, False, False)
    """
    return isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x)


def check_manifest(manifest: object, path: Path) -> None:
    """Refuse a manifest whose fields are missing, of the wrong kind, or name no usable hashes.

    Examples:
        >>> check_manifest([1, 2], Path("p.json"))
        Traceback (most recent call last):
        edit.edit.EditError: p.json is not a workbench patch (a JSON list where an object belongs)

    Raises:
        EditError: naming the file and the first field that is wrong.
    """
    if not isinstance(manifest, dict):
        raise EditError(f"{path} is not a workbench patch (a JSON {_kind(manifest)} where an object belongs)")
    if manifest.get("format") not in READABLE:
        raise EditError(f"{path} is not a workbench patch (format {manifest.get('format')!r})")
    for field, kind in FIELDS.items():
        if field not in manifest:
            raise EditError(f"{path} is damaged: it has no {field!r} field")
        if not isinstance(manifest[field], kind):
            raise EditError(f"{path} is damaged: {field!r} is a {_kind(manifest[field])}")
    deltas = manifest["deltas"]
    if not deltas:
        raise EditError(f"{path} is damaged: 'deltas' names no tensor (a patch changes at least one)")
    if not is_sha256(manifest["tensors_sha256"]):
        raise EditError(f"{path} is damaged: 'tensors_sha256' is not a sha256 digest")
    # An edit saved before it was ever applied, without its base, records no result: such a
    # patch applies (to its base only) but cannot be reverted from the file alone.
    after = manifest.get("hashes_after")
    if after is not None and not isinstance(after, dict):
        raise EditError(f"{path} is damaged: 'hashes_after' is a {_kind(after)}")
    for name, meta in deltas.items():
        # The base check is the patch's promise: every tensor it touches names the hash it was made on.
        if not is_sha256(manifest["hashes_before"].get(name)):
            raise EditError(
                f"{path}: the patch names no base hash for {name}: it cannot be checked against a model, "
                "so it is refused"
            )
        if after and not is_sha256(after.get(name)):
            raise EditError(f"{path} is damaged: 'hashes_after' names no sha256 digest for {name}")
        _check_delta_meta(meta, name, path)


def _check_delta_meta(meta: object, name: str, path: Path) -> None:
    parts = meta.get("sha256") if isinstance(meta, dict) else None
    if not isinstance(parts, dict) or set(parts) not in ({"dense"}, FACTORS):
        raise EditError(f"{path} is damaged: the delta of {name!r} names no parts (dense, or left and right)")
    if not all(is_sha256(h) for h in parts.values()):
        raise EditError(f"{path} is damaged: a part hash of {name!r} is not a sha256 digest")
    rank = meta.get("rank")
    if parts.keys() == FACTORS and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise EditError(f"{path} is damaged: the rank of {name!r} is {rank!r}, not a positive whole number")
    if "restore" in meta and not is_sha256(meta["restore"]):
        raise EditError(f"{path} is damaged: the revert data hash of {name!r} is not a sha256 digest")


def check_tensors(manifest: dict, tensors: dict[str, Tensor], path: Path) -> None:
    """Refuse tensors that are not exactly, bit for bit, the ones a checked manifest describes.

    Raises:
        EditError: a missing or unnamed tensor, a hash that differs, a part that is not a finite
            floating-point matrix, or factors whose shapes disagree with each other or the rank.
    """
    named = set()
    for name, meta in manifest["deltas"].items():
        parts = {}
        for part, digest in meta["sha256"].items():
            key = f"{name}::{part}"
            named.add(key)
            if key not in tensors:
                raise EditError(f"{path} lacks {key}, which its manifest names")
            t = parts[part] = tensors[key]
            if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
                raise EditError(f"{path}: {key} is not a finite floating-point tensor")
            if tensor_hash(t) != digest:
                raise EditError(f"{path}: {key} does not match its sha256 in the manifest")
        if "left" in parts:
            left, right = parts["left"], parts["right"]
            if left.ndim != 2 or right.ndim != 2 or not left.shape[1] == right.shape[1] == meta["rank"]:
                raise EditError(
                    f"{path}: the factors of {name!r} ({tuple(left.shape)} and {tuple(right.shape)}) "
                    f"do not make a rank-{meta['rank']} delta"
                )
        if "restore" in meta:
            key = f"{name}::restore"
            named.add(key)
            if key not in tensors or tensor_hash(tensors[key]) != meta["restore"]:
                raise EditError(f"{path}: the revert data of {name!r} is missing or does not match its sha256")
    extra = sorted(set(tensors) - named)
    if extra:
        raise EditError(f"{path} holds {extra[0]}, which its manifest does not name")


def _kind(x: object) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(x), type(x).__name__
    )
