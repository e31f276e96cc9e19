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

from typing import TYPE_CHECKING, Any

_SUBPACKAGES = ("checkpoint", "cli", "core", "verify", "widgets")

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
    # Loaded on first use (PEP 562); each branch names its module, for readers and editors to follow.
    if name in ("ModelHandle", "ModelLoadError", "load"):
        from workbench.core import handle as module
    elif name == "EncodingError":
        from workbench.core import tokens as module
    elif name in ("Fact", "World", "make_world"):
        from workbench.core.world import facts as module
    elif name in ("ExportError", "export"):
        from workbench.checkpoint import export as module
    elif name in ("Audit", "AuditError", "audit"):
        from workbench.checkpoint import audit as module
    elif name == "checkpoint":
        import workbench.checkpoint as module
    elif name == "cli":
        import workbench.cli as module
    elif name == "core":
        import workbench.core as module
    elif name == "verify":
        import workbench.verify as module
    elif name == "widgets":
        import workbench.widgets as module
    else:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    value = module if name in _SUBPACKAGES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
