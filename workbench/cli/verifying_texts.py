"""``workbench verify --forget FILE --retain FILE``: forgetting verified on a user's own model and files.

Called by :func:`workbench.cli.verifying.verify_cmd` when ``--forget`` is given, and by
``workbench export --verify --forget`` (:mod:`workbench.cli.shipping`); every file and the
reference are checked before the model loads, each bad one refused in one line naming its option.

Examples:
    >>> read_items_option("/no/such.jsonl", "--forget")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    workbench.cli.common.CliError: --forget: ...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.cli.common import CliError, Output, check_output_file, load_model
from workbench.core.data_files import QA, DataFileError, read_choices, read_qa, read_texts
from workbench.core.handle import ModelHandle, ModelLoadError, resolve_model

if TYPE_CHECKING:
    from workbench.verify.text_report import TextReport


def read_items_option(path: str, option: str) -> list[QA] | list[str]:
    """TOFU question-answer pairs where the file holds them, else its texts; one-line refusal naming the option."""
    try:
        return read_qa(path)
    except DataFileError:
        pass  # not question-answer records: read as texts, whose error names what a record needs
    try:
        return read_texts(path)
    except DataFileError as e:
        raise CliError(f"{option}: {e}") from None


def _fmt(x) -> str:
    return "    –" if x is None or x != x else f"{x:5.3g}"


def render_text_report(o: dict) -> str:
    """The text form of a :class:`~workbench.verify.text_report.TextReport`'s JSON.

    Examples:
        >>> print(render_text_report({"model": "m", "reference": None, "verdict": "undecided", "reason": "r",
        ...     "table": [], "cannot_conclude": ["x"], "caveats": [], "items": {"forget": 2, "retain": 3},
        ...     "seconds": 1.0}))  # doctest: +NORMALIZE_WHITESPACE
        forget texts on m: UNDECIDED
          r
          baseline: none (no reference model)
          cannot conclude: x
          check                            edited  original reference   status
          2 forget items, 3 retain items; 1s
    """
    lines = [
        f"forget texts on {o['model']}: {o['verdict'].upper()}",
        f"  {o['reason']}",
        f"  baseline: {o['reference'] or 'none (no reference model)'}",
    ]
    lines += [f"  cannot conclude: {c}" for c in o["cannot_conclude"]]
    lines += [f"  caveat: {c}" for c in o["caveats"]]
    lines.append(f"  {'check':<30}{'edited':>8}{'original':>10}{'reference':>10}   status")
    for r in o["table"]:
        row = f"{_fmt(r['edited']):>8}{_fmt(r['original']):>10}{_fmt(r['reference']):>10}"
        lines.append(f"  {r['check']:<30}{row}   {r['status']}")
    if o.get("html"):
        lines.append(f"  report written to {o['html']}")
    n = o["items"]
    # The relearning attack trains on some forget items: the relearn rows count the others.
    relearned = f" ({n['relearn_trained']} relearned)" if n.get("relearn_trained") else ""
    lines.append(f"  {n['forget']} forget items{relearned}, {n['retain']} retain items; {o['seconds']:.0f}s")
    return "\n".join(lines)


@dataclass(frozen=True)
class TextInputs:
    """What ``--forget``, ``--retain``, ``--choices`` and ``--reference`` named, read and checked."""

    forget: list[QA] | list[str]
    retain: list[QA] | list[str]
    choices: list | None
    reference: str | None


def read_text_inputs(forget: str, retain: str | None, choices: str | None, reference: str | None) -> TextInputs:
    """Read the files and resolve the reference before any model loads; each refusal one line naming its option.

    ``reference`` is a model name, or None, "auto" or "none" for no reference (no verdict).
    """
    if retain is None:
        raise CliError("--forget needs --retain FILE: verification compares with what the model should keep")
    items = (read_items_option(forget, "--forget"), read_items_option(retain, "--retain"))
    try:
        mc = read_choices(choices) if choices is not None else None
    except DataFileError as e:
        raise CliError(f"--choices: {e}") from None
    ref_name = None if reference in (None, "auto", "none") else reference
    if ref_name is not None:
        try:
            resolve_model(ref_name)
        except ModelLoadError as e:
            raise CliError(f"--reference: {e}") from None
    return TextInputs(*items, mc, ref_name)


def verify_text_inputs(
    h: ModelHandle, inputs: TextInputs, edit, quick: bool, dtype: str | None = None, device: str | None = None
) -> TextReport:
    """Verify ``h`` (with ``edit`` applied, reverted for the original) on the files, against the reference."""
    from workbench.verify.report import VerifyError
    from workbench.verify.text_report import TextVerifySettings, verify_texts

    ref = load_model(inputs.reference, dtype, device) if inputs.reference is not None else None
    try:
        return verify_texts(
            h,
            inputs.forget,
            inputs.retain,
            reference=ref,
            choices=inputs.choices,
            settings=TextVerifySettings.quick() if quick else None,
            edit=edit,
        )
    except VerifyError as e:
        raise CliError(str(e)) from None


def verify_files(
    forget: str,
    retain: str | None,
    choices: str | None,
    edit,
    reference: str,
    quick: bool,
    model: str,
    dtype: str | None,
    device: str | None,
    as_json: bool,
    html: str | None = None,
) -> None:
    """Read the files, load the model (with ``edit`` applied) and the reference, verify, print.

    ``edit`` is a loaded patch or None; ``reference`` a model name, "auto" or "none" (no reference);
    ``html`` a file to write the report's page to, checked before anything loads.
    """
    from edit.edit import EditError

    inputs = read_text_inputs(forget, retain, choices, reference)
    if html:
        check_output_file(html, "--html")
    h = load_model(model, dtype, device)
    if edit is not None:
        try:
            edit.apply(h.model)
        except EditError as e:
            raise CliError(f"{e} (the patch was made on another model; pass --model)") from None
    report = verify_text_inputs(h, inputs, edit, quick, dtype, device)
    out = report.to_dict()
    if html:
        Path(html).write_text(report.to_html(), encoding="utf-8")
    out["html"] = html or None
    Output(as_json).emit(out, render_text_report)


__all__ = [
    "TextInputs",
    "read_items_option",
    "read_text_inputs",
    "render_text_report",
    "verify_files",
    "verify_text_inputs",
]
