"""Editors: change only what a Location names. Every editor returns a reversible :class:`Edit`."""

from edit.edit import Delta, Edit, EditError, EditSequence, restored_on_failure, tensor_hash

__all__ = ["Delta", "Edit", "EditError", "EditSequence", "restored_on_failure", "tensor_hash"]
