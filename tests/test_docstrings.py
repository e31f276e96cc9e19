"""Every docstring example in the workbench runs and says what it shows."""

import doctest
import importlib
import pkgutil

import pytest


def _modules() -> list[str]:
    """Every module of the three packages (a new one is covered without being listed here)."""
    names = []
    for package in ("workbench", "locate", "edit"):
        path = importlib.import_module(package).__path__
        names += [package] + [m.name for m in pkgutil.walk_packages(path, package + ".")]
    return [n for n in names if not n.endswith("__main__")]  # running it would start the CLI


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
