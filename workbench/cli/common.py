"""What every ``workbench`` command shares: the ``--model`` and ``--json`` options, input errors, output.

Every command takes ``--json`` and then prints exactly one JSON object on stdout; without it, the
same result as text. Bad input raises :class:`CliError`, which the entry point
(:func:`workbench.cli.app.main`) turns into one line on stderr and exit status 2.

Examples:
    >>> Output(as_json=True).emit({"answer": 42}, lambda o: f"the answer is {o['answer']}")
    {"answer": 42}
    >>> Output(as_json=False).emit({"answer": 42}, lambda o: f"the answer is {o['answer']}")
    the answer is 42
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from workbench.core.handle import ModelHandle, load
from workbench.core.world.facts import World

MODEL = typer.Option("world", "--model", "-m", help="world[:variant], a model directory, or a hub id.")
JSON = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")
FORCE = typer.Option(False, "--force", help="Replace a patch file that is already at --save-patch.")


class CliError(Exception):
    """An input error reported as one line.

    Examples:
        >>> str(CliError("give at least one patch file"))
        'give at least one patch file'
    """


@dataclass
class Output:
    """Where a command's result goes: one JSON object with ``--json``, its text rendering otherwise.

    Examples:
        >>> Output(as_json=False).emit({"n": 3}, lambda o: f"{o['n']} edits")
        3 edits
    """

    as_json: bool

    def emit(self, payload: dict, render: Callable[[dict], str]) -> None:
        print(json.dumps(payload) if self.as_json else render(payload))


def load_model(model: str) -> ModelHandle:
    """The model that ``--model`` names: ``world[:variant]``, a model directory or a hub id.

    Examples:
        >>> load_model("world").name
        'world'
        >>> load_model("world:nope")
        Traceback (most recent call last):
        workbench.core.handle.ModelLoadError: unknown world model 'world:nope': choose from world, ...
    """
    return load(model)


def world_of(h: ModelHandle) -> World:
    """The fact world of ``h``; a :class:`CliError` for a model without one.

    Examples:
        >>> len(world_of(load_model("world")).people)
        300
    """
    if h.world is None:
        raise CliError(f"model {h.name!r} has no fact world (world commands need a world model)")
    return h.world


def format_probs(rows: list[tuple[str, float]]) -> str:
    """Rows of ``(text, probability)``, one indented line each, the probability first.

    Examples:
        >>> print(format_probs([("Paris", 0.9), ("Rome", 0.05)]))
           90.00%  Paris
            5.00%  Rome
    """
    return "\n".join(f"  {p:7.2%}  {t}" for t, p in rows)


def check_output_file(path: str, option: str) -> None:
    """Refuse, before any work, a file the command could not write at the end of it.

    Examples:
        >>> check_output_file("/no/such/folder/report.html", "--html")
        Traceback (most recent call last):
        workbench.cli.common.CliError: --html: no folder /no/such/folder to write report.html in
    """
    target = Path(path)
    if target.is_dir():
        raise CliError(f"{option}: {path} is a directory; name a file")
    folder = target.parent
    if not folder.is_dir():
        raise CliError(f"{option}: no folder {folder} to write {target.name} in")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise CliError(f"{option}: {path} cannot be written (permission denied)")
