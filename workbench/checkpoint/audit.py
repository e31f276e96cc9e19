"""Audit an exported directory: recompute every hash its edit manifest records and say what does not match.

Checked: every tensor of every safetensors file, every other file (config, tokenizer, world,
model card, verification report), files nobody recorded, the hash chain over the edits, and
that the edits' own before/after hashes lead from the base to the exported tensors. Only
safetensors and JSON are read. An audit finds changes made after export; whoever can rewrite
the manifest can rewrite its hashes too, so compare the chain head with a copy kept elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.checkpoint.manifest import (
    FORMAT,
    GENESIS,
    NAME,
    READABLE,
    chain,
    file_sha256,
    manifest_text,
    replay,
    seal,
    tensor_hashes,
)


class AuditError(ValueError):
    """A directory that cannot be audited: missing, or without a readable edit manifest."""


@dataclass
class Audit:
    """What an audit checked and every mismatch it found, one line each.

    Examples:
        >>> a = Audit("out", problems=["tensor w: sha256 differs from the manifest"])
        >>> a.ok, Audit("out").ok
        (False, True)
    """

    path: str
    problems: list[str] = field(default_factory=list)
    tensors: int = 0
    files: int = 0
    edits: int = 0
    chain_head: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        """Everything, with ``ok``, as one JSON-able dict (what ``workbench audit --json`` prints)."""
        return dict(asdict(self), ok=self.ok)


def _manifest(directory: Path) -> dict:
    if not directory.is_dir():
        raise AuditError(f"no such directory: {directory}")
    path = directory / NAME
    if not path.is_file():
        raise AuditError(f"{directory} is not an export (no {NAME})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AuditError(f"{path} is not JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in READABLE:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise AuditError(f"{path} is not an export manifest (format {fmt!r})")
    return manifest


def _tensors(directory: Path, manifest: dict) -> tuple[list[str], int]:
    problems = []
    weights = tensor_hashes(directory, unreadable=problems)
    for f in manifest["weight_files"]:
        if _inside(directory, f) is None:
            problems.append(f"weights {f!r}: leaves the export directory (not read)")
    for f in sorted(set(manifest["weight_files"]) - set(weights)):
        if not (directory / f).is_file():
            problems.append(f"weights {f}: missing")
    on_disk = {}
    for f in sorted(weights):
        if f not in manifest["weight_files"]:
            problems.append(f"weights {f}: not recorded in the manifest")
        on_disk.update(weights[f])
    recorded = manifest["tensors"]
    for n in sorted(recorded.keys() | on_disk.keys()):
        if n not in on_disk:
            problems.append(f"tensor {n}: in the manifest but not in the weights")
        elif n not in recorded:
            problems.append(f"tensor {n}: in the weights but not in the manifest")
        elif on_disk[n] != recorded[n]:
            problems.append(
                f"tensor {n}: sha256 {on_disk[n][:12]}... differs from the manifest's {recorded[n][:12]}..."
            )
    return problems, len(on_disk)


def _inside(directory: Path, name: object) -> Path | None:
    """The export's file ``name``, or None where the name or a link on its way leaves the directory.

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _inside(d, "README.md") == d / "README.md", _inside(d, "../../etc/passwd"), _inside(d, "/etc/passwd")
        (True, None, None)
    """
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        return None
    root, path = directory.resolve(), directory / name
    resolved = path.resolve()
    return path if resolved == root or root in resolved.parents else None


def _files(directory: Path, manifest: dict) -> list[str]:
    problems = []
    for name, sha in manifest["files"].items():
        path = _inside(directory, name)
        if path is None:
            problems.append(f"file {name!r}: leaves the export directory (not read)")
        elif not path.is_file():
            problems.append(f"file {name}: missing")
        elif file_sha256(path) != sha:
            problems.append(f"file {name}: sha256 differs from the manifest")
    known = set(manifest["files"]) | set(manifest["weight_files"]) | {NAME}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_symlink() and _inside(directory, rel) is None:
            problems.append(f"file {rel}: a link that leaves the export directory (not read)")
        elif (path.is_file() or path.is_symlink()) and rel not in known:
            problems.append(f"file {rel}: not recorded in the manifest")
    return problems


def _edits(manifest: dict) -> list[str]:
    problems = []
    edits, reverted = manifest["edits"], manifest.get("reverted") or []
    for i, (r, expected) in enumerate(zip(edits, chain(edits), strict=True), 1):
        if r.get("link") != expected:
            problems.append(
                f"edit {i} ({r.get('method')}): hash chain link differs (the edit's record or order changed)"
            )
            break  # every later link depends on this one
    links = chain(edits)
    # The head over the edits as recorded, linked afresh: a changed record moves it too.
    relinked = {**manifest, "edits": [{**r, "link": ln} for r, ln in zip(edits, links, strict=True)]}
    if manifest["format"] == FORMAT:
        if manifest.get("chain_head") != seal(relinked):
            problems.append("chain head: differs from the hash over the edits, base, tensors and files recorded")
    elif manifest.get("chain_head") != (links[-1] if links else GENESIS):
        problems.append("chain head: differs from the hash chain over the recorded edits")
    first, last, breaks = replay(edits, reverted)
    problems += breaks
    base = manifest["base"].get("touched_sha256") or {}
    for n in sorted(first.keys() | base.keys()):
        if base.get(n) != first.get(n):
            problems.append(f"base {n}: the manifest's base hash is not the one the first edit was made on")
    for n, (label, sha) in sorted(last.items()):
        if n in manifest["tensors"] and manifest["tensors"][n] != sha:
            problems.append(f"tensor {n}: the manifest's hash is not what {label} left")
        # A tensor checkpoints keep under another name (GPT-NeoX's lm_head as embed_out) is
        # found by its content, as export matched it.
        if n not in manifest["tensors"] and sha not in set(manifest["tensors"].values()):
            problems.append(f"tensor {n}: touched by {label} but not in the exported weights")
    return problems


def audit(out_dir: str | Path) -> Audit:
    """Re-check every hash of an exported directory against its edit manifest.

    Examples:
        >>> import tempfile, workbench
        >>> h = workbench.load("world", device="cpu")
        >>> out = workbench.export(h, tempfile.mkdtemp() + "/plain")
        >>> audit(out).ok
        True
        >>> _ = (out / "config.json").write_text("{}")
        >>> audit(out).problems
        ['file config.json: sha256 differs from the manifest']

    Args:
        out_dir: A directory written by :func:`workbench.checkpoint.export`.

    Raises:
        AuditError: no such directory, or no readable manifest in it.
    """
    directory = Path(out_dir)
    manifest = _manifest(directory)
    try:
        tensor_problems, n_tensors = _tensors(directory, manifest)
        problems = tensor_problems + _files(directory, manifest) + _edits(manifest)
        if (directory / NAME).read_text() != manifest_text(manifest):
            problems.append(f"file {NAME}: its bytes are not as export wrote them (edited by hand?)")
    except (KeyError, TypeError, AttributeError) as e:
        raise AuditError(f"{directory / NAME} is malformed ({type(e).__name__}: {e})") from None
    return Audit(
        str(directory), problems, n_tensors, len(manifest["files"]), len(manifest["edits"]), manifest.get("chain_head")
    )
