"""Upload-to-label latency of both classifiers, in process and through the running app, and the
app's cold start (process start to the first HTTP 200).

    python benchmarks/answers.py [--requests 50]

The classifiers are the report's full final CNN and AlexNet with a 2-class head, saved with
`save_pretrained` and loaded through CIFAR10_MODEL / ANTS_BEES_MODEL exactly as a Space loads
them. Their weights are random (this machine cannot download trained ones); latency does not
depend on the values of the weights. The upload is a 640×480 JPEG photo-sized file.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from models import AlexNetTransfer, create_model


def percentiles(seconds: list[float]) -> str:
    ms = sorted(1000 * s for s in seconds)
    return f"p50 {statistics.median(ms):.0f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.0f} ms (n={len(ms)})"


def timed(call, requests: int) -> list[float]:
    call()  # warm-up: first-touch allocations, thread pools
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-answers-"))
    create_model("cnn-final").save_pretrained(folder / "cifar10")
    AlexNetTransfer(mode="fine_tuning").save_pretrained(folder / "ants-bees")
    photo = folder / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(photo, quality=90)
    os.environ["CIFAR10_MODEL"] = str(folder / "cifar10")
    os.environ["ANTS_BEES_MODEL"] = str(folder / "ants-bees")

    from demo.tabs import final_cnn, transfer

    print("in process (the tab's handler: open, convert, classify; CIFAR-10 also draws filters and feature maps)")
    print("  classify_cifar10  :", percentiles(timed(lambda: final_cnn.classify_cifar10(str(photo)), args.requests)))
    print("  classify_ants_bees:", percentiles(timed(lambda: transfer.classify_ants_bees(str(photo)), args.requests)))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        print(f"cold start (python app.py to the first HTTP 200, both classifiers loaded): {time.perf_counter() - start:.1f} s")
        from gradio_client import Client, handle_file

        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        print("through the app with gradio_client (upload, queue, answer)")
        print("  /classify_cifar10  :", percentiles(timed(lambda: client.predict(handle_file(str(photo)), api_name="/classify_cifar10"), args.requests)))
        print("  /classify_ants_bees:", percentiles(timed(lambda: client.predict(handle_file(str(photo)), "fine tuning", api_name="/classify_ants_bees"), args.requests)))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
