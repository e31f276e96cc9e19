"""The ``workbench verify`` command: is an edit's forgetting real, measured against the model that never learned it?

Registered on the app by :mod:`workbench.cli.app`; same conventions: ``--json`` prints one
object, bad input is one line on stderr and exit status 2.

Examples:
    >>> _fmt(0.25), _fmt(None), _fmt(float("nan"))
    ('0.250', '    –', '    –')
"""

from __future__ import annotations

import typer

from workbench.cli.common import DEVICE, DTYPE, JSON, MODEL, CliError, Output, check_output_file, load_model, world_of
from workbench.cli.verifying_rewrites import verify_rewrite_patch
from workbench.cli.verifying_texts import verify_files
from workbench.core.handle import ModelLoadError, resolve_model

# The editors, locators and checks load when a command runs, not when the CLI starts: they pull
# in transformers' model classes and scipy, seconds that --help and a mistyped option should not
# wait for.


def _fmt(x) -> str:
    return "    –" if x is None or x != x else f"{x:5.3f}"


def _render(o: dict) -> str:
    from workbench.verify.report_html import counts_text

    v = o["verdict_details"]
    lines = [
        f"{o['kind']} by {o['method']} on {o['model']}: {v['overall'].upper()}",
        f"  {v['reason']}",
        f"  baseline: {o['baseline']['description']}",
    ]
    lines += [f"  caveat: {c}" for c in v.get("caveats", [])]
    if o["kind"] == "forget":
        lines.append(f"  {'check':<16}{'edited':>8}{'original':>10}{'retain':>8}   facts recovered   status")
        for c in o["checks"]:
            counts = "" if c["facts"] is None else counts_text(c)
            lines.append(
                f"  {c['check']:<16}{_fmt(c['edited']):>8}{_fmt(c['original']):>10}{_fmt(c['retain']):>8}"
                f"   {counts:<15}   {c['status']}"
            )
        flagged = [i for i in v["items"] if i["verdict"] != "removed"]
        lines.append(
            f"  people: {len(v['items']) - len(flagged)} of {len(v['items'])} removed"
            + "".join(f"\n    {i['item']}: {i['verdict']} ({'; '.join(i['evidence'])})" for i in flagged[:10])
        )
    else:
        lines.append(f"  {'check':<16}{'old first':>10}{'before':>8}{'new first':>10}")
        for c in o["checks"]:
            lines.append(f"  {c['check']:<16}{_fmt(c['edited']):>10}{_fmt(c['original']):>8}{_fmt(c['new_first']):>10}")
        cf = o["rewrite"]["edited"]["counterfact"]
        lines.append(
            "  "
            + ", ".join(f"{k} {cf[k]['prob']:.1%}" for k in ("efficacy", "paraphrase", "neighbourhood"))
            + f"; greedy answers give the new object {o['rewrite']['edited']['generation']['new']:.0%}"
        )
    r = o["retained"]
    lines.append(
        f"  retained facts: accuracy {r['accuracy_before']:.1%} -> {r['accuracy_after']:.1%}; "
        f"held-out loss {r['heldout_loss_before']:.3f} -> {r['heldout_loss_after']:.3f}"
    )
    if o.get("html"):
        lines.append(f"  report written to {o['html']}")
    lines.append(f"  {o['seconds']:.0f}s")
    return "\n".join(lines)


# One paragraph: click would show a line break inside the docstring as a break in --help.
VERIFY_HELP = (
    "Verify a patch (or, with --split/--person and no patch, the model as it is): removed, suppressed or not forgotten."
    " On any model, --forget FILE --retain FILE verifies forgetting of those texts or TOFU pairs against --reference."
)


def verify_cmd(
    patch: str | None = typer.Option(
        None, "--patch", help="A patch file to verify (edit --save-patch, forget --save-patch)."
    ),
    split: str | None = typer.Option(
        None, help="What should be forgotten: a split (forget01, forget05, forget10); default: what the patch says."
    ),
    person: str | None = typer.Option(None, help="Or a person (several: comma-separated)."),
    forget_file: str | None = typer.Option(
        None, "--forget", help="Or texts / TOFU question-answer pairs (.json, .jsonl, .txt, a folder) to be forgotten."
    ),
    retain_file: str | None = typer.Option(None, "--retain", help="With --forget: texts or pairs to keep."),
    choices_file: str | None = typer.Option(
        None, "--choices", help="With --forget: multiple-choice questions about the forget set (WMDP style)."
    ),
    reference: str = typer.Option("auto", help="Retain model to compare with: auto, a model name, or none."),
    html: str | None = typer.Option(None, "--html", help="Also write the standalone HTML report here."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Probes trained on 60 people, 60 retained facts scored: a first look, not the full report.",
    ),
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    as_json: bool = JSON,
) -> None:
    """The ``verify`` command; its help is :data:`VERIFY_HELP`."""
    from edit.edit import EditError
    from edit.forget_request import ForgetError
    from edit.patch import load_patch
    from workbench.verify import VerifyError, VerifySettings, verify

    if forget_file is not None or retain_file is not None or choices_file is not None:
        if forget_file is None:
            raise CliError("--retain and --choices go with --forget FILE: the texts whose forgetting is verified")
        if split is not None or person is not None:
            raise CliError("--forget names what was forgotten: no --split or --person with it")
        try:
            edit = load_patch(patch) if patch is not None else None
        except EditError as e:
            raise CliError(str(e)) from None
        verify_files(
            forget_file, retain_file, choices_file, edit, reference, quick, model, dtype, device, as_json, html
        )
        return
    if patch is None and split is None and person is None:
        raise CliError("nothing to verify: give --patch FILE, or --split / --person to verify the model as it is")
    if split is not None and person is not None:
        raise CliError("give --split or --person, not both")
    # Everything that could fail at the end is checked before minutes of work.
    if html:
        check_output_file(html, "--html")
    if reference not in ("auto", "none"):
        try:
            resolve_model(reference)
        except ModelLoadError as e:
            raise CliError(f"--reference: {e}") from None
    edit = None
    if patch is not None:
        try:
            edit = load_patch(patch)
        except EditError as e:
            raise CliError(str(e)) from None
    h = load_model(model, dtype, device)
    if h.world is None and edit is not None and split is None and person is None:
        # No world to ask: a rewrite is verified from its requests' own prompts.
        verify_rewrite_patch(h, edit, as_json, html)
        return
    world = world_of(h)
    forget = split
    if person is not None:
        people = [p.strip() for p in person.split(",") if p.strip()]
        unknown = [p for p in people if p not in world.people]
        if unknown or not people:
            raise CliError(f"unknown person {(unknown or [person])[0]!r}: not in the world")
        forget = people[0] if len(people) == 1 else people
    if edit is not None:
        try:
            edit.apply(h.model)
        except EditError as e:
            raise CliError(f"{e} (the patch was made on another model; pass --model)") from None
    try:
        report = verify(
            h,
            edit,
            forget=forget,
            reference=None if reference == "none" else reference,
            settings=VerifySettings.quick() if quick else None,
        )
    except (VerifyError, ForgetError) as e:
        raise CliError(str(e)) from None
    out = report.to_dict()
    out["html"] = str(report.write_html(html)) if html else None
    Output(as_json).emit(out, _render)
