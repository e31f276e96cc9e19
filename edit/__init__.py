"""Editors: change only what a Location names. Every editor returns a reversible :class:`Edit`.

The editors themselves are imported from their modules (``from edit.rome import rome``,
``from edit.memit import memit``): a function here named like its module would hide it.
"""

from edit.counterfact import score_requests
from edit.covariance import KeyStats, key_statistics, layer_statistics
from edit.edit import Delta, Edit, EditError, EditSequence, restored_on_failure
from edit.memit import MemitSettings
from edit.null_space import NullSpace
from edit.patch import load_patch, save_patch
from edit.request import Request, RequestError, world_request
from edit.rome import RomeSettings
from edit.values import ValueSettings
from workbench.core.hashing import tensor_hash

__all__ = [
    "Delta",
    "Edit",
    "EditError",
    "EditSequence",
    "KeyStats",
    "MemitSettings",
    "NullSpace",
    "Request",
    "RequestError",
    "RomeSettings",
    "ValueSettings",
    "key_statistics",
    "layer_statistics",
    "load_patch",
    "restored_on_failure",
    "save_patch",
    "score_requests",
    "tensor_hash",
    "world_request",
]
