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

from workbench.cli.common import (
    DEVICE,
    DTYPE,
    FORCE,
    JSON,
    MODEL,
    CliError,
    Output,
    build_settings,
    load_model,
    read_text,
    read_texts_option,
    world_of,
)

# The editors, locators and checks load when a command runs, not when the CLI starts: they pull
# in transformers' model classes and scipy, seconds that --help and a mistyped option should not
# wait for.

edit_app = typer.Typer(no_args_is_help=True, help="Change what a model knows; every edit is reversible.")

KINDS = ("efficacy", "paraphrase", "neighbourhood")


STATS_TEXT = typer.Option(
    None, "--stats-text", help="Text for the key statistics on a model without a world (.txt, folder, JSONL)."
)


def _render_scores(before: dict, after: dict) -> list[str]:
    lines = ["                 by probability     among candidates"]
    for k in KINDS:
        b, a = before[k], after[k]
        if not a["n"]:  # a request without paraphrases or neighbours has nothing to show there
            lines.append(f"  {k:<13} (no prompts)")
            continue
        lines.append(
            f"  {k:<13} {b['prob']:6.1%} -> {a['prob']:6.1%}    {b['accuracy']:6.1%} -> {a['accuracy']:6.1%}"
            f"   ({a['n']} prompts)"
        )
    return lines


def _distinct(requests: list, source: str) -> list:
    """The requests with exact repeats dropped (with a warning); different asks of one prompt refused.

    Examples:
        >>> from edit.request import Request
        >>> a, b = Request("Ann", "Ann plays", "golf", "chess"), Request("Ann", "Ann plays", "golf", "tennis")
        >>> import warnings
        >>> with warnings.catch_warnings(record=True):
        ...     len(_distinct([a, a], "r.json"))
        1
        >>> _distinct([a, b], "r.json")
        Traceback (most recent call last):
        workbench.cli.common.CliError: r.json: requests 0 and 1 ask 'chess' and 'tennis' of 'Ann plays'
    """
    seen: dict[str, tuple[int, object]] = {}
    out, repeats = [], 0
    for i, r in enumerate(requests):
        if r.prompt in seen:
            first, before = seen[r.prompt]
            if before.new_object != r.new_object or before.true_object != r.true_object:
                now, then = ("erase" if x is None else repr(x) for x in (r.new_object, before.new_object))
                raise CliError(f"{source}: requests {first} and {i} ask {then} and {now} of {r.prompt!r}")
            repeats += 1
            continue
        seen[r.prompt] = (i, r)
        out.append(r)
    if repeats:
        warnings.warn(f"{source}: {repeats} repeated request(s) dropped", stacklevel=2)
    return out


