"""Export an edited model: a plain Hugging Face checkpoint with its edit manifest, model card and report.

What is written is the handle's ``model``, the one raw set of weights that editors change (the
TransformerLens and nnsight views are shadows over it and never fold anything into it). Before
writing, every given edit must be applied and every tensor must be explained: a touched tensor
hashes to what the last edit touching it left, and where the handle was loaded from a local
checkpoint, every other tensor is still bitwise that checkpoint's. The directory is written
beside the target under a hidden name and renamed into place only once complete, so an
interrupted export never leaves something that looks finished.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from workbench.checkpoint.manifest import (
    NAME,
    build,
    edit_record,
    file_sha256,
    manifest_text,
    plain,
    replay,
    seal,
    tensor_hashes,
)
from workbench.checkpoint.model_card import model_card, report_verdict
from workbench.core.files import current_umask
from workbench.core.hashing import tensor_hash
from workbench.core.strict_json import strict_json

if TYPE_CHECKING:
    from edit.edit import Edit
    from workbench.core.handle import ModelHandle

REPORT_FILES = {"json": "verification.json", "html": "verification.html"}


class ExportError(ValueError):
    """An export that would not be what it claims: edits not applied, unexplained weights, an existing target."""


@runtime_checkable
class VerificationReport(Protocol):
    """What export ships of a verification: a verdict, the report's JSON and its standalone HTML page.

    A world :class:`~workbench.verify.report_record.Report` (``verdict`` a record) and a
    :class:`~workbench.verify.text_report.TextReport` (``verdict`` a word) are both one; their
    JSON shares ``"kind"``, ``"verdict"`` (the word) and ``"reason"``.

    Examples:
        >>> from workbench.verify.text_report import TextReport
        >>> isinstance(TextReport("m", None, "undecided", "no reference"), VerificationReport)
        True
        >>> isinstance(object(), VerificationReport)
        False
    """

    verdict: Any

    def to_dict(self) -> dict: ...

    def to_html(self) -> str: ...


def check_target(out_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse an export target that exists (unless ``overwrite``) or that is not an earlier export.

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> check_target(d + "/new")
        >>> check_target(d)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ExportError: ... already exists; pass overwrite=True (--overwrite) to replace it
    """
    out = Path(out_dir)
    if not (out.exists() or out.is_symlink()):
        if not out.parent.is_dir():
            raise ExportError(f"no folder {out.parent} to write the export {out.name} in")
        return
    if not out.is_dir() and not out.is_symlink():
        raise ExportError(f"{out} is a file, not an export folder; name a new folder")
    if not overwrite:
        raise ExportError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    if out.is_symlink() or not out.is_dir() or (any(out.iterdir()) and not (out / NAME).is_file()):
        raise ExportError(f"{out} is not an export directory (no {NAME}); refusing to replace it")


def _report(report: Any) -> tuple[dict, str] | None:
    """The report's JSON (strict: NaN and infinities as null, which every parser reads) and its page."""
    if report is None:
        return None
    if not isinstance(report, VerificationReport):
        raise ExportError(
            "report must be a verification Report or TextReport (a verdict, to_dict() and to_html()), "
            f"not {type(report).__name__}"
        )
    d, html = report.to_dict(), report.to_html()
    if not isinstance(d, dict) or not isinstance(html, str):
        raise ExportError("report.to_dict() must give a dict and report.to_html() a str")
    return strict_json(plain(d)), html


def _check_edits(model, edits: Sequence[Edit], reverted: Sequence[Edit], state: dict[str, str]) -> dict[str, str]:
    for i, e in enumerate(edits, 1):
        if not e.applied:
            raise ExportError(f"edit {i} ({e.method}) is not applied to this model; apply it before exporting")
    params = {n: state[n] for n, _ in model.named_parameters()}  # hashes of the state dict, not hashed again
    first, last, breaks = replay([edit_record(e) for e in edits], [edit_record(e) for e in reverted])
    if breaks:
        raise ExportError(f"{breaks[0]}: give the edits in the order they were applied")
    for n, (label, h) in last.items():
        if n not in params:
            raise ExportError(f"{label} touches {n!r}, which {type(model).__name__} does not have")
        if params[n] != h:
            raise ExportError(
                f"{n} does not hash to what {label} left (its hashes_after): the weights changed after it was applied"
            )
    return first


