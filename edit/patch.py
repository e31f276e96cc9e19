"""An Edit as a small file: its deltas in safetensors, everything else in a JSON manifest beside them.

``save_patch(edit, "x.patch")`` writes ``x.patch.safetensors`` and ``x.patch.json``;
``load_patch`` reads both back into an :class:`~edit.edit.Edit` that applies only to weights
whose hashes match the ones it was made on. Only safetensors and JSON are ever read.

A patch read back holds no original tensors, and in floating point ``(w + d) - d`` is not
bitwise ``w`` (a ROME delta on the default world model is as large as the weights, and a third
of the edited matrix comes back a few units in the last place off). So where the base weights
are at hand when saving, the patch also stores, per touched tensor, the XOR of the original
bits with the bits that subtracting the delta gives back: zero almost everywhere and only low
bits elsewhere, it is laid out byte plane by byte plane and zlib-compressed, about a tenth of
the dense tensor in that worst case and far less where deltas are small beside the weights.
:func:`revert_patch` subtracts, applies the correction and checks the result against the
patch's ``hashes_before``: bitwise the base, or nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import torch
from safetensors.torch import load, save_file
from torch import Tensor, nn

from edit.edit import Delta, Edit, EditError
from edit.edit_request import request_from_dict
from edit.patch_format import FORMAT, check_manifest, check_tensors
from locate.location import Location
from workbench.core.files import write_atomically
from workbench.core.hashing import tensor_hash

_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def check_patch_target(path: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """The two files a patch at ``path`` would be, refused before any work if they cannot be written.

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> [p.name for p in check_patch_target(d / "x.patch")]
        ['x.patch.safetensors', 'x.patch.json']
        >>> check_patch_target(d)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        EditError: ... is a directory: name the patch file inside it (e.g. .../edit.patch)

    Raises:
        EditError: ``path`` is a directory, its folder does not exist, or a patch is already there
            and ``overwrite`` is not set.
    """
    if Path(path).is_dir():
        raise EditError(f"{path} is a directory: name the patch file inside it (e.g. {Path(path) / 'edit.patch'})")
    tensors_path, manifest_path = _paths(path)
    if not manifest_path.parent.is_dir():
        raise EditError(f"cannot write a patch at {path}: no folder {manifest_path.parent}")
    if not overwrite and (tensors_path.exists() or manifest_path.exists()):
        raise EditError(f"a patch already exists at {manifest_path}; pass overwrite=True (--force) to replace it")
    return tensors_path, manifest_path


def _plus(w: Tensor, d: Tensor) -> Tensor:
    # The arithmetic of Edit.apply: add in the delta's precision, round to the weight's dtype.
    return (w.to(d.dtype) + d).to(w.dtype)


def _minus(w: Tensor, d: Tensor) -> Tensor:
    return (w.to(d.dtype) - d).to(w.dtype)


def _bits(t: Tensor) -> Tensor:
    return t.contiguous().view(_INT[t.element_size()])


def _correction(w: Tensor, new: Tensor, d: Tensor) -> Tensor:
    x = _bits(w) ^ _bits(_minus(new, d))
    planes = x.view(torch.uint8).reshape(-1, x.element_size()).T.contiguous()
    return torch.frombuffer(bytearray(zlib.compress(planes.numpy().tobytes())), dtype=torch.uint8)


def _corrected(new: Tensor, d: Tensor, blob: Tensor, name: str) -> Tensor:
    back = _minus(new, d).contiguous()
    size, n = back.element_size(), back.numel() * back.element_size()
    z = zlib.decompressobj()
    try:
        raw = z.decompress(blob.numpy().tobytes(), n)  # never inflates past the tensor's size
    except zlib.error:
        raw = b""
    if len(raw) != n or z.unconsumed_tail or not z.eof:
        raise EditError(f"the revert data for {name} is damaged")
    planes = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(size, -1).T.contiguous()
    return (_bits(back) ^ planes.view(_INT[size]).reshape(back.shape)).view(back.dtype)


def _cpu(delta: Delta) -> Delta:
    if delta.dense is not None:
        return Delta(dense=delta.dense.detach().cpu())
    return Delta(left=delta.left.detach().cpu(), right=delta.right.detach().cpu())


def _base_tensors(edit: Edit, base: nn.Module | None) -> dict[str, Tensor] | None:
    if edit.applied:
        return {n: edit.original(n) for n in edit.names}
    if base is None:
        return None
    params = dict(base.named_parameters())
    out = {}
    for n in edit.names:
        if n not in params:
            raise EditError(f"{type(base).__name__} has no parameter {n!r}")
        if tensor_hash(params[n]) != edit.hashes_before.get(n, tensor_hash(params[n])):
            raise EditError(f"{n} of the given base differs from the weights this {edit.method} edit was made on")
        out[n] = params[n]
    return out


def save_patch(edit: Edit, path: str | Path, base: nn.Module | None = None, overwrite: bool = False) -> Path:
    """Write ``edit`` to ``path.safetensors`` and ``path.json``; returns the JSON path.

    Every patch names the hash of each tensor it touches before the edit, so that it applies to
    those weights only: the edit must be applied, have been applied, or come with ``base``. The
    patch can be reverted from the file alone when the edit is applied or ``base`` (the model
    before the edit) is given; otherwise it reverts only where it was applied.

    Examples:
        >>> import tempfile, os
        >>> from edit.edit_request import Note
        >>> m = nn.Linear(3, 2, bias=False)
        >>> e = Edit("demo", Note({"why": "example"}), {"weight": Delta(left=torch.ones(2, 1), right=torch.ones(3, 1))})
        >>> d = tempfile.mkdtemp()
        >>> save_patch(e.apply(m), os.path.join(d, "one.patch")).name
        'one.patch.json'
        >>> back = load_patch(os.path.join(d, "one.patch"))
        >>> same = torch.equal(back.deltas["weight"].tensor(), e.deltas["weight"].tensor())
        >>> back.method, back.deltas["weight"].rank, same, back.request
        ('demo', 1, True, Note(data={'why': 'example'}))

    Args:
        edit: The edit to write.
        path: Where; ``.json`` / ``.safetensors`` suffixes are added.
        base: The model the edit was made on, still unedited (only needed for an edit that is
            not applied, to name its base and store its exact revert data).
        overwrite: Replace a patch already at ``path`` (otherwise it is refused).

    Raises:
        EditError: an edit that names no base (never applied and no ``base``), a ``base`` other
            than the weights the edit was made on, or a target :func:`check_patch_target`
            refuses; nothing is written.
    """
    tensors_path, manifest_path = check_patch_target(path, overwrite)
    originals = _base_tensors(edit, base)
    unnamed = [n for n in edit.names if n not in edit.hashes_before]
    if originals is None and unnamed:
        # A patch that cannot name its base could be applied to any model: refuse to write one.
        raise EditError(
            f"the {edit.method} edit names no base for {', '.join(unnamed)}: apply it first or pass base= "
            "(the model it was made on); nothing was written"
        )
    hashes_before = dict(edit.hashes_before)
    hashes_after = dict(edit.hashes_after)
    tensors, deltas = {}, {}
    for name in edit.names:
        d = _cpu(edit.deltas[name])
        parts = d.parts()
        for part, t in parts.items():
            tensors[f"{name}::{part}"] = t.contiguous()
        deltas[name] = {"rank": d.rank, "sha256": {p: tensor_hash(t) for p, t in parts.items()}}
        if originals is not None:
            w = originals[name].detach().cpu()
            full = d.tensor()
            new = _plus(w, full)
            after = tensor_hash(new)
            if hashes_after.get(name, after) != after:
                raise EditError(f"recomputing the {edit.method} edit of {name} does not give the weights it left")
            hashes_before.setdefault(name, tensor_hash(w))
            hashes_after[name] = after
            tensors[f"{name}::restore"] = blob = _correction(w, new, full)
            deltas[name]["restore"] = tensor_hash(blob)
    # Both files go to temporaries first and are renamed when whole: a patch interrupted while it
    # is written leaves no half file, and the manifest, renamed last, names the tensors' hash.
    digest = []  # the hash of the bytes written, taken from the temporary before it is renamed

    def write_tensors(tmp: str) -> None:
        save_file(tensors, tmp)
        digest.append(hashlib.sha256(Path(tmp).read_bytes()).hexdigest())

    write_atomically(tensors_path, write_tensors)
    manifest = {
        "format": FORMAT,
        "method": edit.method,
        "request": edit.request.to_dict(),
        "settings": edit.settings,
        "metrics": edit.metrics,
        "location": edit.location.to_dict() if edit.location else None,
        "hashes_before": hashes_before,
        "hashes_after": hashes_after,
        "deltas": deltas,
        "tensors_sha256": digest[0],
    }
    text = json.dumps(manifest, indent=1, default=str)
    return write_atomically(manifest_path, lambda tmp: Path(tmp).write_text(text))


def _read(path: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """The manifest and tensors of a patch, every claim of the one checked against the other."""
    tensors_path, manifest_path = _paths(path)
    if not manifest_path.exists() or not tensors_path.exists():
        raise EditError(f"no patch at {path}: expected {manifest_path.name} and {tensors_path.name}")
    if not manifest_path.is_file() or not tensors_path.is_file():
        raise EditError(f"no patch at {path}: {manifest_path.name} and {tensors_path.name} must be files")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EditError(f"{manifest_path} is not JSON: {e}") from None
    check_manifest(manifest, manifest_path)
    data = tensors_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest["tensors_sha256"]:
        raise EditError(f"{tensors_path} does not match its manifest (changed after it was written)")
    try:
        tensors = load(data)
    except Exception as e:  # noqa: BLE001 - safetensors reports a damaged file in several ways
        raise EditError(f"{tensors_path} is not a readable safetensors file ({' '.join(str(e).split())})") from None
    check_tensors(manifest, tensors, tensors_path)
    return manifest, tensors


def _edit(manifest: dict, t: dict[str, Tensor]) -> Edit:
    deltas = {
        name: Delta(**{p: t[f"{name}::{p}"] for p in meta["sha256"]}) for name, meta in manifest["deltas"].items()
    }
    try:
        loc = Location.from_dict(manifest["location"]) if manifest["location"] else None
    except ValueError as e:
        raise EditError(f"the patch's location is damaged: {e}") from None
    try:
        request = request_from_dict(manifest["request"])
    except (ValueError, TypeError, KeyError) as e:
        raise EditError(f"the patch's request is damaged: {e}") from None
    return Edit(
        manifest["method"],
        request,
        deltas,
        loc,
        manifest["settings"],
        manifest["metrics"],
        hashes_before=manifest["hashes_before"],
        hashes_after=manifest.get("hashes_after") or {},
    )


def load_patch(path: str | Path) -> Edit:
    """Read a patch written by :func:`save_patch` (not applied).

    Examples:
        >>> import tempfile, os
        >>> from edit.edit_request import Note
        >>> p = os.path.join(tempfile.mkdtemp(), "b.patch")
        >>> m = nn.Linear(2, 1, bias=False)
        >>> _ = save_patch(Edit("demo", Note(), {"weight": Delta(dense=torch.ones(1, 2))}), p, base=m)
        >>> load_patch(p).applied, load_patch(p + ".json").names
        (False, ['weight'])

    Raises:
        EditError: missing files, another format, tensors that do not match the manifest, or a
            patch that does not name the base hash of every tensor it touches.
    """
    return _edit(*_read(path))


def revert_patch(path: str | Path, model: nn.Module) -> Edit:
    """Undo a patch, read from its file, on weights it produced: bitwise back to those it was made on.

    Examples:
        >>> import tempfile, os
        >>> from edit.edit_request import Note
        >>> _ = torch.manual_seed(0)
        >>> m = nn.Linear(64, 64, bias=False)
        >>> base = m.weight.detach().clone()
        >>> e = Edit("demo", Note(), {"weight": Delta(left=torch.randn(64, 1), right=torch.randn(64, 1))}).apply(m)
        >>> p = os.path.join(tempfile.mkdtemp(), "c.patch")
        >>> _ = save_patch(e, p)
        >>> fresh = nn.Linear(64, 64, bias=False)       # another process: the edited weights, no originals
        >>> _ = fresh.weight.data.copy_(m.weight)
        >>> bool(torch.equal(fresh.weight - e.deltas["weight"].tensor(), base))   # subtracting is not enough
        False
        >>> bool(torch.equal(revert_patch(p, fresh) and fresh.weight, base))
        True

    Args:
        path: The patch file.
        model: Holds the weights the patch produced (they must hash to its ``hashes_after``).

    Raises:
        EditError: a patch without revert data, weights the patch did not produce, or a result
            that does not hash to ``hashes_before``; the model is then unchanged.
    """
    manifest, t = _read(path)
    edit = _edit(manifest, t)
    if any(f"{n}::restore" not in t for n in edit.names):
        raise EditError(
            f"{path} holds no revert data (written without the base weights, or by an older "
            f"version): revert it where it was applied, or apply it to the base again"
        )
    params = dict(model.named_parameters())
    restored = {}
    for n in edit.names:
        if n not in params:
            raise EditError(f"{type(model).__name__} has no parameter {n!r}")
        if tensor_hash(params[n]) != edit.hashes_after.get(n):
            raise EditError(
                f"{n} is not what this {edit.method} patch produced (its hash differs from the patch's "
                f"hashes_after); nothing was reverted"
            )
        new = params[n].detach().cpu()
        restored[n] = _corrected(new, _cpu(edit.deltas[n]).tensor(), t[f"{n}::restore"], n)
        if tensor_hash(restored[n]) != edit.hashes_before.get(n):
            raise EditError(
                f"reverting {n} does not give back the weights this {edit.method} patch was made on "
                f"(hash differs from its hashes_before); nothing was reverted"
            )
    with torch.no_grad():
        for n, w in restored.items():
            params[n].copy_(w)
    return edit


def describe_patch(path: str | Path) -> dict:
    """What a patch file holds: method, request, settings, and per tensor its rank, sizes and hashes.

    Examples:
        >>> import tempfile, os
        >>> from edit.edit_request import Note
        >>> p = os.path.join(tempfile.mkdtemp(), "d.patch")
        >>> m = nn.Module()
        >>> m.w = nn.Parameter(torch.zeros(4, 3))
        >>> e = Edit("demo", Note({"note": "x"}), {"w": Delta(left=torch.ones(4, 1), right=torch.ones(3, 1))})
        >>> _ = save_patch(e.apply(m).revert(m), p)  # made on m, but neither applied nor given m now
        >>> info = describe_patch(p)
        >>> info["method"], info["tensors"][0]["shape"], info["tensors"][0]["rank"], info["revertible_from_file"]
        ('demo', [4, 3], 1, False)
    """
    manifest, t = _read(path)
    tensors_path, manifest_path = _paths(path)
    rows = []
    for name, meta in sorted(manifest["deltas"].items()):
        parts = {p: t[f"{name}::{p}"] for p in meta["sha256"]}
        d = Delta(**parts)
        shape = list(d.dense.shape) if d.dense is not None else [d.left.shape[0], d.right.shape[0]]
        restore = t.get(f"{name}::restore")
        rows.append(
            {
                "name": name,
                "shape": shape,
                "rank": d.rank,
                "delta_bytes": sum(x.numel() * x.element_size() for x in parts.values()),
                "restore_bytes": None if restore is None else restore.numel(),
                "sha256_before": manifest["hashes_before"].get(name),
                "sha256_after": (manifest.get("hashes_after") or {}).get(name),
                "delta_sha256": meta["sha256"],
            }
        )
    return {
        "path": str(manifest_path),
        "format": manifest["format"],
        "method": manifest["method"],
        "request": manifest["request"],
        "settings": manifest["settings"],
        "location": (manifest["location"] or {}).get("method"),
        "tensors": rows,
        "bytes": tensors_path.stat().st_size + manifest_path.stat().st_size,
        "revertible_from_file": all(r["restore_bytes"] is not None for r in rows),
    }