def _world_form(text: str) -> bool:
    """Whether a requests file holds world requests: its first record names a "person"."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return not first.lstrip().startswith("[")  # a bad line is reported by the strict world reader
    return isinstance(record, dict) and "person" in record or not isinstance(record, dict | list)


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
    person: str | None = typer.Argument(None, help="A person of the world (or --request, or --subject)."),
    relation: str | None = typer.Argument(None, help="A relation of the world, e.g. birthplace."),
    new_object: str | None = typer.Argument(None, help="The new object (omit with --erase)."),
    request_file: str | None = typer.Option(
        None, "--request", help="A request file: CounterFact or zsRE JSON, or JSONL (its first record, or --case)."
    ),
    case: int | None = typer.Option(None, "--case", help="With --request: the CounterFact case_id, else the index."),
    subject: str | None = typer.Option(None, "--subject", help="The subject of --prompt (a request of your own)."),
    prompt: str | None = typer.Option(None, "--prompt", help='With --subject: e.g. "{} plays the sport of".'),
    target_new: str | None = typer.Option(None, "--target-new", help="With --subject: the new object."),
    target_true: str | None = typer.Option(
        None, "--target-true", help="With --subject: the object now (default: the model's own answer)."
    ),
    erase: bool = typer.Option(False, "--erase", help="Remove the fact instead of rewriting it."),
    layer: int | None = typer.Option(None, help="MLP layer (default: where a causal trace points)."),
    token: str = typer.Option("auto", help="Key position: auto | subject_last | last."),
    phrasing: int = typer.Option(0, help="Which trained phrasing is the edit prompt."),
    stats_text: str | None = STATS_TEXT,
    save_patch: str | None = typer.Option(None, "--save-patch", help="Write the edit as a patch file."),
    force: bool = FORCE,
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Rewrite (or erase) one fact with one rank-one update; scores before and after."""
    from edit.counterfact import score_requests
    from edit.patch import check_patch_target
    from edit.patch import save_patch as write_patch
    from edit.rome import RomeSettings, rome
    from workbench.cli.edit_sources import check_one_source, edit_request, key_texts

    source = check_one_source(person, request_file, subject, prompt)
    if source == "world" and relation is None:
        raise CliError("give PERSON and RELATION (or --request FILE, or --subject with --prompt)")
    if source == "world" and erase == (new_object is not None):
        raise CliError("give a NEW_OBJECT to rewrite, or --erase to remove the fact (not both)")
    if source == "fields" and erase == (target_new is not None):
        raise CliError("give --target-new to rewrite, or --erase to remove the fact (not both)")
    if source == "file" and (erase or new_object is not None):
        raise CliError("--request names what to do: no NEW_OBJECT or --erase with it")
    if source != "file" and case is not None:
        raise CliError("--case goes with --request")
    if token not in ("auto", "subject_last", "last"):
        raise CliError(f"unknown token {token!r}: choose auto, subject_last or last")
    own_texts = read_texts_option(stats_text, "--stats-text") if stats_text is not None else None
    if save_patch:  # a patch that could not be written would lose the work: refuse it first
        check_patch_target(save_patch, force)
    h = load_model(model, dtype, device)
    if layer is not None and not 0 <= layer < h.n_layers:
        raise CliError(f"layer {layer} out of range 0..{h.n_layers - 1}")
    request = edit_request(
        h,
        source,
        world_fact=(person, relation, new_object, phrasing),
        request_file=request_file,
        case=case,
        subject=subject,
        prompt=prompt,
        target_new=target_new,
        target_true=target_true,
    )
    texts = key_texts(h, own_texts, [request])
    before = score_requests(h, [request])
    t0 = time.perf_counter()
    e = rome(h, request, settings=RomeSettings(layer=layer, token=token), texts=texts)
    seconds = time.perf_counter() - t0
    after = score_requests(h, [request])
    candidates = request.candidates or tuple(dict.fromkeys([request.true_object, request.target]))
    top = h.rank_candidates(request.prompt, list(candidates))[:3]
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
        fact = f"{request.subject} / {request.relation}" if request.relation else repr(request.prompt)
        what = (
            f"erase {fact} ({request.true_object})"
            if request.erase
            else f"{fact}: {request.true_object} -> {request.new_object}"
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
        ...,
        "--requests",
        help="CounterFact or zsRE JSON, plain JSONL, or world JSONL ({person, relation, new_object | erase: true}).",
    ),
    stats_text: str | None = STATS_TEXT,
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
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Make many edits at once (MEMIT), or batch after batch; scores of all of them before and after."""
    from edit.counterfact import score_requests
    from edit.memit import MemitSettings, memit_site
    from edit.memit_batches import memit_batches
    from edit.null_space import NullSpace
    from edit.patch import check_patch_target
    from edit.patch import save_patch as write_patch
    from edit.request import world_request
    from edit.request_files import read_requests
    from edit.values import statistics_position
    from workbench.cli.edit_sources import key_texts

    if batch_size is not None and batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {batch_size}")
    if alphaedit and not null_space:
        raise CliError("--alphaedit chooses the null-space mode's solve: give --null-space too")
    if not Path(requests_file).exists():
        raise CliError(f"no such requests file: {requests_file}")
    settings = build_settings(MemitSettings, layers=_layers(layers), mom2_weight=mom2_weight, keys=keys)
    if save_patch:  # a patch that could not be written would lose the work: refuse it first
        check_patch_target(save_patch, force)
    own_texts = read_texts_option(stats_text, "--stats-text") if stats_text is not None else None
    text = read_text(requests_file, "--requests")
    # World requests ({person, relation, ...}) are checked whole before the model loads; the
    # other formats (CounterFact, zsRE, plain) by their reader, which needs no model either.
    rows = request_rows(text, requests_file) if _world_form(text) else None
    others = None if rows is not None else read_requests(requests_file)
    h = load_model(model, dtype, device)
    _check_layers(settings.layers, h.n_layers)
    if rows is not None:
        world = world_of(h)
        requests = []
        for i, row in rows:
            try:
                requests.append(world_request(world, row["person"], row["relation"], row.get("new_object")))
            except ValueError as e:
                raise CliError(f"{requests_file}:{i}: {e}") from None
    else:
        requests = read_requests(requests_file, world=h.world) if h.world is not None else others
        requests = _distinct(requests, requests_file)
    for r in requests:
        r.check(h.tokenizer)
    texts = key_texts(h, own_texts, requests)
    before = score_requests(h, requests)
    t0 = time.perf_counter()
    where, role, location = memit_site(h, requests[0], None, settings)
    settings = replace(settings, layers=where, token=role)
    ns = (
        NullSpace.for_layers(
            h, list(where), texts=texts, position=statistics_position(role), keep_statistics=not alphaedit
        )
        if null_space
        else None
    )
    e = memit_batches(h, requests, batch_size or len(requests), settings, location, null_space=ns, texts=texts)
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
