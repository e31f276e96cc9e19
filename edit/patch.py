"""An Edit as a small file: its deltas in safetensors, everything else in a JSON manifest beside them.

``save_patch(edit, "x.patch")`` writes ``x.patch.safetensors`` and ``x.patch.json``;
``load_patch`` reads both back into an :class:`~edit.edit.Edit` that applies only to weights
whose hashes match the ones it was made on. Only safetensors and JSON are ever read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from edit.edit import Delta, Edit, EditError, tensor_hash
from locate.location import Location

FORMAT = "knowledge-workbench/patch/1"


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_patch(edit: Edit, path: str | Path) -> Path:
    """Write ``edit`` to ``path.safetensors`` and ``path.json``; returns the JSON path.

    Examples:
        >>> import tempfile, os
        >>> e = Edit("demo", {"why": "example"}, {"w": Delta(left=torch.ones(2, 1), right=torch.ones(3, 1))},
        ...          hashes_before={"w": "0" * 64})
        >>> d = tempfile.mkdtemp()
        >>> save_patch(e, os.path.join(d, "one.patch")).name
        'one.patch.json'
        >>> back = load_patch(os.path.join(d, "one.patch"))
        >>> back.method, back.deltas["w"].rank, torch.equal(back.deltas["w"].tensor(), e.deltas["w"].tensor())
        ('demo', 1, True)
    """
    tensors_path, manifest_path = _paths(path)
    tensors, deltas = {}, {}
    for name in edit.names:
        d = edit.deltas[name]
        parts = {"dense": d.dense} if d.dense is not None else {"left": d.left, "right": d.right}
        for part, t in parts.items():
            tensors[f"{name}::{part}"] = t.detach().contiguous().cpu()
        deltas[name] = {"rank": d.rank, "sha256": {p: tensor_hash(t) for p, t in parts.items()}}
    save_file(tensors, str(tensors_path))
    manifest = {"format": FORMAT, "method": edit.method, "request": edit.request, "settings": edit.settings,
                "metrics": edit.metrics, "location": edit.location.to_dict() if edit.location else None,
                "hashes_before": edit.hashes_before, "hashes_after": edit.hashes_after, "deltas": deltas,
                "tensors_sha256": hashlib.sha256(tensors_path.read_bytes()).hexdigest()}
    manifest_path.write_text(json.dumps(manifest, indent=1, default=str))
    return manifest_path


def load_patch(path: str | Path) -> Edit:
    """Read a patch written by :func:`save_patch` (not applied).

    Raises:
        EditError: missing files, another format, or tensors that do not match the manifest.
    """
    tensors_path, manifest_path = _paths(path)
    if not manifest_path.exists() or not tensors_path.exists():
        raise EditError(f"no patch at {path}: expected {manifest_path.name} and {tensors_path.name}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise EditError(f"{manifest_path} is not JSON: {e}") from None
    if manifest.get("format") != FORMAT:
        raise EditError(f"{manifest_path} is not a workbench patch (format {manifest.get('format')!r})")
    if hashlib.sha256(tensors_path.read_bytes()).hexdigest() != manifest["tensors_sha256"]:
        raise EditError(f"{tensors_path} does not match its manifest (changed after it was written)")
    t = load_file(str(tensors_path))
    deltas = {}
    for name, meta in manifest["deltas"].items():
        parts = {p: t[f"{name}::{p}"] for p in meta["sha256"]}
        deltas[name] = Delta(**parts)
    loc = Location.from_dict(manifest["location"]) if manifest["location"] else None
    return Edit(manifest["method"], manifest["request"], deltas, loc, manifest["settings"], manifest["metrics"],
                hashes_before=manifest["hashes_before"])
