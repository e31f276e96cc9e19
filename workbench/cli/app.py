"""The ``workbench`` command: the app that holds every command, and its entry point :func:`main`.

Every command takes ``--json`` and then prints exactly one JSON object on stdout. Bad input
exits with status 2 and one line on stderr naming what was wrong (and, with ``--json``,
``{"error": ...}`` on stdout); progress bars go to stderr. The commands live one group to a
module beside this one; this module registers them, in the order ``workbench --help`` lists them.

Examples:
    >>> main(["world", "train", "gpt5", "--json"])
    {"error": "unknown world model 'gpt5': choose from all, ..."}
    2
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import typer
from transformers.utils import logging as hf_logging

from workbench.cli import demo, editing, features, forgetting, locating, model, shipping, verifying, world
from workbench.cli.common import CliError
from workbench.core.handle import ModelLoadError
from workbench.core.tokens import EncodingError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Locate, edit and verify knowledge in language models.",
)
app.add_typer(world.world_app, name="world")
app.command("info")(model.info)
app.command("ask")(model.ask)
app.command("demo")(demo.demo)
app.add_typer(editing.edit_app, name="edit")
app.add_typer(shipping.patch_app, name="patch")
app.command("export")(shipping.export_cmd)
app.command("audit")(shipping.audit_cmd)
app.command("forget")(forgetting.forget_cmd)
app.command("trace")(locating.trace_cmd)
app.command("fisher")(locating.fisher_cmd)
app.add_typer(features.sae_app, name="sae")
app.command("features")(features.features_cmd)
app.command("verify", help=verifying.VERIFY_HELP)(verifying.verify_cmd)

# What the entry point reports as bad input (exit status 2); anything else is an internal error.
INPUT_ERRORS = (CliError, typer.TyperException, KeyError, ValueError, ModelLoadError, EncodingError)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every input error into one line and exit status 2.

    Examples:
        >>> main(["world", "train", "gpt5"])  # the line goes to stderr
        2
    """
    args = sys.argv[1:] if argv is None else argv
    # Loading bars and library warnings would break the one-line error and clean stdout promises.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    with warnings.catch_warnings():  # restores the caller's warning display afterwards
        # The workbench's own warnings (an edit too large for its layer, ...) as one line each;
        # the libraries' (deprecations and the like) are for their developers, not for this output.
        warnings.showwarning = _show_own_warning
        return _run(args)


# The project's packages, side by side wherever it is installed.
_OWN_PACKAGES = ("workbench", "edit", "locate")
_OWN_FOLDERS = tuple(str(Path(__file__).resolve().parents[2] / p) + os.sep for p in _OWN_PACKAGES)


def _show_own_warning(message, category, filename, *_) -> None:
    own_category = category.__module__.split(".")[0] in _OWN_PACKAGES
    if own_category or str(Path(filename).resolve()).startswith(_OWN_FOLDERS):
        print(f"workbench: warning: {message}", file=sys.stderr)


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line (a KeyError's without its quotes).

    Examples:
        >>> one_line(KeyError("unknown person 'Nobody'"))
        "unknown person 'Nobody'"
        >>> one_line(ValueError("two\\n  lines"))
        'two lines'
    """
    if isinstance(e, KeyError) and e.args:
        msg = e.args[0]
    else:
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
    return " ".join(str(msg).split()) or type(e).__name__


def _run(args: list[str]) -> int:
    try:
        # Without standalone mode click returns a command's typer.Exit status instead of raising it.
        code = app(args=args, prog_name="workbench", standalone_mode=False)
        if code == 130:  # what click makes of Ctrl-C without standalone mode: say why, as for an Abort
            print("workbench: interrupted", file=sys.stderr)
        return code if isinstance(code, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # help was already printed for a bare command
            return 0
        return _fail(e, args)
    except (typer.Abort, KeyboardInterrupt):
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
        return _fail(e, args)


def _fail(e: Exception, args: list[str]) -> int:
    msg = one_line(e)
    if not isinstance(e, INPUT_ERRORS):
        msg = f"internal error ({type(e).__name__}): {msg}"
    if "--json" in args:
        print(json.dumps({"error": msg}))
    print(f"workbench: {msg}", file=sys.stderr)
    return 2 if isinstance(e, INPUT_ERRORS) else 1
