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
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import typer

from workbench.core.devices import parse_device
from workbench.core.handle import ModelHandle, load
from workbench.core.strict_json import strict_json
from workbench.core.world.facts import World

MODEL = typer.Option("world", "--model", "-m", help="world[:variant], a model directory, or a hub id.")
DTYPE = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: float32).")
DEVICE = typer.Option(
    None,
    "--device",
    help="cpu, cuda, cuda:1, mps, or auto: spread the model over every GPU (default: cuda when present).",
)
DTYPES = ("float32", "bfloat16", "float16")
JSON = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")
T = TypeVar("T")

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
        print(json.dumps(strict_json(payload), allow_nan=False) if self.as_json else render(payload))


def load_model(model: str, dtype: str | None = None, device: str | None = None) -> ModelHandle:
    """The model that ``--model`` names (``world[:variant]``, a directory or a hub id), in ``--dtype`` on ``--device``.

    Examples:
        >>> load_model("world").name
        'world'
        >>> load_model("world:nope")
        Traceback (most recent call last):
        workbench.core.handle.ModelLoadError: unknown world model 'world:nope': choose from world, ...
    """
    if dtype is not None and dtype not in DTYPES:
        raise CliError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if device == "auto":  # a model larger than one device: accelerate's device map places each block
        return load(model, dtype=dtype, device_map="auto")
    if device is not None:
        check_device(device)
    return load(model, device=device, dtype=dtype)


def check_device(device: str) -> None:
    """Refuse a ``--device`` torch cannot parse or this machine does not have.

    Examples:
        >>> check_device("cpu")
        >>> check_device("gpu")
        Traceback (most recent call last):
        workbench.cli.common.CliError: --device 'gpu' is not a device (cpu, cuda, cuda:1, mps)
    """
    try:
        parse_device(device)
    except ValueError as e:
        raise CliError(f"--device {e}") from None


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


def build_settings(cls: type[T], **values) -> T:
    """``cls(**values)``, its refusal of a value turned into a :class:`CliError` naming the option.

    Settings dataclasses check their fields and name them as Python does (``top_fraction``);
    on the command line the same value is ``--top-fraction``. Build settings with this before
    the model loads, so a bad value costs nothing.

    Examples:
        >>> from locate.fisher import FisherSettings
        >>> build_settings(FisherSettings, top_fraction=1.5)
        Traceback (most recent call last):
        workbench.cli.common.CliError: --top-fraction must be in (0, 1] or None, got 1.5
    """
    try:
        return cls(**values)
    except ValueError as e:
        message = str(e)
        for field in values:
            message = re.sub(rf"(?<![\w-]){field}\b", "--" + field.replace("_", "-"), message)
        raise CliError(message) from None


def read_text(path: str, option: str) -> str:
    """The UTF-8 text of the file an option names, or a :class:`CliError` naming the file.

    Examples:
        >>> read_text("/no/such.jsonl", "--requests")
        Traceback (most recent call last):
        workbench.cli.common.CliError: --requests: no such file /no/such.jsonl
    """
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{option}: no such file {path}" if not p.exists() else f"{option}: {path} is not a file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CliError(f"{option}: {path} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise CliError(f"{option}: {path} cannot be read ({e.strerror})") from None


def check_new_folder(path: str, option: str) -> None:
    """Refuse, before any work, a folder to create whose parent is missing or that is a file.

    Examples:
        >>> check_new_folder("/no/such/parent/out", "--out")
        Traceback (most recent call last):
        workbench.cli.common.CliError: --out: no folder /no/such/parent to create out in
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise CliError(f"{option}: {path} is a file, not a folder")
    if not target.exists():
        if not target.parent.is_dir():
            raise CliError(f"{option}: no folder {target.parent} to create {target.name} in")
        if not os.access(target.parent, os.W_OK):
            raise CliError(f"{option}: {target.parent} cannot be written (permission denied)")


def read_texts_option(path: str, option: str) -> list[str]:
    """The texts a file or folder option names (see :func:`workbench.core.data_files.read_texts`).

    Examples:
        >>> read_texts_option("/no/such.jsonl", "--stats-text")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        workbench.cli.common.CliError: --stats-text: ...
    """
    from workbench.core.data_files import DataFileError, read_texts

    try:
        return read_texts(path)
    except DataFileError as e:
        raise CliError(f"{option}: {e}") from None
