"""Where tests leave what a person looks at: each view's static copy (HTML and PNG) and screenshots.

``tests/artifacts/`` is git-ignored. A PNG goes through kaleido, which drives Chromium
(Debian's ``chromium`` package; ``make chromium`` installs it): without one the PNG is skipped
with that reason, the HTML is still written and checked.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
NO_CHROMIUM = "Chromium is not installed (/usr/bin/chromium): `make chromium` or `apt-get install -y chromium`"


def write_static(view, name: str) -> list[Path]:
    """Write ``view.save(tests/artifacts/name)``; check the HTML, then the PNG where Chromium exists."""
    html = view.save(ARTIFACTS / name, png=False)[0]
    text = html.read_text()
    # Self-contained: plotly.js inlined, no script fetched from anywhere when the file opens.
    assert "Plotly.newPlot" in text and not re.search(r"<script[^>]*src=[\"']https?:", text)
    if not CHROMIUM:
        pytest.skip(NO_CHROMIUM)
    png = view.save(ARTIFACTS / name)[1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    print(f"static copy: {html} {png}")
    return [html, png]
