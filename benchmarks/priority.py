"""How to keep classification instant while the server trains: each way of making training give
way, measured through the app under the classroom's load.

    DATA_DIR=/path/to/data python benchmarks/priority.py [--classifiers 5] [--options ...]

For each option, one `python app.py` (the weak host: 2 cores, AVX2 kernels, fp32, no run cache, no
warm-up) trains one small Momentum comparison (1 epoch of 1,000 images, a seed of its own), while `--classifiers`
gradio_client sessions classify CIFAR-10 test photos in a loop, each sending the next photo the
moment the last answer arrives (benchmarks/classroom.py's classifying students, each a process of
its own over plain HTTP). Reported: the
classification p50 and p95, the answers given, and the seconds from Train to the run's last update
(a run not done after `--give-up-after` seconds is cancelled and reported so). The option `alone`
trains with nobody classifying: the training's own time.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from gradio_client import Client

sys.path.insert(0, str(Path(__file__).parent))
import classroom as bench  # noqa: E402  (benchmarks/classroom.py: its server, photos and loops)

def in_the_trainer(statement: str) -> str:
    """Code that runs `statement` first in the classroom's trainer thread, and lets it train with
    nothing else giving way."""
    return (
        "import os, threading, torch\n"
        "c.GIVE_WAY_SHARE = 0\n"
        "train_forever = c.Classroom._train_forever\n"
        f"def first(self):\n    {statement}\n    train_forever(self)\n"
        "c.Classroom._train_forever = first"
    )


# The trainer as it gave way before: whenever a photo was being classified, for up to 1 s a step.
UP_TO_A_SECOND = (
    "def up_to_a_second(self, step_s):\n"
    "    with self._no_answers:\n"
    "        self._no_answers.wait_for(lambda: not self._answers, timeout=1.0)\n"
    "c.Classroom._give_way = up_to_a_second"
)

# What each option changes in the server before it starts (serving.classroom: the trainer thread, and
# GIVE_WAY_SHARE, the most of its time the trainer waits between two steps while a photo is classified).
OPTIONS = {
    "alone": "",
    "no training": "",  # the students classify for NO_TRAINING_S with nothing training: the floor
    "nothing gives way": "c.GIVE_WAY_SHARE = 0",
    "trainer at niceness 10": in_the_trainer("os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)"),
    "trainer at niceness 19": in_the_trainer("os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)"),
    # The trainer keeps one core to itself; answers have the other.
    "one intra-op thread for the trainer": in_the_trainer("torch.set_num_threads(1)"),
    "the trainer waits up to 1 s a step while a photo is classified (before)": UP_TO_A_SECOND,
    "the trainer gives way for at most a tenth of its time (chosen)": "",
    "the trainer gives way for at most a quarter of its time": "c.GIVE_WAY_SHARE = 1 / 4",
    "the trainer gives way for at most a third of its time": "c.GIVE_WAY_SHARE = 1 / 3",
    "the trainer gives way for at most half its time": "c.GIVE_WAY_SHARE = 1 / 2",
}
SEED = 7  # a run nobody else asks for, the same under every option
NO_TRAINING_S = 60


def decoded_cache() -> str:
    """A CNNLAB_CACHE holding CIFAR-10 decoded, shared by every option's server (its run cache off):
    each Train then times the training, not the first decode of 60,000 images."""
    folder = tempfile.mkdtemp(prefix="cnnlab-priority-decoded-")
    subprocess.run([sys.executable, "-c", "from training.datasets import load_splits; load_splits('cifar10')"], cwd=bench.ROOT, env={**os.environ, "CNNLAB_CACHE": folder}, check=True)
    return folder


def measure(option: str, classifiers: int, photos: list[Path], give_up_after_s: float, cache: str) -> dict:
    port = bench.free_port()
    scratch = tempfile.mkdtemp(prefix="cnnlab-priority-")
    env = {**os.environ, **bench.WEAK_HOST, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "CNNLAB_CACHE": cache, "CNNLAB_RUN_CACHE_MB": "0", "CNNLAB_WARM": "0", "HF_HUB_OFFLINE": "1"}
    code = f"import serving.classroom as c\n{OPTIONS[option]}\n{bench.SERVER}"
    server = subprocess.Popen([sys.executable, "-c", code], cwd=bench.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(Path(scratch) / "server.log", "w"))
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"the server did not start; see {scratch}/server.log")
                time.sleep(0.5)
        classifying = bench.Classifying(url, photos, classifiers if option != "alone" else 0, time.monotonic())
        time.sleep(8)  # the students are answering before Train is pressed
        if option == "no training":
            time.sleep(NO_TRAINING_S)
            latencies, errors = classifying.stop()
            return summary(option, latencies, errors, None)
        clicked = time.perf_counter()
        job = Client(url, verbose=False).submit(**bench.SOAK_SETTINGS, seed=SEED, api_name="/compare_momentum")
        while not job.done() and time.perf_counter() - clicked < give_up_after_s:
            time.sleep(0.2)
        trained_s = time.perf_counter() - clicked if job.done() else None
        job.cancel()
        latencies, errors = classifying.stop()
    finally:
        server.terminate()
        server.wait(30)
    return summary(option, latencies, errors, trained_s)


def summary(option: str, latencies: list[float], errors: list[str], trained_s: float | None) -> dict:
    latencies = sorted(latencies)
    p95 = latencies[round(0.95 * (len(latencies) - 1))] if latencies else None
    return {"option": option, "answers": len(latencies), "p50_s": statistics.median(latencies) if latencies else None, "p95_s": p95, "errors": len(errors), "training_s": trained_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifiers", type=int, default=5)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--give-up-after", type=float, default=240)
    args = parser.parse_args()
    random.seed(0)
    photos = sorted((Path(os.environ["DATA_DIR"]) / "cifar10" / "test").glob("*/*.jpg"))[::100]
    print("| option | answers | classification p50 | p95 | errors | Train to last update |")
    print("| --- | --- | --- | --- | --- | --- |")
    cache = decoded_cache()
    for option in args.options:
        r = measure(option, args.classifiers, photos, args.give_up_after, cache)
        p50, p95 = (f"{r[k]:.2f} s" if r[k] is not None else "—" for k in ("p50_s", "p95_s"))
        trained = "—" if option == "no training" else f"{r['training_s']:.0f} s" if r["training_s"] is not None else f"not done after {args.give_up_after:.0f} s"
        print(f"| {option} | {r['answers']} | {p50} | {p95} | {r['errors']} | {trained} |", flush=True)


if __name__ == "__main__":
    main()
