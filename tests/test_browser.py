"""One real-browser pass through the app: Debian's Chromium driven by Playwright.

Set CNNLAB_SCREENSHOT_DIR to keep the screenshots (the README's come from here)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from demo.common import DASH_POINTS
from models import AlexNetTransfer

CHROMIUM = "/usr/bin/chromium"
TABS = ["Activations", "Momentum", "Adaptive learning rate", "Batch normalization", "Depth", "Final CNN", "Transfer learning"]

if not shutil.which(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


@pytest.fixture
def served(tiny_root, torch_home, tmp_path):
    """`python app.py` in its own process, as a Space runs it, on a free port."""
    model = tmp_path / "ants-bees-model"
    AlexNetTransfer(mode="feature_extraction").save_pretrained(model)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATA_DIR": str(tiny_root), "TORCH_HOME": str(torch_home), "ANTS_BEES_MODEL": str(model), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=Path(__file__).parent.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180  # a cold start on a busy 2-core machine
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    yield url
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        page.goto(served)
        yield page
        browser.close()


def visible(locator):
    return locator.filter(visible=True)


DASHES = DASH_POINTS // 2  # subpaths of a reference curve: its points drawn in pairs


def lines(plot) -> list[tuple[str, int]]:
    """(stroke colour, number of subpaths) of each line drawn in a LinePlot."""
    return plot.locator(".mark-line path").evaluate_all("paths => paths.map(p => [p.getAttribute('stroke'), (p.getAttribute('d') || '').split('M').length - 1])")


def test_visit_every_tab_train_and_classify(page, tmp_path):
    shots = Path(os.environ.get("CNNLAB_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=30_000)  # the first load builds seven tabs on a busy 2-core machine
    for tab in TABS:
        page.get_by_role("tab", name=tab).click()
        expect(visible(page.get_by_role("button", name="Train"))).to_have_count(1)
        expect(visible(page.get_by_role("heading", level=3)).first).to_be_visible()

    page.get_by_role("tab", name="Batch normalization").click()
    plot = visible(page.locator(".vega-embed")).first
    # Before any training the committed reference run is drawn: one dashed line (many subpaths) per arm.
    expect(plot.locator("text", has_text="batch norm · reference")).to_have_count(2)
    assert sorted(n for _, n in lines(plot) if n) == [DASHES, DASHES]
    visible(page.get_by_role("button", name="Train")).click()
    visible(page.get_by_text("Done on")).wait_for(timeout=60_000)
    # The run ends with its verdict beside the result, in words.
    expect(visible(page.get_by_text("Verdict:"))).to_have_count(1)
    # Each live arm is a solid line in its reference's colour, and the two arms differ: an arm
    # missing from the plot's colour scale would be drawn without a stroke.
    drawn = lines(plot)
    assert all(stroke for stroke, _ in drawn) and len({stroke for stroke, _ in drawn}) == 2
    for stroke in {stroke for stroke, _ in drawn}:
        assert sorted(n for s, n in drawn if s == stroke) == [1, DASHES]
    page.screenshot(path=shots / "batchnorm.png", full_page=True)

    page.get_by_role("tab", name="Transfer learning").click()
    photo = tmp_path / "bee.png"
    Image.new("RGB", (300, 240), (240, 200, 30)).save(photo)
    page.locator("input[type=file]").last.set_input_files(str(photo))  # the transfer tab comes last
    label = visible(page.locator(".output-class")).first
    label.wait_for(timeout=30_000)
    assert label.inner_text().strip() in ("ants", "bees")
    page.screenshot(path=shots / "transfer.png", full_page=True)

    page.get_by_role("tab", name="Momentum").click()
    page.screenshot(path=shots / "momentum.png", full_page=True)
