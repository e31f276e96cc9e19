"""Atomic writes: a whole file or none, never a leftover temporary."""

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
