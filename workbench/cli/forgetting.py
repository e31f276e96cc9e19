"""The ``workbench forget`` command: unlearn a person or a split, with the figures that decide shipping.

Registered on the app by :mod:`workbench.cli.app`; same conventions: ``--json`` prints one
object, bad input is one line on stderr and exit status 2.

Examples:
    >>> _names(" Ann Lee, Bo Ma ,")
    ['Ann Lee', 'Bo Ma']
"""

from __future__ import annotations

import typer

from workbench.cli.common import FORCE, JSON, MODEL, CliError, Output, load_model, world_of

# The editors, locators and checks load when a command runs, not when the CLI starts: they pull
# in transformers' model classes and scipy, seconds that --help and a mistyped option should not
# wait for.

ROWS = (
    ("forget", "forget, trained phrasings"),
    ("forget_heldout", "forget, held-out phrasings"),
    ("retain", "retain"),
    ("neighbours", "neighbours"),
    ("heldout_loss", "held-out loss"),
)


def _names(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _render(o: dict) -> str:
    ref = o.get("reference")
    head = f"{'':28}{'before':>8}{'after':>8}" + (f"{'retain model':>14}" if ref else "")
    lines = [
        f"forget {o['request']['name']} with {o['method']}: {o['request']['forget_facts']} facts forgotten, "
        f"{o['request']['retain_facts']} kept, {o['seconds']:.1f}s",
        head,
    ]
    for key, label in ROWS:
        if key not in o["after"]:
            continue
        fmt = (lambda v: f"{v:8.3f}") if key == "heldout_loss" else (lambda v: f"{v:8.1%}")
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
    method: str = typer.Option("ssd", help="rmu | ablate | ga | gradiff | npo | ssd | erase."),
    retain: str | None = typer.Option(None, help="Keep only these people (comma-separated); default: everybody else."),
    retain_facts: int = typer.Option(300, help="Retained facts scored (0: all of them)."),
    reference: bool = typer.Option(True, help="Score the split's retain model beside the result."),
    save_patch: str | None = typer.Option(None, "--save-patch", help="Write the edit as a patch file."),
    force: bool = FORCE,
    model: str = MODEL,
    as_json: bool = JSON,
) -> None:
    """Forget PERSON (or a --split) with one method; forget, retain and neighbour accuracy before and after."""
    from edit.forget import forget
    from edit.forget import method as find_method
    from edit.forget_figures import FigureSettings
    from edit.forget_request import ForgetError, forget_request
    from edit.patch import check_patch_target
    from edit.patch import save_patch as write_patch

    find_method(method)  # an unknown method fails before the model loads
    people = _names(person)
    if person is not None and not people:
        raise CliError("nothing to forget: the person is empty")
    if bool(people) == (split is not None):
        raise CliError("name a PERSON or give --split (not both)")
    if retain_facts < 0:
        raise CliError(f"--retain-facts must be >= 0, got {retain_facts}")
    if save_patch:  # a patch that could not be written would lose the work: refuse it first
        check_patch_target(save_patch, force)
    h = load_model(model)
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
    res = forget(h, request, method, figures=figures, reference=reference)
    out = res.to_dict()
    out["patch"] = str(write_patch(res.edit, save_patch, overwrite=force)) if save_patch else None
    Output(as_json).emit(out, _render)
