"""The ``workbench forget`` command: unlearn a person or a split, with the figures that decide shipping.

Registered on the app by :mod:`workbench.cli.app`; same conventions: ``--json`` prints one
object, bad input is one line on stderr and exit status 2.

Examples:
    >>> _names(" Ann Lee, Bo Ma ,")
    ['Ann Lee', 'Bo Ma']
"""

from __future__ import annotations

from pathlib import Path

import typer

from workbench.cli.common import (
    DEVICE,
    DTYPE,
    FORCE,
    JSON,
    MODEL,
    CliError,
    Output,
    load_model,
    read_texts_option,
    world_of,
)
from workbench.cli.features import check_sae, sae_folder
from workbench.core.data_files import QA, DataFileError, read_qa

# The editors, locators and checks load when a command runs, not when the CLI starts: they pull
# in transformers' model classes and scipy, seconds that --help and a mistyped option should not
# wait for.

ROWS = (
    ("forget", "forget, trained phrasings"),
    ("forget_heldout", "forget, held-out phrasings"),
    ("retain", "retain"),
    ("neighbours", "neighbours"),
    ("forget_text_loss", "forget texts' loss"),
    ("retain_text_loss", "retain texts' loss"),
    ("heldout_loss", "held-out loss"),
)
LOSSES = {"forget_text_loss", "retain_text_loss", "heldout_loss"}


def _names(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _texts_or_qa(path: str, option: str) -> tuple[list[str], list[QA]]:
    """A file's question-answer records if every record is one (``dpo`` and ``idk`` need them), else its texts."""
    try:
        return [], read_qa(path)
    except DataFileError:
        return read_texts_option(path, option), []


def _render(o: dict) -> str:
    ref = o.get("reference")
    head = f"{'':28}{'before':>8}{'after':>8}" + (f"{'retain model':>14}" if ref else "")
    r = o["request"]
    unit = "texts" if r.get("forget_texts") and not r["forget_facts"] else "facts"
    lines = [
        f"forget {r['name']} with {o['method']}: {r[f'forget_{unit}']} {unit} forgotten, "
        f"{r[f'retain_{unit}']} kept, {o['seconds']:.1f}s",
        head,
    ]
    for key, label in ROWS:
        if key not in o["after"]:
            continue
        fmt = (lambda v: f"{v:8.3f}") if key in LOSSES else (lambda v: f"{v:8.1%}")
        row = f"  {label:<26}{fmt(o['before'][key])}{fmt(o['after'][key])}"
        if ref and key in ref:
            row += "      " + fmt(ref[key])
        lines.append(row)
    if ref:
        lines.append(f"retain model: {o['reference_model']} (never trained on the forgotten people)")
    lines.append(
        f"edited {len(o['tensors'])} tensor(s)" + (f"; patch written to {o['patch']}" if o.get("patch") else "")
    )
    return "\n".join(lines)


def forget_cmd(
    person: str | None = typer.Argument(None, help="A person of the world (several: comma-separated)."),
    split: str | None = typer.Option(None, help="A forget split instead: forget01, forget05 or forget10."),
    method: str = typer.Option(
        "ssd", help="rmu | ablate | ga | gradiff | npo | kl | dpo | idk | ssd | erase | task-vector | whp | sisa."
    ),
    forget_file: str | None = typer.Option(
        None, "--forget", help="Forget these texts instead (any model): JSONL {text}, TOFU QA, .txt or a folder."
    ),
    retain: str | None = typer.Option(
        None, help="With --forget: the texts to keep (a file as for --forget). Else: the people to keep."
    ),
    retain_facts: int = typer.Option(300, help="Retained facts scored (0: all of them)."),
    reference: bool = typer.Option(True, help="Score the split's retain model beside the result."),
    save_patch: str | None = typer.Option(None, "--save-patch", help="Write the edit as a patch file."),
    sae: str | None = typer.Option(
        None, "--sae", help="With --method ablate: a folder of SAEs (as `sae train --out` writes; default the model's)."
    ),
    force: bool = FORCE,
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Forget PERSON (or a --split) with one method; forget, retain and neighbour accuracy before and after."""
    from edit.forget import forget
    from edit.forget import method as find_method
    from edit.forget_figures import FigureSettings
    from edit.forget_request import ForgetError, ForgetRequest, forget_request
    from edit.patch import check_patch_target
    from edit.patch import save_patch as write_patch

    find_method(method)  # an unknown method fails before the model loads
    people = _names(person)
    if person is not None and not people:
        raise CliError("nothing to forget: the person is empty")
    texts = None
    if forget_file is not None:
        if people or split is not None:
            raise CliError("--forget names what to forget: no PERSON or --split with it")
        if retain is None:
            raise CliError("--forget needs --retain FILE: unlearning needs texts to keep")
        texts = (_texts_or_qa(forget_file, "--forget"), _texts_or_qa(retain, "--retain"))
    elif bool(people) == (split is not None):
        raise CliError("name a PERSON or give --split (not both), or --forget FILE with --retain FILE")
    if retain_facts < 0:
        raise CliError(f"--retain-facts must be >= 0, got {retain_facts}")
    if save_patch:  # a patch that could not be written would lose the work: refuse it first
        check_patch_target(save_patch, force)
    overrides = {}
    if sae is not None and method != "ablate":
        raise CliError("--sae goes with --method ablate (the SAE whose features are ablated)")
    if method == "ablate":  # the SAE it ablates on (layer 0's MLP output) must be there
        site = find_method(method).make_settings().sae
        check_sae(sae_folder(model, sae), model, site.layer, site.component)
        overrides = {"saes": sae} if sae is not None else {}
    h = load_model(model, dtype, device)
    if texts is not None:
        try:
            request = ForgetRequest(
                Path(forget_file).name,
                forget_texts=tuple(texts[0][0]),
                retain_texts=tuple(texts[1][0]),
                forget_qa=tuple(texts[0][1]),
                retain_qa=tuple(texts[1][1]),
            )
        except ForgetError as e:
            raise CliError(str(e)) from None
        figures = FigureSettings(retain_facts=retain_facts or None, neighbour_facts=retain_facts or None)
        res = forget(h, request, method, figures=figures, reference=False, **overrides)
        out = res.to_dict()
        out["patch"] = str(write_patch(res.edit, save_patch, overwrite=force)) if save_patch else None
        Output(as_json).emit(out, _render)
        return
    world = world_of(h)
    what = split if split is not None else (people[0] if len(people) == 1 else people)
    try:
        keep = None
        if retain is not None:
            kept = _names(retain)
            unknown = [p for p in kept if p not in world.people]
            if unknown:
                raise ForgetError(f"unknown person {unknown[0]!r} in --retain: not in the world")
            if not kept:
                raise ForgetError("--retain names nobody")
            keep = world.facts(kept)
        request = forget_request(world, what, keep)
    except KeyError as e:
        raise CliError(str(e.args[0])) from None
    figures = FigureSettings(retain_facts=retain_facts or None, neighbour_facts=retain_facts or None)
    res = forget(h, request, method, figures=figures, reference=reference, **overrides)
    out = res.to_dict()
    out["patch"] = str(write_patch(res.edit, save_patch, overwrite=force)) if save_patch else None
    Output(as_json).emit(out, _render)
