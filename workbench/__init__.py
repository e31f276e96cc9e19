"""Locate, edit and verify knowledge in language models.

Examples:
    >>> import workbench
    >>> h = workbench.load("world")            # the embedded fact world's default model
    >>> fact = h.world.facts()[0]
    >>> h.score([fact]).accuracy
    1.0
"""

from workbench.handle import ModelHandle, ModelLoadError, load
from workbench.export import ExportError, export
from workbench.audit import Audit, AuditError, audit
from workbench.tokens import EncodingError
from workbench.world.facts import Fact, World, make_world

__all__ = ["Audit", "AuditError", "EncodingError", "ExportError", "Fact", "ModelHandle", "ModelLoadError", "World",
           "audit", "export", "load", "make_world"]
