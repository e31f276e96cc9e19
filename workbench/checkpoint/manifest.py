"""The edit manifest: what an exported model is, how it was made, and the hashes that let anyone check it.

One JSON file beside the weights holds the base model's identity, every edit in the order it
was applied (method, request, Location, settings, touched tensors, the sha256 of each delta,
the touched tensors' hashes before and after), a hash chain over those edits, the hash of
every exported tensor and file, and the library versions. :func:`canonical` is the one
serialisation any hash of JSON is taken of, so a record read back hashes as it was written.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.core.hashing import tensor_hash

if TYPE_CHECKING:
    from edit.edit import Edit

FORMAT = "knowledge-workbench/export/2"
# Format 1's chain head covered the edits only; its exports are still audited by that rule.
READABLE = ("knowledge-workbench/export/1", FORMAT)
NAME = "edit_manifest.json"
# The link before the first edit.
GENESIS = "0" * 64
# What the chain head commits to besides the edits: everything else the manifest records.
SEALED = ("format", "base", "reverted", "tensors", "weight_files", "files", "report", "versions")


def canonical(obj: Any) -> str:
    """The one JSON text of ``obj`` that hashes are taken of: sorted keys, no spaces.

    Examples:
        >>> canonical({"b": 1, "a": [1.5, None]})
        '{"a":[1.5,null],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _jsonable(o: Any) -> Any:
    # numpy and torch scalars and arrays stay numbers; anything else is recorded by its text.
    return o.tolist() if callable(getattr(o, "tolist", None)) else str(o)


def plain(obj: Any) -> Any:
    """``obj`` as JSON reads it back (tuples become lists, tensors numbers, unknown objects their ``str``).

    Examples:
        >>> import torch
        >>> plain({"layers": (1, 2), "path": Path("a"), "loss": torch.tensor(0.5)})
        {'layers': [1, 2], 'path': 'a', 'loss': 0.5}
    """
    return json.loads(json.dumps(obj, default=_jsonable))


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in chunks.

    Examples:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x")
        >>> _ = open(p, "wb").write(b"abc")
        >>> file_sha256(p)[:12]
        'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def edit_record(edit: Edit) -> dict:
    """An edit as the manifest records it: everything but the tensors, with a sha256 per delta factor.

    Examples:
        >>> import torch
        >>> from edit.edit import Delta, Edit
        >>> e = Edit("demo", {"note": "x"}, {"w": Delta(left=torch.ones(2, 1), right=torch.ones(3, 1))},
        ...          settings={"seed": 3}, hashes_before={"w": "a" * 64}, hashes_after={"w": "b" * 64})
        >>> r = edit_record(e)
        >>> r["tensors"], r["deltas"]["w"]["rank"], sorted(r["deltas"]["w"]["sha256"]), r["seed"]
        (['w'], 1, ['left', 'right'], 3)
    """

    deltas = {}
    for name in edit.names:
        d = edit.deltas[name]
        parts = d.parts()
        shape = list(d.dense.shape) if d.dense is not None else [d.left.shape[0], d.right.shape[0]]
        deltas[name] = {"rank": d.rank, "shape": shape, "sha256": {p: tensor_hash(t) for p, t in parts.items()}}
    record = {
        "method": edit.method,
        "request": edit.request.to_dict(),
        "location": edit.location.to_dict() if edit.location else None,
        "settings": edit.settings,
        "metrics": edit.metrics,
        "tensors": edit.names,
        "deltas": deltas,
        "hashes_before": {n: edit.hashes_before.get(n) for n in edit.names},
        "hashes_after": {n: edit.hashes_after.get(n) for n in edit.names},
    }
    if isinstance(edit.settings, dict) and "seed" in edit.settings:
        record["seed"] = edit.settings["seed"]
    return plain(record)


def link(previous: str, record: dict) -> str:
    """The next link of the hash chain: sha256 of the previous link and the record's canonical JSON.

    Examples:
        >>> a = link(GENESIS, {"method": "x"})
        >>> a == link(GENESIS, {"method": "x"}), a == link(GENESIS, {"method": "y"}), len(a)
        (True, False, 64)
    """
    body = {k: v for k, v in record.items() if k != "link"}
    return hashlib.sha256((previous + canonical(body)).encode()).hexdigest()


def chain(records: Sequence[dict]) -> list[str]:
    """Every link of the chain over ``records``, in order: swapping or changing any edit changes the rest.

    Examples:
        >>> a, b = {"method": "a"}, {"method": "b"}
        >>> chain([a, b])[1] == chain([b, a])[1], chain([a, b])[0] == link(GENESIS, a)
        (False, True)
    """
    links, previous = [], GENESIS
    for r in records:
        previous = link(previous, r)
        links.append(previous)
    return links


def manifest_text(manifest: dict) -> str:
    """The manifest as export writes it: the one text audit accepts for its content.

    JSON ignores whitespace and key order, so without a fixed form a manifest's bytes could be
    changed without changing what it says; audit compares the file with this text.

    Examples:
        >>> manifest_text({"format": "x", "edits": []}).splitlines()
        ['{', ' "format": "x",', ' "edits": []', '}']
    """
    return json.dumps(manifest, indent=1)


