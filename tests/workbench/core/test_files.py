"""Atomic writes: a whole file or none, never a leftover temporary."""

import os
import stat
from pathlib import Path

import pytest

from workbench.core.files import write_atomically


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_atomically(tmp_path / "a.json", lambda tmp: Path(tmp).write_text("old"))

    def half(tmp):
        Path(tmp).write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_written_file_gets_the_modes_of_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_atomically(tmp_path / "x.json", lambda tmp: Path(tmp).write_text("{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
