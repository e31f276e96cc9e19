"""The ``workbench`` command line: locate, edit, verify and ship from a shell.

Every command takes ``--json`` and then prints exactly one JSON object on stdout. Bad input
exits with status 2 and one line on stderr naming what was wrong; progress bars go to stderr.

The package sits on top of everything else and imports only downwards:

* :mod:`~workbench.cli.app`: the typer app, every command registered on it, and :func:`main`;
* :mod:`~workbench.cli.common`: what the commands share (``--model``, ``--json``, :class:`CliError`,
  the output, loading a model and its world);
* one module per command group: :mod:`~workbench.cli.model` (``info``, ``ask``),
  :mod:`~workbench.cli.world` (``world facts|train``), :mod:`~workbench.cli.demo` (``demo``),
  :mod:`~workbench.cli.locating` (``trace``, ``fisher``), :mod:`~workbench.cli.features`
  (``features``, ``sae train``),
  :mod:`~workbench.cli.editing` (``edit rome|memit``), :mod:`~workbench.cli.forgetting`
  (``forget``), :mod:`~workbench.cli.verifying` (``verify``) and :mod:`~workbench.cli.shipping`
  (``export``, ``patch show|apply|revert``, ``audit``).

Examples:
    >>> main(["ask", "It is well known that Zanzibar works for", "--json"])
    {"error": "the tokenizer cannot encode 'Zanzibar'"}
    2
"""

from workbench.cli.app import app, main

__all__ = ["app", "main"]
