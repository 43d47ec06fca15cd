"""The playground and the slice viewer in JupyterLab, driven in a real browser (issue 17, item 6).

Headless tests call the widgets' callbacks directly (tests/test_viz_widgets.py); this one checks what a learner sees:
JupyterLab serves a notebook that builds both widgets as notebooks 01/02 do, headless Chromium runs it, switches the
transforms and moves the sliders, and reads the page. It needs a Chromium binary (the system's package; Playwright's
own browser download reaches hosts outside the package registries) and the Playwright driver (the test extra)::

    apt-get install chromium        # Debian/Ubuntu: /usr/bin/chromium (.ci/run installs it when it can)
    .venv/bin/python -m pytest tests/browser -q

Runs whenever Chromium is found (``PCRL_CHROMIUM`` names another binary); skipped, saying so, otherwise or with
``PCRL_BROWSER_TESTS=0``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest

from pcrl_lib.course import ensure_kernel
from pcrl_lib.viz.augment import CATALOGUE

CHROMIUM = os.environ.get("PCRL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(os.environ.get("PCRL_BROWSER_TESTS") == "0" or CHROMIUM is None,
                                reason="browser test: no Chromium found (apt-get install chromium, or set PCRL_CHROMIUM)")

CELLS = [
    "import numpy as np\nimport torch\nfrom pcrl_lib.viz import playground as vp, slice_viewer",
    "g = torch.Generator().manual_seed(0)\n"
    "playground = vp.playground(torch.rand(3, 1, 64, 64, generator=g), torch.rand(2, 1, 16, 16, 8, generator=g))",
    "volume = np.random.default_rng(0).normal(-600, 300, (48, 48, 12)).astype(np.float32)\n"
    "viewer = slice_viewer(volume, window=\"lung\")",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    kernel = ensure_kernel()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nbformat.write(nb, root / "widgets.ipynb")
    port, token = _free_port(), "pcrl-browser-test"
    # The widgets and the inline figures a learner gets: not the static form (PCRL_HEADLESS) nor the test
    # command's non-interactive Agg backend, under which plt.show() draws nothing.
    env = {k: v for k, v in os.environ.items() if k not in ("PCRL_HEADLESS", "MPLBACKEND")}
    env["JUPYTER_CONFIG_DIR"] = str(root / ".jupyter")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}",
                               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                               "--ServerApp.ip=127.0.0.1", *(["--allow-root"] if os.geteuid() == 0 else [])], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                json.load(r)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("JupyterLab did not start within 120 s")
            time.sleep(1)
    yield f"{url}/lab/tree/widgets.ipynb?token={token}"
    server.terminate()
    server.wait(timeout=60)


@pytest.fixture(scope="module")
def page(lab):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(lab)
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        for attempt in range(3):    # a click that lands while JupyterLab is still starting the kernel is lost
            page.click(".jp-Notebook")
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            try:
                page.wait_for_function("[...document.querySelectorAll('.jp-InputArea-prompt')]"
                                       ".some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))", timeout=30_000)
                break
            except sync_api.TimeoutError:
                if attempt == 2:
                    raise
        try:
            page.wait_for_selector(".widget-dropdown select >> nth=1", timeout=180_000)     # both widgets displayed
        except sync_api.TimeoutError:
            page.screenshot(path=os.environ.get("PCRL_BROWSER_SCREENSHOT", "/tmp/pcrl_lab_failure.png"))
            raise
        page.wait_for_function("document.querySelectorAll('.jp-OutputArea-output img').length >= 2", timeout=180_000)
        yield page
        browser.close()


def _playground(page):
    return page.locator(".widget-vbox", has=page.get_by_text("transform", exact=True)).first


def _settle(page, seconds: float = 2.0) -> None:
    # A redraw is a kernel round trip: wait for the kernel to go busy and idle again.
    time.sleep(0.3)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    time.sleep(seconds)


def _readouts(panel) -> dict[str, str]:
    out = {}
    for slider in panel.locator(".widget-slider").all():
        label = slider.locator(".widget-label").first.inner_text().strip()
        readout = slider.locator(".widget-readout").first
        text = readout.input_value() if readout.evaluate("e => e.tagName") == "INPUT" else readout.inner_text()
        out[label] = text.strip().replace("\u2212", "-").replace(",", "")   # readouts print a Unicode minus
    return out


@pytest.mark.parametrize("transform", ["local pixel shuffling", "cutout"])
def test_switching_transform_shows_one_figure_and_the_knob_defaults(page, transform):
    panel = _playground(page)
    panel.locator(".widget-dropdown select").first.select_option(label=transform)
    _settle(page)
    assert panel.locator(".jp-OutputArea-output img").count() == 1, "one figure per change, never two stacked"
    readouts = _readouts(panel)
    for knob in CATALOGUE[transform].knobs:
        shown = readouts[knob.name]
        value = float(shown)
        assert value == pytest.approx(knob.default, rel=5e-3), f"{knob.name}: slider shows {shown}, default {knob.default}"
        if knob.integer:
            assert value == knob.default, f"{knob.name}: {shown} (the slider moved the default)"


def test_viewer_opens_at_the_lung_window_and_never_warns_about_clipping(page):
    viewer = page.locator(".widget-vbox", has=page.get_by_text("level", exact=True)).last
    readouts = _readouts(viewer)
    assert float(readouts["level"]) == -600.0 and float(readouts["width"]) == 1500.0, readouts
    handle = viewer.locator(".widget-slider", has=page.get_by_text("level", exact=True)).locator(".ui-slider-handle, .noUi-handle").first
    handle.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    _settle(page)
    assert float(_readouts(viewer)["level"]) > -600.0, "the level slider moved"
    assert viewer.locator(".jp-OutputArea-output img").count() == 1
    assert "Clipping input data" not in page.content()
