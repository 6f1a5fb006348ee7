"""Real-browser passes through the app: Debian's Chromium driven by Playwright.

Set CNNLAB_SCREENSHOT_DIR to keep the screenshots (the README's come from here)."""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

import app
import zerogpu_device
from conftest import STAND_IN_WEIGHTS_PATH, dog_classifier
from demo.views import DASH_POINTS
from models import AlexNetTransfer

CHROMIUM = "/usr/bin/chromium"
TABS = [tab.title for tab in app.TABS]

if not shutil.which(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


def server_cpus() -> None:
    """Run the served app on one core of its own. A student's browser runs on another machine than
    the server; here they share two cores, and an app training on both starved Chromium's renderer
    of frames, so that a click waited 30 s for its button to be reported stable."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[-1]})


def serve(env_overrides: dict) -> tuple[subprocess.Popen, str]:
    """`python app.py` in its own process, as a Space runs it, on a free port, once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if key != "CIFAR10_MODEL"}  # nothing set: the embedded classifier answers
    env = {**env, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", **env_overrides}
    server = subprocess.Popen(
        [sys.executable, "app.py"], cwd=Path(__file__).parent.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=server_cpus
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180  # a cold start on a busy 2-core machine
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    return server, url


@pytest.fixture
def served(tiny_root, torch_home, tmp_path):
    model = tmp_path / "ants-bees-model"
    AlexNetTransfer(mode="feature_extraction").save_pretrained(model)
    server, url = serve({"DATA_DIR": str(tiny_root), "TORCH_HOME": str(torch_home), "PYTHONPATH": STAND_IN_WEIGHTS_PATH, "ANTS_BEES_MODEL": str(model)})
    yield url
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def served_without_data(tmp_path):
    """A fresh host: no data, no models, and no network (every download goes to a closed port)."""
    closed = "http://127.0.0.1:9"
    server, url = serve({"DATA_DIR": str(tmp_path / "data"), "TORCH_HOME": str(tmp_path / "torch"), "CNNLAB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "NO_PROXY": "127.0.0.1,localhost"})
    yield url
    server.terminate()
    server.wait(timeout=10)


@contextlib.contextmanager
def browser_page(url: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        page.goto(url)
        yield page
        browser.close()


@pytest.fixture
def page(served):
    with browser_page(served) as page:
        yield page


def visible(locator):
    return locator.filter(visible=True)


def shoot_where_it_looked(page, shots: Path, tab: str) -> None:
    """Screenshots of a tab's explanation at desktop and phone width, the picture in view."""
    for width in (1400, 400):
        page.set_viewport_size({"width": width, "height": 1000})
        visible(page.locator(".why-picture")).first.scroll_into_view_if_needed()
        page.wait_for_timeout(800)  # the page reflows at the new width before it is drawn
        page.screenshot(path=shots / f"why-{tab}-{width}.png")


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

    # With nothing set and nothing trained, the Final CNN tab classifies a cat photo at once.
    page.get_by_role("tab", name="Final CNN").click()
    expect(visible(page.get_by_text("Answering: the embedded classifier"))).to_have_count(1)
    photo_box = visible(page.locator(".block", has=page.get_by_text("Photo", exact=True)))  # its file input is hidden
    photo_box.locator("input[type=file]").set_input_files(str(Path(__file__).parent / "assets" / "cat.jpg"))
    label = visible(page.locator(".output-class")).first
    label.wait_for(timeout=30_000)
    assert label.inner_text().strip() == "cat"
    expect(visible(page.get_by_text("What the network sees (32×32)"))).to_have_count(1)
    # Then, after the label, where it found its evidence, with how to read it and how faithful it measured.
    expect(visible(page.get_by_text("Where it found “cat”."))).to_have_count(1)
    page.screenshot(path=shots / "final-cnn.png", full_page=True)
    shoot_where_it_looked(page, shots, "final-cnn")
    page.set_viewport_size({"width": 1300, "height": 1400})

    page.get_by_role("tab", name="Batch normalization").click()
    plot = visible(page.locator(".vega-embed")).first
    # Before any training the committed reference run is drawn: one dashed line (many subpaths) per arm.
    # One legend entry per arm, whose title says which curves are dashed.
    expect(plot.locator(".role-legend-title", has_text="arm (dashed: reference run)")).to_have_count(1)
    expect(plot.locator(".role-legend-label", has_text="· reference")).to_have_count(0)
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
    visible(page.locator(".block", has=page.get_by_text("Photo", exact=True))).locator("input[type=file]").set_input_files(str(photo))
    label = visible(page.locator(".output-class")).first
    label.wait_for(timeout=30_000)
    assert label.inner_text().strip() in ("ants", "bees")
    page.screenshot(path=shots / "transfer.png", full_page=True)

    page.get_by_role("tab", name="Momentum").click()
    page.screenshot(path=shots / "momentum.png", full_page=True)


def texts(locator) -> list[str]:
    """The text of each element (textContent: the table cells' innerText reads empty)."""
    return locator.evaluate_all("elements => elements.map(e => e.textContent.trim())")


def tick_labels(page) -> list[str]:
    """Every axis tick label drawn in a visible LinePlot."""
    return texts(visible(page.locator(".vega-embed")).locator(".role-axis-label text"))


# What a reader would find cut or broken in the visible page: a plot's title or legend entry past
# its plot, a formula past its column, a block past the window, or a word of the text broken
# inside its letters across two lines ("sig/m/oid"; a run of over 20 letters and digits may break).
CUT_OR_BROKEN = """() => {
  const shown = e => e.offsetParent !== null;
  const out = [];
  for (const plot of [...document.querySelectorAll('.vega-embed')].filter(shown)) {
    const edge = plot.getBoundingClientRect();
    for (const t of plot.querySelectorAll('.role-title-text, .role-legend-label, .role-legend-title')) {
      const r = t.getBoundingClientRect();
      if (r.right > edge.right + 1 || r.left < edge.left - 1) out.push('plot text cut: ' + t.textContent);
    }
    for (const t of plot.querySelectorAll('.role-title-text'))
      if (t.getBoundingClientRect().top < edge.top + 1) out.push('plot title cut at the top: ' + t.textContent);
  }
  for (const k of [...document.querySelectorAll('.katex-display')].filter(shown))
    if (k.scrollWidth > k.clientWidth + 1) out.push('formula cut: ' + k.textContent.slice(0, 30));
  for (const b of [...document.querySelectorAll('.block')].filter(shown))
    if (b.getBoundingClientRect().right > window.innerWidth + 1) out.push('past the window: ' + b.innerText.slice(0, 30));
  for (const text of [...document.querySelectorAll('.prose')].filter(shown)) {
    const walker = document.createTreeWalker(text, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest('.katex')) continue;
      for (const m of node.textContent.matchAll(/(?<![\\p{L}\\p{N}])[\\p{L}\\p{N}]{2,20}(?![\\p{L}\\p{N}])/gu)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        if (new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1) out.push('word broken: ' + m[0]);
      }
    }
  }
  return out;
}"""


def test_every_tab_opens_with_something_to_read_at_desktop_and_phone_widths(page, tmp_path):
    shots = Path(os.environ.get("CNNLAB_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=30_000)
    for width, height in ((1400, 1000), (400, 850)):
        page.set_viewport_size({"width": width, "height": height})
        for tab in TABS:
            # Every tab is in sight in the tab bar, on a phone too (none in an overflow menu).
            expect(visible(page.get_by_role("tab"))).to_have_text([*TABS, app.TEACHER_TAB.title])
            page.get_by_role("tab", name=tab).click()
            expect(visible(page.get_by_role("button", name="Train"))).to_have_count(1)
            # Nothing is cut at the page's or a plot's edge, and no word breaks inside itself.
            assert not page.evaluate(CUT_OR_BROKEN), f"{tab} at {width} px: {page.evaluate(CUT_OR_BROKEN)}"
            # No empty frame: every visible line plot draws a curve, every image plot an image,
            # and every table has rows under real headers (an empty one is headed "1 2 3").
            for plot in visible(page.locator(".vega-embed")).all():
                assert any(n for _, n in lines(plot)), f"{tab}: an empty line plot at load"
                assert plot.bounding_box()["width"] > min(300, width - 100), f"{tab}: a plot squeezed at {width} px"
            for table in visible(page.locator("table")).all():
                headers = texts(table.locator("thead th"))
                assert headers and not all(h.isdigit() for h in headers), f"{tab}: a table without headers: {headers}"
                assert any(texts(table.locator("tbody td"))), f"{tab}: an empty table at load"
            labels = tick_labels(page)
            assert labels or not visible(page.locator(".vega-embed")).count()
            assert not [t for t in labels if re.search(r"\.\d{3,}", t)], f"{tab}: a tick label with over 2 decimals: {labels}"
            # No raw Python (a dict's repr) in what the tab says.
            said = page.locator("body").inner_text()
            assert not re.search(r"\{'\w+': ", said), f"{tab}: raw Python on the page"
            # The columns that compare stay in view beside the arm's name; on a phone, the student's own.
            for table in visible(page.locator("table")).all():
                for header in ("this run", "train time (s)") if width == 1400 else ("this run",):
                    cell = table.locator("thead th", has_text=header)
                    if cell.count():
                        assert cell.first.bounding_box()["x"] + cell.first.bounding_box()["width"] <= width, f"{tab}: {header!r} off-screen at {width} px"
            page.screenshot(path=shots / f"{tab.lower().replace(' ', '-')}-{width}.png", full_page=True)


# What a student meets before Train on a phone (tests/page_reading.py measures it).
TRAIN_WITHIN_PX = 1300  # about a phone screen and a half (400 × 850)
WORDS_BEFORE_TRAIN = 150


def test_on_a_phone_every_tab_asks_its_question_first_with_train_in_the_first_screen_and_a_half(page, tmp_path):
    from page_reading import reading

    expect.set_options(timeout=30_000)
    page.set_viewport_size({"width": 400, "height": 850})
    for tab in app.TABS:
        page.get_by_role("tab", name=tab.title).click()
        expect(visible(page.get_by_role("button", name="Train"))).to_have_count(1)
        seen = reading(page, tab.title)
        assert seen["start"] is not None and seen["start"] <= TRAIN_WITHIN_PX, f"{tab.title}: Train (or the photo) at {seen['start']} px"
        assert seen["words"] <= WORDS_BEFORE_TRAIN, f"{tab.title}: {seen['words']} words before Train"
        assert not seen["faint"], f"{tab.title}: long texts too small or too faint: {seen['faint']}"
        assert not seen["deployment"], f"{tab.title}: a deployer's words on a student's page: {seen['deployment']}"
        question = getattr(tab, "question", None)
        if question:
            expect(visible(page.get_by_text(question, exact=True))).to_have_count(1)


def test_an_experiment_link_opens_its_tab_sets_its_controls_and_runs_them(served):
    """A teacher's link: the tab, the controls' values, a run that used them (its arm is labelled
    by β), and in a second link a bad value said on the page while the others apply."""
    with browser_page(served + "?tab=compare_batchnorm&seed=3&epochs=1&beta=0.5&run=0") as page:
        expect.set_options(timeout=30_000)
        expect(page.get_by_role("tab", name="Batch normalization")).to_have_attribute("aria-selected", "true")
        expect(visible(page.get_by_text("Not applied: beta: this tab takes preset, epochs, n_train, lr, batch_size, seed, init."))).to_have_count(1)
        visible(page.get_by_text("Settings: preset, epochs, images, learning rate, seed")).click()
        expect(visible(page.get_by_role("spinbutton", name="number input for Epochs"))).to_have_value("1")
        page.goto(served + "?tab=compare_momentum&beta=0.5&epochs=1&n_train=100&batch_size=abc&run=1")
        expect(page.get_by_role("tab", name="Momentum")).to_have_attribute("aria-selected", "true")
        expect(visible(page.get_by_text("Not applied: batch_size=abc: must be an integer, got 'abc'"))).to_have_count(1)
        visible(page.get_by_text("Done on")).first.wait_for(timeout=120_000)  # run=1 pressed Train
        # The results table's row of the β arm, as the page reads (its header is a table of its own).
        said = page.locator("body").inner_text()
        assert re.search(r"momentum 0\.5\s+\d+\.\d\d%, 100 images", said), said[-3000:]
        visible(page.get_by_text("Link to these settings")).click()
        link = page.locator("textarea, input").evaluate_all("boxes => boxes.map(b => b.value).filter(v => v.includes('tab='))")
        assert link and link[0].startswith(served + "?tab=compare_momentum&beta=0.5&") and "epochs=1" in link[0] and "n_train=100" in link[0], link


@pytest.fixture
def served_to_a_class(tiny_root, torch_home, tmp_path):
    """The app as a teacher deploys it for a class: a teacher key set, the record in a folder of its own."""
    server, url = serve({"DATA_DIR": str(tiny_root), "TORCH_HOME": str(torch_home), "PYTHONPATH": STAND_IN_WEIGHTS_PATH, "CNNLAB_CLASS_DIR": str(tmp_path / "class"), "CNNLAB_TEACHER_KEY": "plum-orchard-42"})
    yield url
    server.terminate()
    server.wait(timeout=10)


def test_three_groups_seeds_show_on_the_board_and_in_the_verdict_and_the_teacher_clears_them_with_the_key(served_to_a_class, tmp_path):
    shots = Path(os.environ.get("CNNLAB_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with browser_page(served_to_a_class) as page:
        expect.set_options(timeout=30_000)
        for seed, width in ((1, 1300), (2, 1300), (3, 400)):  # three groups, each handed its seed's link; the last on a phone
            page.set_viewport_size({"width": width, "height": 1400 if width > 400 else 850})
            page.goto(served_to_a_class + f"?tab=compare_momentum&epochs=1&n_train=100&seed={seed}")
            expect(page.get_by_role("tab", name="Momentum")).to_have_attribute("aria-selected", "true")
            visible(page.get_by_label("momentum", exact=True)).first.check()  # predict, then run
            visible(page.get_by_role("button", name="Train")).click()
            visible(page.get_by_text("Done on")).first.wait_for(timeout=120_000)
            expect(visible(page.get_by_text(re.compile(rf"^Your class at these settings: {seed} runs?\.")))).to_have_count(1)
        expect(visible(page.get_by_text(re.compile(r"In 3 runs at these settings in your class \(seeds 1, 2, 3\) the gap was")))).to_have_count(1)
        expect(visible(page.get_by_text(re.compile(r"Predictions: 3 said momentum;")))).to_have_count(1)
        board = visible(page.locator(".class-board"))
        expect(board.locator("img")).to_have_count(1)
        board.screenshot(path=shots / "class-board-400.png")
        visible(page.get_by_text("Link to these settings")).click()
        page.screenshot(path=shots / "class-board-and-link-400.png", full_page=True)
        page.set_viewport_size({"width": 1400, "height": 1400})
        board.screenshot(path=shots / "class-board-1400.png")
        page.screenshot(path=shots / "class-board-and-link-1400.png", full_page=True)

        page.get_by_role("tab", name="Class").click()
        visible(page.get_by_role("button", name="Refresh")).click()
        said = lambda: page.locator("body").inner_text()  # noqa: E731
        expect(visible(page.get_by_text("SGD with and without momentum")).first).to_be_visible()
        page.screenshot(path=shots / "class-tab-1400.png", full_page=True)
        visible(page.get_by_text("Clear the record (needs the teacher key)")).click()
        key = visible(page.get_by_label("Teacher key"))
        key.fill("a guess")
        visible(page.get_by_role("button", name="Clear every run")).click()
        expect(visible(page.get_by_text("Not cleared. That is not this server's teacher key: nothing was cleared."))).to_have_count(1)
        key.fill("plum-orchard-42")
        visible(page.get_by_role("button", name="Clear every run")).click()
        expect(visible(page.get_by_text("Cleared: 3 finished runs were deleted."))).to_have_count(1)
        assert "SGD with and without momentum" not in said().split("Runs by experiment and setting", 1)[-1]


# Watches the page from before Train: when a curve of the run was first drawn, when the status first
# said the run was done, and whether Stop was enabled while it ran.
WATCH = """() => {
  window.seen = {};
  const look = () => {
    const now = performance.now();
    const drawn = [...document.querySelectorAll('.vega-embed')].filter(e => e.offsetParent && /Training loss/.test(e.textContent))
      .some(e => [...e.querySelectorAll('.mark-line path')].some(p => (p.getAttribute('d') || '').split('L').length > 1));
    if (drawn && !window.seen.curve) window.seen.curve = now;
    if (/Done on/.test(document.body.innerText) && !window.seen.done) window.seen.done = now;
    const stop = [...document.querySelectorAll('button')].find(b => b.offsetParent && b.innerText.trim() === 'Stop');
    if (stop && !stop.disabled && !window.seen.done) window.seen.stopLive = true;
    if (!window.seen.done) requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
}"""


@pytest.fixture
def served_for_transfer(tmp_path, torch_home):
    """Ants and bees, 60 photos each (the tiny set's 8 make one step an epoch: no curve to draw
    before the end), and the stand-in AlexNet weights."""
    from conftest import write_folder

    write_folder(tmp_path / "hymenoptera_data" / "train", ("ants", "bees"), 60, 240, ".jpg", seed=3)
    write_folder(tmp_path / "hymenoptera_data" / "val", ("ants", "bees"), 4, 240, ".jpg", seed=4)
    server, url = serve({"DATA_DIR": str(tmp_path), "TORCH_HOME": str(torch_home), "PYTHONPATH": STAND_IN_WEIGHTS_PATH})
    with browser_page(url) as page:
        yield page
    server.terminate()
    server.wait(timeout=10)


def test_transfer_learning_draws_its_curves_while_it_trains_and_stop_is_live_only_then(served_for_transfer, tmp_path):
    page = served_for_transfer
    shots = Path(os.environ.get("CNNLAB_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=30_000)
    page.get_by_role("tab", name="Transfer learning").click()
    stop = visible(page.get_by_role("button", name="Stop"))
    expect(stop).to_be_disabled()  # nothing runs yet
    page.evaluate(WATCH)
    visible(page.get_by_label("fine tuning")).first.check()  # predict, then run
    visible(page.get_by_role("button", name="Train")).click()
    visible(page.get_by_text("Done on")).first.wait_for(timeout=120_000)
    # After the verdict, whether the prediction came true, in the run's own outcome.
    expect(visible(page.get_by_text(re.compile(r"Your prediction, fine tuning: (right|not this time)\.")))).to_have_count(1)
    seen = page.evaluate("() => window.seen")
    # Its loss curve was drawn before the run was done (the plots used to show only with the verdict).
    assert seen.get("curve") and seen["curve"] < seen["done"], seen  # how soon: benchmarks/RESULTS.md
    assert seen.get("stopLive"), seen
    expect(stop).to_be_disabled()
    # A validation photo, answered, then explained by both arms side by side.
    visible(page.locator(".block", has=page.get_by_text("Validation photos: click one to classify it")).locator("img")).first.click()
    expect(visible(page.get_by_text(re.compile(r"Where it found “(ants|bees)”\.")))).to_have_count(1, timeout=60_000)
    shoot_where_it_looked(page, shots, "transfer")


@pytest.fixture
def page_with_run_cache(tiny_root, torch_home, tmp_path):
    """The app with its run cache on, as a classroom server keeps it: an identical Train replays."""
    server, url = serve({"DATA_DIR": str(tiny_root), "TORCH_HOME": str(torch_home), "PYTHONPATH": STAND_IN_WEIGHTS_PATH, "CNNLAB_CACHE": str(tmp_path / "cache"), "CNNLAB_RUN_CACHE_MB": "512"})
    with browser_page(url) as page:
        yield page
    server.terminate()
    server.wait(timeout=10)


def test_the_instrument_draws_each_arm_inside_the_network_live_and_on_replay_at_phone_width(page_with_run_cache, tmp_path):
    page = page_with_run_cache
    shots = Path(os.environ.get("CNNLAB_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=30_000)
    page.get_by_role("tab", name="Momentum").click()
    page.set_viewport_size({"width": 400, "height": 850})
    instrument = page.locator(".vega-embed", has=page.locator("text", has_text="Do successive steps agree?"))
    expect(instrument).to_have_count(0)  # no reference run holds readings: it waits for a Train
    for attempt, done in (("trained", "Done on"), ("replayed", "replayed")):
        visible(page.get_by_role("button", name="Train")).click()
        visible(page.get_by_text(done)).first.wait_for(timeout=60_000)
        expect(instrument).to_have_count(1)
        # One line per arm, each in its own colour, across the network's layers.
        drawn = lines(instrument)
        assert len({stroke for stroke, n in drawn if stroke and n}) == 2, f"{attempt}: {drawn}"
        box = instrument.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 400, f"{attempt}: the instrument runs off a phone's screen: {box}"
        # The measured sentence beside it, computed from this run, and under it on a phone.
        # (The verdict above says it too, as its why.)
        sentences = visible(page.locator("p", has_text="Inside the network, this run:"))
        expect(sentences.get_by_text(re.compile(r"had a median cosine of [+-]\d\.\d\d"))).to_have_count(1)
        assert not page.evaluate(CUT_OR_BROKEN), f"{attempt}: {page.evaluate(CUT_OR_BROKEN)}"
    instrument.scroll_into_view_if_needed()
    page.screenshot(path=shots / "momentum-instrument-400.png", full_page=True)


@pytest.fixture
def served_for_a_long_run(tmp_path):
    """The app on a CIFAR-10 of 100 training images per class (the tiny one has 16), so that a
    run can outlast any Stop."""
    from conftest import write_folder
    from training.datasets import CIFAR10_CLASSES

    write_folder(tmp_path / "cifar10" / "train", CIFAR10_CLASSES, 100, 32, ".png", seed=1)
    write_folder(tmp_path / "cifar10" / "test", CIFAR10_CLASSES, 6, 32, ".png", seed=2)
    server, url = serve({"DATA_DIR": str(tmp_path), "CNNLAB_CACHE": str(tmp_path / "cache")})
    yield url
    server.terminate()
    server.wait(timeout=10)


def test_stop_says_the_run_stopped_and_where_each_arm_got_to(served_for_a_long_run):
    with browser_page(served_for_a_long_run) as page:
        expect.set_options(timeout=30_000)
        page.get_by_role("tab", name="Momentum").click()
        # The run must outlast Stop's way to the server, which on a loaded machine has taken 30 s (a
        # click waits for its button to be drawn stable). On the tiny dataset, 100 images 30 times
        # were done within 30 s on one core, and a Stop that came later found nothing left to stop:
        # the page said "Done", never "Stopped after". Here 1,000 images, 2 a step, 30 times are
        # 30,000 steps (about 3.5 min on one core of the development machine), inside the server's
        # image budget; a Stop 40 s late still finds the run at 19%.
        visible(page.get_by_text("Settings: preset, epochs, images, learning rate, seed")).click()  # folded
        for name, value in (("Epochs", "30"), ("Training images (class-balanced subset)", "1000"), ("Batch size", "2")):
            box = visible(page.get_by_role("spinbutton", name=f"number input for {name}"))
            box.fill(value)
            box.press("Tab")
        visible(page.get_by_role("button", name="Train")).click()
        visible(page.get_by_text("Training both arms")).first.wait_for()
        visible(page.get_by_role("button", name="Stop")).click()
        status = visible(page.get_by_text("Stopped after")).first
        try:
            status.wait_for()
        except PlaywrightTimeout:  # say what the page shows instead: the run's status lines and any toast
            shown = texts(visible(page.locator("p, .toast-body", has_text=re.compile("Training|Done|Stopped|Waiting|Cannot|rror"))))
            pytest.fail(f"no 'Stopped after' 30 s after Stop; the page shows {shown}")
        assert "training steps" in status.inner_text()
        results = visible(page.locator("table", has=page.locator("th", has_text="this run"))).first
        cells = texts(results.locator("tbody td"))
        assert not [c for c in cells if "training…" in c] and any(c.startswith("stopped at step") for c in cells), cells


def test_your_images_trains_on_generated_shapes_classifies_and_shows_a_mistake(page, tmp_path):
    from test_your_images import shape_photo, shapes_zip

    shots = Path(os.environ.get("CNNLAB_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=30_000)
    page.get_by_role("tab", name="Your images").click()
    zip_box = visible(page.locator(".block", has=page.get_by_text("A .zip with one folder per class", exact=True)))
    zip_box.locator("input[type=file]").set_input_files(shapes_zip(tmp_path / "shapes.zip", per_class=10))
    visible(page.get_by_role("button", name="Train")).click()
    visible(page.get_by_text("Done on")).wait_for(timeout=120_000)
    expect(visible(page.get_by_text("Took 20 photos"))).to_have_count(1)
    (tmp_path / "new.jpg").write_bytes(shape_photo(0, __import__("numpy").random.default_rng(5)))
    photo_box = visible(page.locator(".block", has=page.get_by_text("Photo", exact=True)))
    photo_box.locator("input[type=file]").set_input_files(str(tmp_path / "new.jpg"))
    label = visible(page.locator(".output-class")).first
    label.wait_for(timeout=30_000)
    assert label.inner_text().strip() in ("circle", "square")
    # After the label: where both arms found their evidence, side by side.
    expect(visible(page.get_by_text(re.compile(r"^Where it found “(circle|square)”\.")))).to_have_count(1, timeout=60_000)
    shoot_where_it_looked(page, shots, "your-images")
    page.set_viewport_size({"width": 1300, "height": 1400})
    # A backbone of random weights (this machine has no ImageNet weights) gets some validation photos wrong.
    visible(page.get_by_role("radio", name="feature extraction")).check()
    caption = visible(page.get_by_text(re.compile(r"^(circle → square|square → circle) \d+%$"))).first
    caption.wait_for(timeout=30_000)
    page.wait_for_timeout(1_000)  # the gallery fades while its update lands; the screenshot waits it out
    page.screenshot(path=shots / "your-images.png", full_page=True)
    # After a run, on a phone: the curves' and the instrument's legends of three arms, the sentences.
    page.set_viewport_size({"width": 400, "height": 850})
    page.wait_for_timeout(1_000)  # the plots redraw at the new width
    assert not page.evaluate(CUT_OR_BROKEN), page.evaluate(CUT_OR_BROKEN)


@pytest.fixture
def served_with_a_dog_classifier(tiny_root, tmp_path):
    """The app with CIFAR10_MODEL a classifier whose recorded test predictions are all "dog"."""
    from training.datasets import load_cifar10

    model = dog_classifier(tmp_path / "dogs", load_cifar10("test", tiny_root, download=False).labels)
    server, url = serve({"DATA_DIR": str(tiny_root), "CIFAR10_MODEL": str(model)})
    yield url
    server.terminate()
    server.wait(timeout=10)


def test_the_final_cnn_tab_opens_on_the_images_of_its_starting_cell(served_with_a_dog_classifier, tiny_root):
    cats = len(list((tiny_root / "cifar10" / "test" / "cat").iterdir()))
    with browser_page(served_with_a_dog_classifier) as page:
        page.get_by_role("tab", name="Final CNN").click()
        expect(visible(page.get_by_text(f"{cats} test images of a cat called dog."))).to_have_count(1, timeout=30_000)
        cell = visible(page.locator(".block", has=page.get_by_text("Test images in this cell", exact=True)))
        expect(cell.locator("img")).to_have_count(cats)


def test_the_first_train_on_a_host_without_data_or_network_shows_the_instructions_in_full(served_without_data, tmp_path):
    shots = Path(os.environ.get("CNNLAB_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with browser_page(served_without_data) as page:
        page.get_by_role("tab", name="Batch normalization").click()
        visible(page.get_by_role("button", name="Train")).click()
        # The reason reads as text, <urlopen error …> and all, and the instructions follow it.
        reason = visible(page.get_by_text(re.compile(r"download failed: <urlopen error .*Connection refused>"))).first
        reason.wait_for(timeout=60_000)
        expect(visible(page.get_by_text(re.compile(r"Set DATA_DIR to the folder that holds it")))).not_to_have_count(0)
        # A refused run trained nothing: no arm of the results is left "training…".
        results = visible(page.locator("table", has=page.locator("th", has_text="this run"))).first
        cells = texts(results.locator("tbody td"))
        assert cells and not [c for c in cells if "training…" in c]
        page.wait_for_timeout(500)  # the toast's entrance
        page.screenshot(path=shots / "first-click-offline.png", full_page=False)
        # The confusion cell the Final CNN tab starts at says why it shows no images.
        page.get_by_role("tab", name="Final CNN").click()
        expect(visible(page.get_by_text("No test images to show yet."))).to_have_count(1)


def test_on_zerogpu_a_refused_run_says_why_and_the_cpu_is_one_click_away(tiny_root, torch_home):
    """The app on ZeroGPU, under the real `spaces` package with its device API simulated here
    (tests/zerogpu_device.py), for a visitor whose GPU quota is used up."""
    root = Path(__file__).parent.parent
    zerogpu_device.answer = "quota"
    server, url = serve({"DATA_DIR": str(tiny_root), "TORCH_HOME": str(torch_home), "PYTHONPATH": os.pathsep.join([STAND_IN_WEIGHTS_PATH, str(root)]), **zerogpu_device.serve()})
    try:
        with browser_page(url) as page:
            page.get_by_role("tab", name="Momentum").click()
            visible(page.get_by_role("button", name="Train")).click()
            visible(page.get_by_text(re.compile("ZeroGPU said: Space app has reached its GPU limit"))).first.wait_for(timeout=30_000)
            visible(page.get_by_role("button", name="Use the CPU instead (quick preset)")).click()
            visible(page.get_by_text("Done on")).wait_for(timeout=90_000)
            expect(visible(page.get_by_text("Verdict:"))).to_have_count(1)
    finally:
        server.terminate()
        server.wait(timeout=10)