def _check_base(source: str, sd: dict, state: dict[str, str], first: dict[str, str]) -> bool:
    from safetensors import safe_open

    src = Path(source)
    files = sorted(src.glob("*.safetensors")) if src.is_dir() else []
    file_names = set()
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            file_names |= set(f.keys())
    # Tensors the checkpoint holds under another name (see checkpoint_names): matched by content,
    # as they were or as the edits found them.
    unnamed = {state[n] for n in sd if n not in file_names} | {first[n] for n in first if n not in file_names}
    dtype = next((t.dtype for t in sd.values() if t.is_floating_point()), None)
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()  # a safe_open file is not iterable: keys() lists its tensors
            for n in names:
                if n not in sd:
                    t = f.get_tensor(n)
                    if tensor_hash(t.to(dtype) if t.is_floating_point() else t) not in unnamed:
                        raise ExportError(
                            f"{n} of the base checkpoint at {src} is none of the model's tensors "
                            f"(weights processed for analysis, or an edit not passed to export)"
                        )
                    continue
                # A model loaded in another dtype is a cast of the checkpoint: compare in its dtype.
                was = tensor_hash(f.get_tensor(n).to(sd[n].dtype))
                if n in first and was != first[n]:
                    raise ExportError(f"the edits were made on another {n} than the base checkpoint's at {src}")
                if n not in first and was != state[n]:
                    raise ExportError(
                        f"{n} differs from the base checkpoint at {src} and no given edit touches it "
                        f"(weights processed for analysis, or an edit not passed to export)"
                    )
    return bool(files)


def checkpoint_names(written: dict[str, str], state: dict[str, str]) -> dict[str, str]:
    """``{model tensor: name in the checkpoint}``: which written tensor is which of the model's.

    transformers may save a tensor under another name than the model's state dict gives it
    (GPT-NeoX's ``lm_head.weight`` is written as ``embed_out.weight``, the name older
    checkpoints use) and leaves out tied copies. A written name that is not the model's is
    matched by content: it must be bitwise one of the model's tensors that no other name took.

    Examples:
        >>> checkpoint_names({"embed_out.weight": "b", "w": "a"}, {"w": "a", "lm_head.weight": "b"})
        {'w': 'w', 'lm_head.weight': 'embed_out.weight'}
        >>> checkpoint_names({"w": "c"}, {"w": "a"})
        Traceback (most recent call last):
        workbench.checkpoint.export.ExportError: the written w is not the model's tensor

    Raises:
        ExportError: a written tensor that is none of the model's.
    """
    names = {}
    for n, sha in written.items():
        if n in state:
            if state[n] != sha:
                raise ExportError(f"the written {n} is not the model's tensor")
            names[n] = n
    free = {}  # content hash -> the model's names that no written name has taken
    for n, sha in state.items():
        if n not in names:
            free.setdefault(sha, []).append(n)
    for n, sha in written.items():
        if n not in state:
            if not free.get(sha):
                raise ExportError(f"the written {n} is not the model's tensor")
            names[free[sha].pop(0)] = n
    return names


def _write(
    h: ModelHandle,
    tmp: Path,
    edits: Sequence[Edit],
    reverted: Sequence[Edit],
    base: dict,
    report: tuple[dict, str] | None,
    state: dict[str, str],
) -> dict:
    h.model.save_pretrained(tmp)
    h.tokenizer.save_pretrained(tmp)
    if h.world is not None:
        world = Path(h.source) / "world.json"
        if world.is_file():
            shutil.copyfile(world, tmp / "world.json")
        else:
            (tmp / "world.json").write_text(h.world.to_json())
    meta = None
    if report is not None:
        (tmp / REPORT_FILES["json"]).write_text(json.dumps(report[0], indent=1, allow_nan=False))
        (tmp / REPORT_FILES["html"]).write_text(report[1])
        meta = {"files": REPORT_FILES, "kind": report[0].get("kind"), "verdict": report_verdict(report[0])[0]}
    weights = tensor_hashes(tmp)
    written = {n: sha for tensors in weights.values() for n, sha in tensors.items()}
    saved_as = checkpoint_names(written, state)
    missing = sorted({n for e in [*edits, *reverted] for n in e.names} - saved_as.keys())
    if missing:
        raise ExportError(f"{missing[0]}, changed by an edit, is not among the tensors the checkpoint holds")
    manifest = build(base, edits, weights, {}, meta, reverted)
    (tmp / "README.md").write_text(model_card(manifest, report[0] if report else None))
    # Every file, the weights too: their tensors are hashed one by one, but a header's metadata
    # and padding are bytes of the export as well.
    manifest["files"] = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest["chain_head"] = seal(manifest)  # over the files too, now that they are written
    # Written last: a directory without its manifest is never taken for an export.
    (tmp / NAME).write_text(manifest_text(manifest))
    return manifest


