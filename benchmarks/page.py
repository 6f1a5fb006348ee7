"""Each tab as a student meets it, on a phone (400×850) and a laptop (1400×1000), in Chromium:

    python benchmarks/page.py [--url http://127.0.0.1:7860/] [--shots docs/screenshots/after]

prints, per tab and width, the page's height, Train's distance from the page's top (Final CNN: the
photo's), the words of visible text before it (prose, hints and control labels; not tables, plots
or buttons), the long texts under 14 px or 4.5:1 contrast and any deployment words shown (the
measure is tests/page_reading.py, which the browser test holds to its limits), and keeps a
full-page screenshot of each. Without --url it serves `python app.py` itself.
"""

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from page_reading import reading  # noqa: E402

WIDTHS = ((400, 850), (1400, 1000))


def serve() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        try:
            urllib.request.urlopen(url, timeout=1)
            return server, url
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the app did not answer in 3 minutes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--shots", type=Path, help="keep a full-page screenshot of each tab and width here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from app import TABS

    server, url = (None, args.url) if args.url else serve()
    print("| tab | width | page height (px) | Train at (px) | words before Train | long texts small or faint | deployment words |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            for width, height in WIDTHS:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url)
                for tab in TABS:
                    page.get_by_role("tab", name=tab.title).click()
                    page.wait_for_timeout(1500)  # its plots draw
                    seen = reading(page, tab.title)
                    faint = "; ".join(seen["faint"]) or "none"
                    print(f"| {tab.title} | {width} | {seen['height']:,} | {seen['start']:,.0f} | {seen['words']} | {faint} | {', '.join(seen['deployment']) or 'none'} |", flush=True)
                    if args.shots:
                        args.shots.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=args.shots / f"{tab.title.lower().replace(' ', '-')}-{width}.png", full_page=True)
                page.close()
            browser.close()
    finally:
        if server:
            server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
