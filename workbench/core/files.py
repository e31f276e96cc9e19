"""Writing a file so that no reader, and no other process writing the same file, sees half of it; the cache folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """The workbench's cache: ``$WORKBENCH_CACHE`` or ``~/.cache/knowledge-workbench``, read at each call.

    Statistics, readings and SISA ensembles go under it, so a notebook that sets the variable
    late is honoured.

    Examples:
        >>> env_name = os.environ.get("WORKBENCH_CACHE", "").rstrip("/").split("/")[-1]
        >>> cache_dir().name in ("knowledge-workbench", env_name)
        True
    """
    root = os.environ.get("WORKBENCH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "knowledge-workbench"


def write_atomically(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file of its own beside ``path``, then rename it to ``path``.

    The rename is atomic, so ``path`` is either absent, the old file, or the whole new one;
    two processes writing the same path at once each rename a complete file.

    Examples:
        >>> import tempfile
        >>> p = write_atomically(Path(tempfile.mkdtemp()) / "x.txt", lambda tmp: Path(tmp).write_text("hi"))
        >>> p.read_text(), [q.name for q in p.parent.iterdir()]
        ('hi', ['x.txt'])
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file 0600; what is written should read like any new file of the user's.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def current_umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back).

    Examples:
        >>> 0 <= current_umask() <= 0o777
        True
    """
    mask = os.umask(0)
    os.umask(mask)
    return mask
