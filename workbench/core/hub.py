"""Hugging Face hub ids: find a model in the local cache, or say at once why it cannot be fetched.

transformers, asked for a hub id it does not have with no network, retries for most of a
minute before it fails. A workbench command should either load from the cache at once or
refuse in one line, naming what to change.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id

_TRUE = {"1", "on", "yes", "true"}


class HubError(ValueError):
    """A hub id that is malformed, or not cached where the hub cannot be reached."""


def offline() -> bool:
    """Whether the environment asks for no network (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``).

    Read at each call, not at import, so a notebook that sets the variable late is honoured.
    """
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cache_dir() -> Path:
    """The hub cache folder, read from the environment at each call as the hub library reads it at import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the form of a hub model id (``name`` or ``owner/name``).

    Examples:
        >>> is_repo_id("EleutherAI/pythia-70m"), is_repo_id("a/b/c"), is_repo_id("no spaces")
        (True, False, False)
    """
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The local snapshot folder of a hub model, when its config is in the hub cache, else None.

    Examples:
        >>> cached_snapshot("no-such-owner/no-such-model") is None
        True
    """
    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir(), revision=revision)
    return Path(config).parent if isinstance(config, str) else None


def check_fetchable(repo_id: str, timeout: float = 3.0) -> None:
    """Refuse at once a hub id that is malformed, or that cannot be downloaded from here.

    One connection to the hub's host, at most ``timeout`` seconds, stands in for transformers'
    minute of retries. Set ``HF_HUB_OFFLINE=1`` to skip even that.

    Examples:
        >>> os.environ["HF_HUB_OFFLINE"] = "1"
        >>> check_fetchable("no-such-owner/no-such-model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        workbench.core.hub.HubError: not in the local Hugging Face cache (...) and HF_HUB_OFFLINE is set; ...

    Raises:
        HubError: the id is malformed, or the model is not cached and the hub is out of reach.
    """
    if not is_repo_id(repo_id):
        raise HubError("not a directory, a world model or a hub id (owner/name)")
    cache = cache_dir()
    if offline():
        raise HubError(
            f"not in the local Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set; "
            "download it where there is network, or pass a model directory"
        )
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise HubError(
            f"not in the local Hugging Face cache ({cache}) and {host} cannot be reached "
            f"({e.strerror or type(e).__name__}); set HF_HUB_OFFLINE=1 to use only cached models"
        ) from None