def _remove_abandoned(out: Path) -> None:
    """Remove the hidden folders of earlier exports to ``out`` whose process is gone (killed mid-write)."""
    for stale in out.parent.glob(f".{out.name}.*.partial"):
        pid = stale.name[len(out.name) + 2 :].split("-", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to judge
        return True
    return True


def _readable(directory: Path) -> None:
    """Give the files the permissions the user's umask gives new files (some writers leave 0600)."""
    umask = current_umask()
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    directory.chmod(0o777 & ~umask)


def export(
    model: ModelHandle,
    out_dir: str | Path,
    edits: Sequence[Edit] = (),
    report: Any = None,
    overwrite: bool = False,
    reverted: Sequence[Edit] = (),
) -> Path:
    """Write the edited model as a Hugging Face checkpoint with its edit manifest, model card and report.

    Examples:
        >>> import tempfile, torch, workbench
        >>> from edit.edit import Delta, Edit
        >>> from transformers import AutoModelForCausalLM
        >>> h = workbench.load("world", device="cpu")
        >>> name = "transformer.h.1.mlp.c_proj.weight"
        >>> delta = Delta(left=torch.eye(512)[:, :1], right=torch.ones(128, 1))
        >>> e = Edit("demo", {"note": "nudge one row"}, {name: delta})
        >>> out = workbench.export(h, tempfile.mkdtemp() + "/edited", edits=[e.apply(h.model)])
        >>> sorted(p.name for p in out.iterdir())  # doctest: +NORMALIZE_WHITESPACE
        ['README.md', 'config.json', 'edit_manifest.json', 'generation_config.json', 'model.safetensors',
         'tokenizer.json', 'tokenizer_config.json', 'world.json']
        >>> back = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
        >>> ids = h.encode(h.world.facts()[0].sentence(h.world.phrasings("pet")[0]))
        >>> bool(torch.equal(back(ids).logits, h.model(ids).logits)), workbench.load(str(out)).world is not None
        (True, True)
        >>> workbench.export(h, out)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ExportError: .../edited already exists; pass overwrite=True (--overwrite) to replace it
        >>> _ = e.revert(h.model)

    Args:
        model: The :class:`~workbench.core.handle.ModelHandle` whose weights are written.
        out_dir: The directory to create.
        edits: Every edit applied to the model since it was loaded, in the order applied.
        report: A verification report (:class:`VerificationReport`: a world ``Report`` or a
            ``TextReport``); its JSON is written strict (no NaN). Without one the model card says
            that no verification was run.
        overwrite: Replace ``out_dir`` if it is an earlier export.
        reverted: Patches reverted from the loaded weights (:func:`edit.patch.revert_patch`),
            in the order they were reverted; recorded, and their tensors explained.

    Raises:
        ExportError: an edit not applied, a tensor that does not hash to what the edits left,
            weights that differ from the base checkpoint unexplained, an existing target.
    """

    h, out = model, Path(out_dir)
    check_target(out, overwrite)
    if not hasattr(h.model, "save_pretrained") or not hasattr(h.model, "config"):
        raise ExportError(f"{type(h.model).__name__} is not a Hugging Face model: it cannot be saved as a checkpoint")
    rep = _report(report)
    sd = h.model.state_dict()
    state = {n: tensor_hash(t) for n, t in sd.items()}
    first = _check_edits(h.model, edits, reverted, state)
    checked = _check_base(h.source, sd, state, first)
    base = {
        "name": h.name,
        "source": h.source,
        "dtype": str(h.dtype).replace("torch.", ""),
        "config": h.model.config.to_dict(),
        "touched_sha256": first,
        "checked_against_checkpoint": checked,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    tmp.mkdir()
    try:
        _write(h, tmp, edits, reverted, base, rep, state)
        _readable(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.{secrets.token_hex(4)}.old")
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
