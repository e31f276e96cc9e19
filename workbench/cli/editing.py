"""The edit commands of the ``workbench`` CLI: ``edit rome`` and ``edit memit``.

Registered on the app by :mod:`workbench.cli.app`; same conventions: ``--json`` prints one
object, bad input is one line on stderr and exit status 2.

Examples:
    >>> _layers("0,2")
    (0, 2)
    >>> _layers("0,2,0")
    Traceback (most recent call last):
    workbench.cli.common.CliError: --layers names layer 0 more than once
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import typer

from workbench.cli.common import FORCE, JSON, MODEL, CliError, Output, build_settings, load_model, read_text, world_of

# The editors, locators and checks load when a command runs, not when the CLI starts: they pull
# in transformers' model classes and scipy, seconds that --help and a mistyped option should not
# wait for.

edit_app = typer.Typer(no_args_is_help=True, help="Change what a model knows; every edit is reversible.")

KINDS = ("efficacy", "paraphrase", "neighbourhood")


def _render_scores(before: dict, after: dict) -> list[str]:
    lines = ["                 by probability     among candidates"]
    for k in KINDS:
        b, a = before[k], after[k]
        lines.append(
            f"  {k:<13} {b['prob']:6.1%} -> {a['prob']:6.1%}    {b['accuracy']:6.1%} -> {a['accuracy']:6.1%}"
            f"   ({a['n']} prompts)"
        )
    return lines


def _layers(text: str | None) -> tuple[int, ...] | None:
    """The layers ``--layers`` names, each once, checked as far as they can be without the model."""
    if text is None:
        return None
    try:
        layers = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise CliError(f"--layers takes comma-separated integers, got {text!r}") from None
    repeated = sorted({layer for layer in layers if layers.count(layer) > 1})
    if repeated:
        raise CliError(f"--layers names layer {repeated[0]} more than once")
    if min(layers) < 0:
        raise CliError(f"--layers: layer {min(layers)} is negative")
    return layers


def _check_layers(layers: tuple[int, ...] | None, n: int) -> None:
    bad = [layer for layer in layers or () if not 0 <= layer < n]
    if bad:
        raise CliError(f"layer {bad[0]} out of range 0..{n - 1}")


REQUEST_FIELDS = {"person": str, "relation": str, "new_object": str, "erase": bool}


def request_rows(text: str, source: str = "requests") -> list[tuple[int, dict]]:
    """The (line number, request) rows of a JSONL requests file, each checked strictly.

    Every line is an object with a ``person``, a ``relation`` and either a ``new_object`` or
    ``"erase": true``; nothing else. Two lines that ask different things of one fact are
    refused; a line that repeats another exactly is dropped, with one warning.

    Examples:
        >>> request_rows('{"person": "Ann", "relation": "pet", "new_object": "cat"}')
        [(1, {'person': 'Ann', 'relation': 'pet', 'new_object': 'cat'})]
        >>> request_rows('{"person": "Ann", "relation": "pet", "erase": "no"}')
        Traceback (most recent call last):
        workbench.cli.common.CliError: requests:1: "erase" must be true or false, not 'no'
    """
    rows, seen = [], {}
    duplicates = 0
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CliError(f"{source}:{i}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise CliError(f"{source}:{i}: expected a JSON object, got {type(row).__name__}")
        unknown = sorted(set(row) - set(REQUEST_FIELDS))
        if unknown:
            raise CliError(f"{source}:{i}: unknown field {unknown[0]!r} (expected {', '.join(REQUEST_FIELDS)})")
        for field, kind in REQUEST_FIELDS.items():
            if field in row and not isinstance(row[field], kind):
                want = "true or false" if kind is bool else "a string"
                raise CliError(f'{source}:{i}: "{field}" must be {want}, not {row[field]!r}')
        for field in ("person", "relation"):
            if field not in row:
                raise CliError(f"{source}:{i}: missing field {field!r}")
        if row.get("erase", False) == ("new_object" in row):
            raise CliError(f'{source}:{i}: give a "new_object" or "erase": true (one of them)')
        if not row.get("erase", True):
            row = {k: v for k, v in row.items() if k != "erase"}
        fact, asked = (row["person"], row["relation"]), row.get("new_object")
        if fact in seen:
            first, before = seen[fact]
            if before != asked:
                now, then = ("erase" if x is None else repr(x) for x in (asked, before))
                raise CliError(f"{source}:{i}: asks {now} of {fact[0]}'s {fact[1]}, line {first} asked {then}")
            duplicates += 1
            continue
        seen[fact] = (i, asked)
        rows.append((i, row))
    if not rows:
        raise CliError(f"{source} holds no requests")
    if duplicates:
        warnings.warn(f"{source}: {duplicates} repeated request line(s) dropped", stacklevel=2)
    return rows


@edit_app.command("rome")
def rome_cmd(
    person: str = typer.Argument(..., help="A person of the world."),
    relation: str = typer.Argument(..., help="A relation of the world, e.g. birthplace."),
    new_object: str | None = typer.Argument(None, help="The new object (omit with --erase)."),
    erase: bool = typer.Option(False, "--erase", help="Remove the fact instead of rewriting it."),
    layer: int | None = typer.Option(None, help="MLP layer (default: where a causal trace points)."),
    token: str = typer.Option("auto", help="Key position: auto | subject_last | last."),
    phrasing: int = typer.Option(0, help="Which trained phrasing is the edit prompt."),
    save_patch: str | None = typer.Option(None, "--save-patch", help="Write the edit as a patch file."),
    force: bool = FORCE,
    model: str = MODEL,
    as_json: bool = JSON,
) -> None:
    """Rewrite (or erase) PERSON's RELATION with one rank-one update; scores before and after."""
    from edit.counterfact import score_requests
    from edit.patch import check_patch_target
    from edit.patch import save_patch as write_patch
    from edit.request import world_request
    from edit.rome import RomeSettings, rome

    if erase == (new_object is not None):
        raise CliError("give a NEW_OBJECT to rewrite, or --erase to remove the fact (not both)")
    if token not in ("auto", "subject_last", "last"):
        raise CliError(f"unknown token {token!r}: choose auto, subject_last or last")
    if save_patch:  # a patch that could not be written would lose the work: refuse it first
        check_patch_target(save_patch, force)
    h = load_model(model)
    world = world_of(h)
    if layer is not None and not 0 <= layer < h.n_layers:
        raise CliError(f"layer {layer} out of range 0..{h.n_layers - 1}")
    request = world_request(world, person, relation, new_object, phrasing)
    request.check(h.tokenizer)
    before = score_requests(h, [request])
    t0 = time.perf_counter()
    e = rome(h, request, settings=RomeSettings(layer=layer, token=token))
    seconds = time.perf_counter() - t0
    after = score_requests(h, [request])
    top = h.rank_candidates(request.prompt, list(request.candidates))[:3]
    patch = str(write_patch(e, save_patch, overwrite=force)) if save_patch else None
    out = {
        "request": request.to_dict(),
        "layer": e.settings["layer"],
        "token": e.settings["token"],
        "before": before,
        "after": after,
        "top_candidates": [{"object": c, "prob": p} for c, p in top],
        "tensors": e.names,
        "seconds": seconds,
        "patch": patch,
    }

    def render(o: dict) -> str:
        what = (
            f"erase {relation} of {person} ({request.true_object})"
            if erase
            else f"{person} / {relation}: {request.true_object} -> {new_object}"
        )
        return "\n".join(
            [
                f"rome: {what}",
                f"edited {o['tensors'][0]} (layer {o['layer']}, key at the "
                f"{o['token'].replace('_', ' ')} token) in {o['seconds']:.2f}s",
                *_render_scores(before, after),
                f"now: {request.prompt} ... "
                + ", ".join(f"{c['object']} {c['prob']:.2f}" for c in o["top_candidates"]),
                *([f"patch written to {patch}"] if patch else []),
            ]
        )

    Output(as_json).emit(out, render)


