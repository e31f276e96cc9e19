"""Editors: change only what a Location names. Every editor returns a reversible :class:`Edit`."""

from edit.counterfact import score_requests
from edit.covariance import KeyStats, key_statistics
from edit.edit import Delta, Edit, EditError, EditSequence, restored_on_failure, tensor_hash
from edit.memit import MemitSettings, memit
from edit.null_space import NullSpace
from edit.patch import load_patch, save_patch
from edit.request import Request, RequestError, world_request
from edit.rome import RomeSettings, rome
from edit.values import ValueSettings

__all__ = ["Delta", "Edit", "EditError", "EditSequence", "KeyStats", "MemitSettings", "NullSpace", "Request",
           "RequestError", "RomeSettings", "ValueSettings", "key_statistics", "load_patch", "memit",
           "restored_on_failure", "rome", "save_patch", "score_requests", "tensor_hash", "world_request"]
