"""Time to see the result: each concept tab's `quick` comparison, run by its handler in process.

    DATA_DIR=/path/to/data python benchmarks/time_to_result.py

For each tab: seconds from the click to the first plotted point and to the last update. The
first tab runs with nothing cached (an empty CNNLAB_CACHE and no decoded data in memory, so the
first point waits for CIFAR-10 to be decoded); then a second first-point time with the data
cached, and every tab's full run with the data cached.
"""

import os
import tempfile
import time

os.environ["CNNLAB_CACHE"] = tempfile.mkdtemp(prefix="cnnlab-cold-")  # before training.sources reads it

from app import TABS  # noqa: E402
from demo.tabs import momentum  # noqa: E402
from demo.lesson import lesson_tabs  # noqa: E402
from training import datasets  # noqa: E402

# The lesson tabs that train on CIFAR-10 (Transfer learning needs AlexNet's ImageNet weights).
CIFAR10_TABS = {tab.title: tab.handler for tab in lesson_tabs(TABS) if tab.experiment.base["quick"].dataset == "cifar10"}


def first_point(handler) -> float:
    """Seconds to the first update that carries a plotted point; then stop the run."""
    start = time.perf_counter()
    updates = handler()
    for outputs in updates:
        table = outputs[2]
        if len(table) and table["train time (s)"].max() > 0:
            updates.close()
            return time.perf_counter() - start
    raise RuntimeError("the run ended without a point")


def full_run(handler) -> float:
    start = time.perf_counter()
    for _ in handler():
        pass
    return time.perf_counter() - start


def main() -> None:
    print(f"first point, nothing cached (decode included): {first_point(momentum.TAB.handler):.1f} s")
    print(f"first point, data cached in memory:            {first_point(momentum.TAB.handler):.2f} s")
    datasets._cache.clear()
    print(f"first point, data cached on disk only:         {first_point(momentum.TAB.handler):.2f} s")
    for name, handler in CIFAR10_TABS.items():
        print(f"{name:<24} first point {first_point(handler):5.2f} s, last update {full_run(handler):5.1f} s", flush=True)


if __name__ == "__main__":
    main()