@edit_app.command("memit")
def memit_cmd(
    requests_file: str = typer.Option(
        ..., "--requests", help="JSONL: {person, relation, new_object} or {person, relation, erase: true} per line."
    ),
    layers: str | None = typer.Option(None, help="Comma-separated MLP layers (default: from a trace)."),
    mom2_weight: float = typer.Option(10.0, help="lambda: weight of the preserved keys."),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        help="Make the edits this many at a time, each batch on the model the earlier left (default: all at once).",
    ),
    null_space: bool = typer.Option(
        False,
        "--null-space",
        help="Confine the updates to the preserved keys' null space, keeping earlier batches' keys (AlphaEdit).",
    ),
    alphaedit: bool = typer.Option(
        False,
        "--alphaedit",
        help="With --null-space: AlphaEdit's own solve, without MEMIT's lambda C (kept by default).",
    ),
    keys: str = typer.Option(
        "mean",
        help="mean: a column of the solve per edit at its contexts' mean "
        "key (MEMIT); each: one per edit and context, so the update holds at "
        "every context's key (helps on wide layers).",
    ),
    save_patch: str | None = typer.Option(None, "--save-patch", help="Write the edit as a patch file."),
    force: bool = FORCE,
    model: str = MODEL,
    as_json: bool = JSON,
) -> None:
    """Make many edits at once (MEMIT), or batch after batch; scores of all of them before and after."""
    from edit.counterfact import score_requests
    from edit.memit import KEYS, MemitSettings, memit_site
    from edit.memit_batches import memit_batches
    from edit.null_space import NullSpace
    from edit.patch import check_patch_target
    from edit.patch import save_patch as write_patch
    from edit.request import world_request
    from edit.values import statistics_position

    if keys not in KEYS:
        raise CliError(f"--keys must be {' or '.join(map(repr, KEYS))}, got {keys!r}")
    if batch_size is not None and batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {batch_size}")
    if alphaedit and not null_space:
        raise CliError("--alphaedit chooses the null-space mode's solve: give --null-space too")
    if not Path(requests_file).exists():
        raise CliError(f"no such requests file: {requests_file}")
    settings = build_settings(MemitSettings, layers=_layers(layers), mom2_weight=mom2_weight, keys=keys)
    if save_patch:  # a patch that could not be written would lose the work: refuse it first
        check_patch_target(save_patch, force)
    # The whole file is checked before the model loads.
    rows = request_rows(read_text(requests_file, "--requests"), requests_file)
    h = load_model(model)
    _check_layers(settings.layers, h.n_layers)
    world = world_of(h)
    requests = []
    for i, row in rows:
        try:
            requests.append(world_request(world, row["person"], row["relation"], row.get("new_object")))
        except ValueError as e:
            raise CliError(f"{requests_file}:{i}: {e}") from None
    before = score_requests(h, requests)
    t0 = time.perf_counter()
    where, role, location = memit_site(h, requests[0], None, settings)
    settings = replace(settings, layers=where, token=role)
    ns = (
        NullSpace.for_layers(h, list(where), position=statistics_position(role), keep_statistics=not alphaedit)
        if null_space
        else None
    )
    e = memit_batches(h, requests, batch_size or len(requests), settings, location, null_space=ns)
    seconds = time.perf_counter() - t0
    after = score_requests(h, requests)
    patch = str(write_patch(e, save_patch, overwrite=force)) if save_patch else None
    out = {
        "requests": len(requests),
        "layers": e.settings["layers"],
        "token": e.settings["token"],
        "before": before,
        "after": after,
        "tensors": e.names,
        "seconds": seconds,
        "patch": patch,
        "batches": e.metrics["batches"],
        "batch_size": batch_size or len(requests),
        "null_space": null_space,
        "alphaedit": alphaedit,
        "keys": keys,
        # How much of the edits' target states the updates wrote (per batch: a warning below 0.9).
        "target_written": e.metrics["target_written"],
        "target_written_per_batch": e.metrics["target_written_per_batch"],
    }

    def render(o: dict) -> str:
        batches = f" in {o['batches']} batches of {o['batch_size']}" if o["batches"] > 1 else ""
        mode = (" (null-space, AlphaEdit's solve)" if alphaedit else " (null-space)") if null_space else ""
        return "\n".join(
            [
                f"memit: {o['requests']} edits{batches}{mode} at layers {o['layers']} (key at the "
                f"{o['token'].replace('_', ' ')} token) in {o['seconds']:.1f}s",
                *_render_scores(before, after),
                *([f"patch written to {patch}"] if patch else []),
            ]
        )

    Output(as_json).emit(out, render)