def seal(manifest: dict) -> str:
    """The chain head: the edits' last link, chained once more over everything else the manifest records.

    Every tensor and file hash, the base record, the reverted edits and the report record are
    under it, so a head kept elsewhere tells any later change to the manifest.

    Examples:
        >>> m = build({"name": "tiny"}, [], {"model.safetensors": {"w": "c" * 64}}, {})
        >>> m["chain_head"] == seal(m), seal({**m, "tensors": {"w": "d" * 64}}) == seal(m)
        (True, False)
    """
    last = manifest["edits"][-1]["link"] if manifest["edits"] else GENESIS
    return link(last, {k: manifest.get(k) for k in SEALED})


def replay(edits: Sequence[dict], reverted: Sequence[dict] = ()) -> tuple[dict, dict, list[str]]:
    """Follow each touched tensor's hash through the reverted patches, then the edits (records, in order).

    Returns the hash each touched tensor had first, ``{name: (step, hash)}`` for the step that
    touched it last, and a line for every step not made on the weights the step before left.

    Examples:
        >>> a = {"method": "a", "hashes_before": {"w": "0"}, "hashes_after": {"w": "1"}}
        >>> b = {"method": "b", "hashes_before": {"w": "1"}, "hashes_after": {"w": "2"}}
        >>> replay([a, b])
        ({'w': '0'}, {'w': ('edit 2 (b)', '2')}, [])
        >>> replay([b, a])[2]
        ['edit 2 (a) was not made on the weights edit 1 (b) left in w']
    """
    steps = [
        (f"reverted patch {i} ({r['method']})", r["hashes_after"], r["hashes_before"])
        for i, r in enumerate(reverted, 1)
    ]
    steps += [(f"edit {i} ({r['method']})", r["hashes_before"], r["hashes_after"]) for i, r in enumerate(edits, 1)]
    first, last, breaks = {}, {}, []
    for label, before, after in steps:
        for n in sorted(before.keys() | after.keys()):
            if n in last and last[n][1] != before.get(n):
                breaks.append(f"{label} was not made on the weights {last[n][0]} left in {n}")
            first.setdefault(n, before.get(n))
            last[n] = (label, after.get(n))
    return first, last, breaks


def versions() -> dict[str, str]:
    """The versions of the libraries that wrote (and can read) an export.

    Examples:
        >>> sorted(versions())
        ['knowledge-workbench', 'safetensors', 'torch', 'transformers']
    """
    out = {}
    for name in ("torch", "transformers", "safetensors", "knowledge-workbench"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def tensor_hashes(directory: str | Path, unreadable: list[str] | None = None) -> dict[str, dict[str, str]]:
    """``{file: {tensor: sha256}}`` for every ``*.safetensors`` file in ``directory`` (nothing else is read;
    a link that leads out of the directory is passed over).

    A file safetensors cannot read raises, unless ``unreadable`` is given: then a line naming it
    goes there and the file is left out.

    Examples:
        >>> import tempfile, torch
        >>> from safetensors.torch import save_file
        >>> d = tempfile.mkdtemp()
        >>> save_file({"w": torch.zeros(2)}, d + "/model.safetensors")
        >>> from workbench.core.hashing import tensor_hash
        >>> tensor_hashes(d)["model.safetensors"]["w"] == tensor_hash(torch.zeros(2))
        True
    """
    from safetensors import safe_open

    out = {}
    root = Path(directory).resolve()
    for path in sorted(Path(directory).glob("*.safetensors")):
        if path.resolve().parent != root:  # a link out of the directory is not the export's to read
            continue
        try:
            with safe_open(str(path), framework="pt") as f:
                names = f.keys()  # a safe_open file is not iterable: keys() lists its tensors
                out[path.name] = {k: tensor_hash(f.get_tensor(k)) for k in names}
        except Exception as e:  # noqa: BLE001 - safetensors reports a damaged file in several ways
            if unreadable is None:
                raise
            unreadable.append(f"weights {path.name}: unreadable ({' '.join(str(e).split())})")
    return out


def build(
    base: dict,
    edits: Sequence[Edit],
    weights: dict[str, dict[str, str]],
    files: dict[str, str],
    report: dict | None = None,
    reverted: Sequence[Edit] = (),
) -> dict:
    """The manifest of an export: base, edits with their chain links, every tensor and file hash, versions.

    Examples:
        >>> m = build({"name": "tiny"}, [], {"model.safetensors": {"w": "c" * 64}}, {"config.json": "d" * 64})
        >>> m["format"], m["chain_head"] == seal(m), m["tensors"]["w"] == "c" * 64, m["weight_files"]
        ('knowledge-workbench/export/2', True, True, ['model.safetensors'])

    Args:
        base: Identity of the model the edits were made on (name, source, config, touched hashes).
        edits: The applied edits, in the order they were applied.
        weights: :func:`tensor_hashes` of the written directory.
        files: sha256 of every other written file, by name relative to the directory.
        report: Where the verification report was written and its verdict, if one was given.
        reverted: Edits reverted (from patch files) before export, last applied first.
    """
    records = [edit_record(e) for e in edits]
    for r, ln in zip(records, chain(records), strict=True):
        r["link"] = ln
    manifest = {
        "format": FORMAT,
        "base": plain(base),
        "edits": records,
        "chain_head": None,
        "reverted": [edit_record(e) for e in reverted],
        "tensors": {k: v for f in sorted(weights) for k, v in sorted(weights[f].items())},
        "weight_files": sorted(weights),
        "files": dict(sorted(files.items())),
        "report": plain(report),
        "versions": versions(),
    }
    manifest["chain_head"] = seal(manifest)
    return manifest
