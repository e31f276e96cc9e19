"""The shipping commands of the ``workbench`` CLI: ``export``, ``patch show|apply|revert`` and ``audit``.

Registered on the app by :mod:`workbench.cli.app`; same conventions: ``--json`` prints one
object, bad input is one line on stderr and exit status 2. ``audit`` exits with status 1 when
something does not match, after listing every mismatch, one line each.

Examples:
    >>> _kb(2500), _kb(None)
    ('2.5 kB', '-')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from workbench.cli.common import DEVICE, DTYPE, JSON, MODEL, CliError, Output, load_model
from workbench.cli.verifying_texts import TextInputs, read_text_inputs, verify_text_inputs
from workbench.core.handle import ModelHandle

if TYPE_CHECKING:
    from edit.edit import EditSequence
    from workbench.verify import Report
    from workbench.verify.rewrite_texts import RewriteTextReport
    from workbench.verify.text_report import TextReport

# The editors, locators and checks load when a command runs, not when the CLI starts: they pull
# in transformers' model classes and scipy, seconds that --help and a mistyped option should not
# wait for.

patch_app = typer.Typer(no_args_is_help=True, help="Patch files: show, apply to a base model, revert bitwise.")

OUT = typer.Option(..., "--out", "-o", help="The directory to write (must not exist, unless --overwrite).")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace OUT if it is an earlier export.")


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1000:.1f} kB"


def _exported(out: Path, extra: dict) -> dict:
    from workbench.checkpoint.manifest import NAME

    manifest = json.loads((out / NAME).read_text())
    return {
        "out": str(out),
        **extra,
        "edits": [{"method": e["method"], "tensors": e["tensors"]} for e in manifest["edits"]],
        "tensors": len(manifest["tensors"]),
        "chain_head": manifest["chain_head"],
        "files": sorted({*manifest["files"], *manifest["weight_files"], NAME}),
    }


def _render_export(o: dict) -> str:
    done = (
        f"{len(o['edits'])} edit(s) applied"
        if o.get("reverted") is None
        else f"{len(o['reverted'])} patch(es) reverted"
    )
    lines = [
        f"wrote {o['out']}: {done}, {o['tensors']} tensors, files: {', '.join(o['files'])}",
        f"chain head {o['chain_head']} (check with: workbench audit {o['out']})",
    ]
    if o.get("verdict"):
        lines.append(f"verified ({o['report_kind']}): {o['verdict']}; {o['reason']}")
    return "\n".join(lines)


def _apply_and_export(
    files: list[str],
    model: str,
    out: str,
    overwrite: bool,
    verify: bool = False,
    quick: bool = False,
    dtype: str | None = None,
    device: str | None = None,
    texts: TextInputs | None = None,
) -> dict:
    """Apply the patches to ``model`` and export it; with ``verify``, its report beside it.

    ``texts`` (read by :func:`~workbench.cli.verifying_texts.read_text_inputs`) verifies
    forgetting from files on any model; without them, ``verify`` asks the model's fact world.
    """
    from edit.edit import EditSequence
    from edit.patch import load_patch
    from workbench.checkpoint.export import check_target, export
    from workbench.verify.rewrite import requests_of

    if not files:
        raise CliError("give at least one patch file")
    check_target(out, overwrite)
    edits = [load_patch(f) for f in files]  # a missing or damaged patch fails before the model loads
    _refuse_if_tampered(model)
    h = load_model(model, dtype, device)
    rewrites = verify and texts is None and h.world is None and len(edits) == 1 and requests_of(edits[0].request)
    if verify and texts is None and h.world is None and not rewrites:
        raise CliError(
            f"--verify: model {h.name!r} has no fact world; verify its forgetting from files with "
            "--forget FILE --retain FILE [--reference MODEL] (a single rewrite patch verifies from its requests)"
        )
    sequence = EditSequence(edits).apply(h.model)
    report: Report | TextReport | RewriteTextReport | None = None
    if rewrites:
        report = _verify_rewrite(h, edits[0])
    elif verify:
        report = verify_text_inputs(h, texts, sequence, quick, dtype, device) if texts else _verify(h, sequence, quick)
    extra = {"model": model, "patches": files}
    if report is not None:
        d = report.to_dict()
        extra.update(report_kind=d["kind"], verdict=d["verdict"], reason=d["reason"])
    return _exported(export(h, out, edits=edits, report=report, overwrite=overwrite), extra)


def _verify_rewrite(h: ModelHandle, edit) -> RewriteTextReport:
    from workbench.verify import VerifyError
    from workbench.verify.rewrite_texts import verify_rewrite_texts

    try:
        return verify_rewrite_texts(h, edit)
    except VerifyError as e:
        raise CliError(f"--verify: {e}") from None


def _verify(h: ModelHandle, sequence: EditSequence, quick: bool) -> Report:
    from workbench.verify import VerifyError, VerifySettings, verify

    try:
        return verify(
            h,
            sequence if len(sequence.edits) > 1 else sequence.edits[0],
            settings=VerifySettings.quick() if quick else None,
        )
    except VerifyError as e:
        raise CliError(f"--verify: {e}") from None


def export_cmd(
    patch: list[str] = typer.Option([], "--patch", "-p", help="A patch file; repeat to apply several in order."),
    out: str = OUT,
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    overwrite: bool = OVERWRITE,
    verify: bool = typer.Option(
        False, "--verify", help="Verify the patched model (workbench verify) and ship the report beside it."
    ),
    quick: bool = typer.Option(False, "--quick", help="With --verify: the quick report."),
    forget_file: str | None = typer.Option(
        None,
        "--forget",
        help="With --verify, on any model: the texts or TOFU question-answer pairs forgotten (as verify --forget).",
    ),
    retain_file: str | None = typer.Option(None, "--retain", help="With --forget: texts or pairs to keep."),
    reference: str | None = typer.Option(
        None, "--reference", help="With --forget: a model trained without the forget set (none: no verdict)."
    ),
    as_json: bool = JSON,
) -> None:
    """Apply patches to the base model in order and export a Hugging Face checkpoint with its manifest and card."""
    if quick and not verify:
        raise CliError("--quick goes with --verify")
    named = [o for o, v in (("--forget", forget_file), ("--retain", retain_file), ("--reference", reference)) if v]
    go = f"{' and '.join(named)} {'goes' if len(named) == 1 else 'go'} with"
    if named and not verify:
        raise CliError(f"{go} --verify (the forgetting to verify and ship beside the export)")
    if named and forget_file is None:
        raise CliError(f"{go} --forget FILE: the texts whose forgetting is verified")
    # Every file the verification reads is checked before the model loads and the patches apply.
    texts = read_text_inputs(forget_file, retain_file, None, reference) if forget_file is not None else None
    Output(as_json).emit(
        _apply_and_export(patch, model, out, overwrite, verify, quick, dtype, device, texts), _render_export
    )


def _refuse_if_tampered(model: str) -> None:
    """An export given as the model is audited first: building on weights that fail it would launder them."""
    from workbench.checkpoint.audit import audit
    from workbench.checkpoint.manifest import NAME

    if not (Path(model) / NAME).is_file():
        return  # a shipped or plain checkpoint: there is no record to check it against
    result = audit(model)
    if not result.ok:
        raise CliError(
            f"{model} fails its audit ({len(result.problems)} problem(s), first: {result.problems[0]}); "
            f"refusing to build on it (see: workbench audit {model})"
        )


@patch_app.command("apply")
def patch_apply(
    files: list[str] = typer.Argument(..., help="Patch files, applied in the order given."),
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    out: str = OUT,
    overwrite: bool = OVERWRITE,
    as_json: bool = JSON,
) -> None:
    """Write the patched checkpoint of MODEL (with its edit manifest) to OUT."""
    Output(as_json).emit(_apply_and_export(files, model, out, overwrite, dtype=dtype, device=device), _render_export)


@patch_app.command("revert")
def patch_revert(
    files: list[str] = typer.Argument(..., help="The patches that made MODEL, in the order applied."),
    model: str = typer.Option(..., "--model", "-m", help="The patched checkpoint's directory."),
    out: str = OUT,
    overwrite: bool = OVERWRITE,
    as_json: bool = JSON,
) -> None:
    """Revert patches (last first) from a patched checkpoint, bitwise back to the base, and write it to OUT."""
    from edit.patch import revert_patch
    from workbench.checkpoint.export import check_target, export
    from workbench.checkpoint.manifest import NAME

    check_target(out, overwrite)
    if not (Path(model) / NAME).is_file():
        # Without the export's record there is nothing to audit the weights against, and a
        # revert of weights no one can vouch for would vouch for them.
        raise CliError(f"--model {model} is not an export (no {NAME}): revert reads what export or patch apply wrote")
    _refuse_if_tampered(model)
    h = load_model(model)  # bitwise revert: the dtype the patches were made in
    reverted = [revert_patch(f, h.model) for f in reversed(files)]
    path = export(h, out, reverted=reverted, overwrite=overwrite)
    restored = {n: e.hashes_before[n] for e in reverted for n in e.names}
    Output(as_json).emit(
        _exported(path, {"model": model, "reverted": list(reversed(files)), "restored": restored}), _render_export
    )


@patch_app.command("show")
def patch_show(
    file: str = typer.Argument(..., help="A patch file (with or without its .json suffix)."), as_json: bool = JSON
) -> None:
    """Method, request, and per tensor its shape, rank, sizes and hashes."""
    from edit.patch import describe_patch
    from workbench.checkpoint.model_card import describe_request

    info = describe_patch(file)
    info["summary"] = describe_request(info["request"])

    def render(o: dict) -> str:
        lines = [f"{o['method']} patch ({o['format']}), {_kb(o['bytes'])}: {o['summary']}"]
        for t in o["tensors"]:
            rank = f"rank {t['rank']}" if t["rank"] is not None else "dense"
            lines.append(
                f"  {t['name']}  {'x'.join(map(str, t['shape']))}  {rank}  delta {_kb(t['delta_bytes'])}"
                f"  revert data {_kb(t['restore_bytes'])}"
            )
            lines.append(f"    before {t['sha256_before'] or '-'}\n    after  {t['sha256_after'] or '-'}")
        lines.append(
            "revertible from the file alone: "
            + ("yes" if o["revertible_from_file"] else "no (revert it where it was applied)")
        )
        return "\n".join(lines)

    Output(as_json).emit(info, render)


def audit_cmd(directory: str = typer.Argument(..., help="An exported directory."), as_json: bool = JSON) -> None:
    """Re-check every hash of an export against its manifest; exit status 1 if anything does not match."""
    from workbench.checkpoint.audit import audit

    result = audit(directory)

    def render(o: dict) -> str:
        if o["ok"]:
            return (
                f"{o['path']}: all hashes match ({o['tensors']} tensors, {o['files']} files, {o['edits']} edits); "
                f"chain head {o['chain_head']}"
            )
        return "\n".join([f"{o['path']}: {len(o['problems'])} mismatch(es)", *o["problems"]])

    Output(as_json).emit(result.to_dict(), render)
    if not result.ok:
        raise typer.Exit(1)
