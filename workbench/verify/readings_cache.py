"""Readings of shipped models kept on disk: a retain model reads the same for every edit verified against it.

Every check is deterministic, so what a shipped world model (the base model before an edit, a
retain model) gives for a set of facts and settings is computed once and reused across
reports, sessions and processes. The key is a hash of the model's every weight, the question
(facts, retain facts, settings) and the source of the project's own packages and the library
versions, so a change to any of them reads afresh. Only safetensors and JSON are read back.
Entries live under :func:`workbench.core.files.cache_dir` / ``readings``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from workbench.core.files import cache_dir, write_atomically
from workbench.core.hashing import tensor_hash
from workbench.verify.candidates import CandidateTable
from workbench.verify.readings import Readings

_FIELDS = ("logprob", "length", "true", "fact")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 of the project's own sources and the versions of torch and transformers.

    Examples:
        >>> len(code_version()) == 64 and code_version() == code_version()
        True
    """
    import transformers

    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256(f"{torch.__version__} {transformers.__version__}".encode())
    for package in ("workbench", "edit", "locate"):
        for path in sorted((root / package).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def model_fingerprint(model) -> str:
    """sha256 over the names and hashes of every parameter and buffer of a model."""
    h = hashlib.sha256()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{name}:{tensor_hash(t)}".encode())
    return h.hexdigest()


def entry_key(model, question: tuple) -> str:
    """The cache key of one model's readings for one question (any tuple with a stable repr).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> entry_key(h.model, ("a",)) == entry_key(h.model, ("a",)) != entry_key(h.model, ("b",))
        True
    """
    h = hashlib.sha256(model_fingerprint(model).encode())
    h.update(repr(question).encode())
    h.update(code_version().encode())
    return h.hexdigest()[:32]


def _paths(key: str) -> tuple[Path, Path]:
    folder = cache_dir() / "readings"
    return folder / f"{key}.safetensors", folder / f"{key}.json"


def load_entry(key: str, facts) -> tuple[Readings, dict] | None:
    """(readings, figures) stored under ``key``, or None when absent or unreadable."""
    tensors_path, meta_path = _paths(key)
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(tensors_path))
        tables = {c: CandidateTable(**{f: tensors[f"{c}/{f}"] for f in _FIELDS}) for c in meta["checks"]}
        return Readings(meta["model"], list(facts), tables, meta["prior"]), meta["figures"]
    except (OSError, ValueError, KeyError, SafetensorError):  # absent, half-copied or foreign: read afresh
        return None


def save_entry(key: str, readings: Readings, figures: dict) -> None:
    """Store (readings, figures) under ``key``; written to temporary files then renamed, so a
    reader never sees half an entry (two processes filling one key write the same thing).
    A cache that cannot be written (read-only, disk full) is skipped: it only saves time."""
    with contextlib.suppress(OSError):
        _save(key, readings, figures)


def _save(key: str, readings: Readings, figures: dict) -> None:
    tensors_path, meta_path = _paths(key)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{c}/{f}": getattr(t, f).detach().cpu().clone() for c, t in readings.tables.items() for f in _FIELDS}
    meta = {"model": readings.model, "checks": list(readings.tables), "prior": readings.prior, "figures": figures}
    write_atomically(tensors_path, lambda tmp: save_file(tensors, tmp))
    write_atomically(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta)))
