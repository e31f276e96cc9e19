"""The quickstart in a real browser: JupyterLab, headless Chromium, Run All, the trace explorer drawn and clicked.

JupyterLab runs on a free localhost port with a token, in a temporary root holding a copy of
the quickstart, with this virtual environment's kernel and fresh settings, runtime and profile
folders. Playwright (its Python package) drives Debian's Chromium: no browser is downloaded.
Screenshots land in ``tests/artifacts/browser_*.png``.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from static_figures import ARTIFACTS, CHROMIUM, NO_CHROMIUM

QUICKSTART = Path(__file__).parents[2] / "notebooks" / "quickstart.ipynb"
# Without the background-networking flags Chromium keeps calling out, and this machine refuses it.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SETTINGS = {"notebook-extension/tracker": {"autoStartDefaultKernel": True},
            "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}
RUN_ALL_SECONDS = 420

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM, reason=NO_CHROMIUM)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server over a copy of the quickstart; yields its base URL and token."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(QUICKSTART, root / QUICKSTART.name)
    for name, body in SETTINGS.items():
        f = tmp_path / "settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(body))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"),
               IPYTHONDIR=str(tmp_path / "ipython"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        env["OMP_NUM_THREADS"] = "1"  # the other worker has the other core
    port, token = free_port(), secrets.token_hex(16)
    log = open(tmp_path / "jupyter.log", "w")
    # The kernel is this interpreter's (the project's .venv): "python3" resolves to sys.executable.
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    raise AssertionError((tmp_path / "jupyter.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


KERNEL_READY = """async () => {
    const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!w || !w.sessionContext) return false;
    await w.sessionContext.ready;
    const k = w.sessionContext.session && w.sessionContext.session.kernel;
    return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""
ALL_RAN = """() => {
    const w = window.jupyterapp.shell.currentWidget;
    const k = w.sessionContext.session.kernel;
    const cells = w.content.widgets.filter(c => c.model.type === 'code');
    return k.status === 'idle' && cells.every(c => c.model.executionCount !== null);
}"""
ERRORS = """() => window.jupyterapp.shell.currentWidget.content.widgets
    .filter(c => c.model.type === 'code')
    .flatMap(c => c.model.outputs.toJSON().filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue))"""
GRAPH = """() => {
    const gd = document.querySelector('.wb-trace-explorer .js-plotly-plot');
    return {traces: gd.data.map(t => ({name: t.name, type: t.type, rows: t.z.length, cols: t.z[0].length,
                                      z: t.z})),
            images: gd.querySelectorAll('.heatmaplayer image').length,
            ticks: Array.from(gd.querySelectorAll('.yaxislayer-above .ytick text')).map(e => e.textContent)};
}"""
DETAIL_SAYS = """(text) => {
    const d = document.querySelector('.wb-trace-explorer .wb-trace-detail');
    return !!d && d.innerText.includes(text);
}"""
# The page position of a heatmap cell, from the trace's axes (robust to layout and size).
CELL = """([name, row, col]) => {
    const gd = document.querySelector('.wb-trace-explorer .js-plotly-plot');
    const t = gd._fullData.find(t => t.name === name);
    const xa = gd._fullLayout[t.xaxis.replace('x', 'xaxis')], ya = gd._fullLayout[t.yaxis.replace('y', 'yaxis')];
    const r = gd.getBoundingClientRect();
    return [r.left + xa._offset + xa.d2p(col), r.top + ya._offset + ya.d2p(row)];
}"""


def click_cell(page, name: str, row: int, col: int, tries: int = 3) -> None:
    """Click a heatmap cell once the plot has stopped moving; again if the panel did not answer."""
    from playwright.sync_api import TimeoutError as PageTimeout

    for _ in range(tries):
        where = None
        for _ in range(40):  # the widget resizes to its output area after it is first drawn
            now = page.evaluate(CELL, [name, row, col])
            if now == where:
                break
            where = now
            page.wait_for_timeout(250)
        page.mouse.move(*where)
        page.mouse.click(*where)
        try:
            page.wait_for_function(DETAIL_SAYS, arg="restored P(object)", timeout=30_000)
            return
        except PageTimeout:
            pass
    raise AssertionError(f"clicking cell ({row}, {col}) of {name} never updated the detail panel")


def test_quickstart_runs_and_the_trace_explorer_responds_to_a_click(lab, handle, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser_quickstart.png"
    outside = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(  # a new, empty profile (--user-data-dir)
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1500, "height": 1100})
        try:
            page = context.new_page()
            local = ("http://127.0.0.1", "data:", "blob:")
            page.on("request", lambda r: r.url.startswith(local) or outside.append(r.url))
            page.goto(f"{base}/lab/tree/{QUICKSTART.name}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-CodeCell", timeout=120_000)
            page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)
            page.wait_for_function(KERNEL_READY, timeout=120_000, polling=500)
            page.locator(".jp-NotebookPanel .jp-CodeCell").first.click()  # the notebook, focused, is what Run acts on
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.click("li[data-command='runmenu:run-all']")
            page.wait_for_function(ALL_RAN, timeout=RUN_ALL_SECONDS * 1000, polling=1000)
            assert page.evaluate(ERRORS) == []
            page.locator(".wb-trace-explorer").scroll_into_view_if_needed()
            page.wait_for_selector(".wb-trace-explorer .js-plotly-plot .heatmaplayer image", timeout=60_000)

            g = page.evaluate(GRAPH)
            n_tokens = len(g["ticks"])
            assert [(t["name"], t["type"]) for t in g["traces"]] == [("resid", "heatmap"), ("mlp", "heatmap"),
                                                                    ("attn", "heatmap")]
            assert n_tokens >= 3 and all((t["rows"], t["cols"]) == (n_tokens, handle.n_layers) for t in g["traces"])
            assert g["images"] == 3  # each heatmap drawn
            mlp = g["traces"][1]["z"]
            # The fact is looked up at the prompt's last token by layer 0's MLP: that cell restores it.
            assert mlp[-1][0] > 0.9 and max(mlp[0]) < 0.5

            detail = page.locator(".wb-trace-explorer .wb-trace-detail")
            # The panel's text arrives in its own message after the plot is drawn; on a loaded machine, later.
            page.wait_for_function(DETAIL_SAYS, arg="Click a cell", timeout=30_000)
            assert "Click a cell" in detail.inner_text()
            click_cell(page, "mlp", n_tokens - 1, 0)
            text = detail.inner_text()
            assert f"layer 0, token {n_tokens - 1}" in text and "MLP output" in text
            assert "prompt's last token" in text and "next token" in text
            assert page.locator(".wb-trace-explorer button", has_text="edit here").is_enabled()
            page.screenshot(path=str(shot), full_page=False)
            page.locator(".wb-trace-explorer").screenshot(path=str(ARTIFACTS / "browser_trace_explorer.png"))
            collateral = page.locator(".wb-collateral-explorer")
            collateral.scroll_into_view_if_needed()
            page.wait_for_selector(".wb-collateral-explorer .js-plotly-plot", timeout=60_000)
            assert collateral.locator(".js-plotly-plot").count() == 1 and "held-out loss" in collateral.inner_text()
            collateral.screenshot(path=str(ARTIFACTS / "browser_collateral_explorer.png"))
        finally:
            context.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 20_000
    assert outside == [], f"the page fetched from outside localhost: {outside[:5]}"
