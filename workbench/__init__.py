"""Locate, edit and verify knowledge in language models.

Examples:
    >>> import workbench
    >>> h = workbench.load("world")            # the embedded fact world's default model
    >>> fact = h.world.facts()[0]
    >>> h.score([fact]).accuracy
    1.0
"""

from workbench.handle import ModelHandle, ModelLoadError, load
from workbench.tokens import EncodingError
from workbench.world.facts import Fact, World, make_world

__all__ = ["EncodingError", "Fact", "ModelHandle", "ModelLoadError", "World", "load", "make_world"]
