"""CI's check of the Space recipe: `python app.py` as a fresh Space starts it, in a Python with
only requirements.txt installed, offline (HF_HUB_OFFLINE=1, and run by .ci/run without a
network), with no DATA_DIR and an empty cache. It checks that the page serves (and says how long
that took), that the reference runs are drawn before anyone trains, and that a Train click
answers with the readable instructions for getting the data.

    python .ci/space_check.py
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from gradio_client import Client

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="space-check-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "CIFAR10_MODEL", "ANTS_BEES_MODEL")}
    env |= {"HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "CNNLAB_CACHE": str(home / "cache"), "HOME": str(home)}
    started = time.monotonic()
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if app.poll() is not None:
                print(app.stdout.read())
                raise SystemExit("the app exited before serving")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - started > 120:
                raise SystemExit("the page did not serve within 120 s")
            time.sleep(0.05)
        print(f"page served: HTTP 200 {time.monotonic() - started:.1f} s after `python app.py` started")

        config = httpx.get(f"{url}config", timeout=10).text
        assert " · reference" in config, "the reference runs are not drawn on the opening page"
        print("reference runs: drawn on the opening page")

        outputs = Client(url, verbose=False).predict(api_name="/compare_batchnorm")
        status = next(o for o in outputs if isinstance(o, str) and o.startswith("**Cannot train yet.**"))
        for needed in ("CIFAR-10 was not found", "cifar-10-batches-py", "Set DATA_DIR", "download failed: &lt;urlopen error"):
            assert needed in status, f"the status lacks {needed!r}: {status}"
        print(f"Train without data: the status reads\n  {status[:400]}")
        return 0
    finally:
        app.terminate()
        app.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
