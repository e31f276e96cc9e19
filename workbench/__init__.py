"""Locate, edit and verify knowledge in language models.

The package has two floors. :mod:`workbench.core` is the foundation that :mod:`locate` and
:mod:`edit` build on (the model handle, the site map, tokens, the fact world); verification,
views, export and the CLI sit above them. Names are loaded on first use, so importing the
foundation or a locator never loads the floor above (see ``docs/design.md``).

Examples:
    >>> import workbench
    >>> h = workbench.load("world")            # the embedded fact world's default model
    >>> fact = h.world.facts()[0]
    >>> h.score([fact]).accuracy
    1.0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Each public name and the module that defines it, loaded when first asked for (PEP 562).
_EXPORTS = {
    "ModelHandle": "workbench.core.handle",
    "ModelLoadError": "workbench.core.handle",
    "load": "workbench.core.handle",
    "EncodingError": "workbench.core.tokens",
    "Fact": "workbench.core.world.facts",
    "World": "workbench.core.world.facts",
    "make_world": "workbench.core.world.facts",
    "ExportError": "workbench.checkpoint.export",
    "export": "workbench.checkpoint.export",
    "Audit": "workbench.checkpoint.audit",
    "AuditError": "workbench.checkpoint.audit",
    "audit": "workbench.checkpoint.audit",
}
_SUBPACKAGES = {"checkpoint", "cli", "core", "verify", "widgets"}

__all__ = [
    "Audit",
    "AuditError",
    "EncodingError",
    "ExportError",
    "Fact",
    "ModelHandle",
    "ModelLoadError",
    "World",
    "audit",
    "export",
    "load",
    "make_world",
]

if TYPE_CHECKING:
    from workbench.checkpoint.audit import Audit, AuditError, audit
    from workbench.checkpoint.export import ExportError, export
    from workbench.core.handle import ModelHandle, ModelLoadError, load
    from workbench.core.tokens import EncodingError
    from workbench.core.world.facts import Fact, World, make_world


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBPACKAGES)
