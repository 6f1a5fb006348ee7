"""A classroom at once: thirty gradio_client sessions against one `python app.py`.

    DATA_DIR=/path/to/data TORCH_HOME=/path/to/torch-home python benchmarks/classroom.py --cache on --soak 50
    DATA_DIR=... TORCH_HOME=... python benchmarks/classroom.py --cache off

The server runs as the weakest host we target: 2 cores, AVX2 kernels and fp32 (a host without native
bf16: the emulation sets ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 and tells the engine that
bf16 is not native). With `--cache on` it starts with an empty cache and CNNLAB_WARM=1, and the class
arrives once the warm-up has trained every tab's defaults (the time it took is reported); with
`--cache off` (CNNLAB_RUN_CACHE_MB=0) every click trains.

Within one minute, at random moments, 30 students act:
- 20 click Train on a random tab with its defaults;
- 5 click Train on a random tab with a seed of their own (a run nobody else asks for);
- 5 classify CIFAR-10 test photos in a loop until every training has ended, each in a process of its
  own over plain HTTP, as the page asks (upload, answer, every picture downloaded).
Reported per group: seconds from the click to the first update holding a point of this run's curves
(the Depth tab: a finished cell) and to the last update; the classification p50 and p95; every
error; the server's resident memory. `--soak N` then runs N small trainings one after another (a
new seed each, so each trains) and reports the memory after the first and after the last.
"""

import argparse
import json
import math
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import httpx
from gradio_client import Client

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
from app import TABS as APP_TABS  # noqa: E402
from demo.lesson import lesson_tabs  # noqa: E402
from demo.views import REFERENCE_TAG  # noqa: E402

WEAK_HOST = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# The app as a host without native bf16 runs it: `precision=auto` then resolves to fp32.
SERVER = "import runpy, training.devices as devices; devices.native_bf16 = lambda device: False; runpy.run_path('app.py', run_name='__main__')"
TABS = [f"/{tab.api_name}" for tab in lesson_tabs(APP_TABS)]
# The shared settings' positions after each tab's own inputs, and those inputs' defaults.
OWN_INPUTS = {f"/{tab.api_name}": [list(p.default) if isinstance(p.default, tuple) else p.default for p in tab.own_parameters] for tab in lesson_tabs(APP_TABS)}
ARRIVALS_S = 60  # the class clicks within this minute (--arrivals)
SOAK_SETTINGS = {"epochs": 1, "n_train": 1000}  # a small momentum run, a few seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def has_point(api_name: str, outputs) -> bool:
    """Whether an update holds a point of this run: a live row of the loss curve, or (Depth, whose
    heatmaps fill in cell by cell) a finished cell, an accuracy in the table's "this run" column."""
    if api_name == "/depth_grid":
        table = outputs[2]
        column = table["headers"].index("this run")
        return any(str(row[column]).endswith("%") for row in table["data"])
    plot = outputs[0]  # the loss curves: (epoch, loss, arm) rows, a NaN row holding each series' colour
    if not isinstance(plot, dict) or not plot.get("data"):
        return False
    return any(not str(arm).endswith(REFERENCE_TAG) and isinstance(loss, float) and math.isfinite(loss) for _, loss, arm in plot["data"])


def status_of(outputs) -> str:
    return next((o for o in outputs if isinstance(o, str) and not o.endswith((".zip", ".json"))), "")


def train(url: str, api_name: str, seed: int, records: list, start_at: float, give_up_at: float) -> None:
    time.sleep(max(0.0, start_at - time.monotonic()))
    record = {"tab": api_name, "seed": seed, "first_point_s": None, "last_s": None, "error": None, "replayed": False, "unfinished": False}
    try:
        client = Client(url, verbose=False)
        clicked = time.perf_counter()
        # Every input the page's default, but the seed of a student's own run.
        job = client.submit(api_name=api_name, **({"seed": seed} if seed else {}))
        status = ""
        for outputs in job:
            if time.monotonic() > give_up_at:  # still waiting or training: counted as unfinished
                record["unfinished"] = True
                job.cancel()
                break
            if not isinstance(outputs, tuple | list):
                continue
            if record["first_point_s"] is None and has_point(api_name, outputs):
                record["first_point_s"] = time.perf_counter() - clicked
            status = status_of(outputs) or status
        if record["unfinished"]:
            records.append(record)
            return
        job.result()  # raises the server's error, if any
        record["last_s"] = time.perf_counter() - clicked
        record["replayed"] = "replayed" in status
        if not status.startswith("Done"):
            record["error"] = f"ended with status {status[:120]!r}"
    except Exception as error:  # every failure is counted, none stops the others
        record["error"] = f"{type(error).__name__}: {error}"[:300]
    records.append(record)
    print(f"  {api_name} seed {seed}: first point {record['first_point_s']}, last {record['last_s']}, error {record['error']}{', unfinished' if record['unfinished'] else ''}", file=sys.stderr, flush=True)


def answer(client: httpx.Client, photo: Path, session: str) -> None:
    """One photo classified as the page asks for it, in the browser session `session`: uploaded,
    answered through Gradio's queue, and every picture of the answer downloaded."""
    with open(photo, "rb") as file:
        path = client.post("gradio_api/upload", files={"files": (photo.name, file, "image/jpeg")}).raise_for_status().json()[0]
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, "default model"]
    call = client.post("gradio_api/call/classify_cifar10", json={"data": data, "session_hash": session})
    lines = client.get(f"gradio_api/call/classify_cifar10/{call.raise_for_status().json()['event_id']}").text.splitlines()
    events = [line for line in lines if line.startswith("event:")]
    if not events or events[-1] != "event: complete":
        raise RuntimeError(f"the answer ended with {events[-1:] or lines[:3]}")
    outputs = json.loads([line for line in lines if line.startswith("data:")][-1][len("data:"):])
    for output in outputs:
        if isinstance(output, dict) and output.get("url"):
            client.get(output["url"]).raise_for_status()


def classify_loop(url: str, photos: list[Path], answers: multiprocessing.Queue, done, start_at: float) -> None:
    """A student classifying photos one after another, in a process of its own (a student's browser
    is another machine: in the load's own process, the trainers' streams would hold its GIL) and over
    plain HTTP (gradio_client costs several times the server's own CPU per answer, on the same two
    cores). Puts its (seconds of each answer, errors) once `done` is set."""
    time.sleep(max(0.0, start_at - time.monotonic()))
    latencies, errors = [], []
    session = f"student-{os.getpid()}"  # one page: Gradio makes a session's state at its first request
    with httpx.Client(base_url=url, timeout=120) as client:
        while not done.is_set():
            photo = random.choice(photos)
            started = time.perf_counter()
            try:
                answer(client, photo, session)
                latencies.append(time.perf_counter() - started)
            except Exception as error:
                errors.append(f"classify: {type(error).__name__}: {error}"[:300])
    answers.put((latencies, errors))


class Classifying:
    """`count` classifying students, each a process forked now, answering from `start_at` (a
    time.monotonic, the machine's clock) until `stop()`, which returns their (latencies, errors)."""

    def __init__(self, url: str, photos: list[Path], count: int, start_at: float):
        fork = multiprocessing.get_context("fork")  # before the load's own threads start
        self.answers, self.done = fork.Queue(), fork.Event()
        self.processes = [fork.Process(target=classify_loop, args=(url, photos, self.answers, self.done, start_at + random.uniform(0, 5))) for _ in range(count)]
        for process in self.processes:
            process.start()

    def stop(self) -> tuple[list[float], list[str]]:
        self.done.set()
        latencies, errors = [], []
        for _ in self.processes:  # read before joining: a process ends once what it put is read
            mine, theirs = self.answers.get()
            latencies += mine
            errors += theirs
        for process in self.processes:
            process.join()
        return latencies, errors


def summary(values: list[float]) -> str:
    if not values:
        return "—"
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"median {statistics.median(values):.1f} s, max {values[-1]:.1f} s" if len(values) < 20 else f"p50 {statistics.median(values):.2f} s, p95 {p95:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", choices=["on", "off"], default="on")
    parser.add_argument("--soak", type=int, default=0, help="small trainings one after another after the class")
    parser.add_argument("--seed", type=int, default=0, help="of the class's random choices")
    parser.add_argument("--defaults", type=int, default=20, help="students who click a tab's defaults")
    parser.add_argument("--own", type=int, default=5, help="students who train a seed of their own")
    parser.add_argument("--classifiers", type=int, default=5, help="students who classify photos in a loop")
    parser.add_argument("--arrivals", type=float, default=ARRIVALS_S, help="seconds within which the clicks come")
    parser.add_argument("--give-up-after", type=float, default=3600, help="seconds after the class starts at which a click still waiting or training is cancelled and counted as unfinished")
    parser.add_argument("--one-after-another", action="store_true", help="each click waits for the one before it to end, on an otherwise idle server (the own clicks' time alone)")
    parser.add_argument("--tabs", nargs="+", default=TABS, choices=TABS, help="the tabs students pick from")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON")
    parser.add_argument("--cache-dir", type=Path, help="a CNNLAB_CACHE an earlier --cache on run warmed (its folder is printed): the warm-up replays every default from it")
    args = parser.parse_args()
    random.seed(args.seed)
    data = Path(os.environ["DATA_DIR"])
    photos = sorted((data / "cifar10" / "test").glob("*/*.jpg"))[::100]
    port = free_port()
    cache = str(args.cache_dir) if args.cache_dir else tempfile.mkdtemp(prefix="cnnlab-classroom-")
    env = {
        **os.environ, **WEAK_HOST, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "CNNLAB_CACHE": cache,
        "CNNLAB_RUN_CACHE_MB": "2048" if args.cache == "on" else "0", "CNNLAB_WARM": "1" if args.cache == "on" and args.defaults + args.own else "0", "HF_HUB_OFFLINE": "1",
    }
    server = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(Path(cache) / "server.log", "w"))
    url = f"http://127.0.0.1:{port}/"
    report: dict = {"cache": args.cache, "memory_mb": {}}
    try:
        booted = time.monotonic()
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() - booted > 120:
                    raise SystemExit(f"the server did not start; see {cache}/server.log")
                time.sleep(0.5)
        if args.cache == "on" and args.defaults + args.own:
            runs = Path(cache) / "runs"
            while len([p for p in runs.glob("*") if not p.name.startswith(".")]) < len(args.tabs):  # the warm-up trains every tab; the class's tabs must be there
                if time.monotonic() - booted > 1800:
                    raise SystemExit("the warm-up did not finish in 30 minutes")
                time.sleep(2)
            report["warm_up_s"] = round(time.monotonic() - booted, 1)
            report["cache_dir"] = cache
            print(f"warm-up: every tab's defaults trained and cached {report['warm_up_s']} s after start", flush=True)
        report["memory_mb"]["before the class"] = round(rss_mb(server.pid))

        records: list[dict] = []
        peak = [0.0]
        done = threading.Event()

        def sample_memory() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(server.pid))
                time.sleep(1)

        begin = time.monotonic() + 5
        # The own clicks draw from a generator of their own: the same --seed picks the same runs with
        # or without the default clicks, so that --one-after-another times the class's own runs alone.
        own = random.Random(f"own clicks {args.seed}")
        students = [("default", random.choice(args.tabs), 0) for _ in range(args.defaults)] + [("own", own.choice(args.tabs), own.randint(1, 10**6)) for _ in range(args.own)]
        trainers = [threading.Thread(target=train, args=(url, tab, seed, records, begin + random.uniform(0, args.arrivals), begin + args.give_up_after)) for _, tab, seed in students]
        classifying = Classifying(url, photos, args.classifiers, begin)
        threading.Thread(target=sample_memory, daemon=True).start()
        if args.one_after_another:
            for _, tab, seed in students:
                train(url, tab, seed, records, time.monotonic(), time.monotonic() + args.give_up_after)
        else:
            for thread in trainers:
                thread.start()
            for thread in trainers:
                thread.join()
        done.set()
        latencies, errors = classifying.stop()
        report["class_s"] = round(time.monotonic() - begin, 1)
        report["memory_mb"]["peak during the class"] = round(peak[0])
        report["memory_mb"]["after the class"] = round(rss_mb(server.pid))
        for group, seeded in (("default", False), ("own", True)):
            mine = [r for r in records if bool(r["seed"]) == seeded]
            report[group] = {
                "clicks": len(mine),
                "replayed": sum(r["replayed"] for r in mine),
                "first_point_s": sorted(round(r["first_point_s"], 1) for r in mine if r["first_point_s"] is not None),
                "last_s": sorted(round(r["last_s"], 1) for r in mine if r["last_s"] is not None),
                "errors": [f"{r['tab']}: {r['error']}" for r in mine if r["error"]],
                "unfinished": sum(r["unfinished"] for r in mine),
                "runs": [{"tab": r["tab"], "seed": r["seed"], "last_s": r["last_s"] and round(r["last_s"], 1)} for r in mine],
            }
            print(
                f"{group} clicks ({len(mine)}, {report[group]['replayed']} replayed, {report[group]['unfinished']} unfinished after {args.give_up_after:.0f} s): "
                f"first point {summary(report[group]['first_point_s'])}; last update {summary(report[group]['last_s'])}; errors {len(report[group]['errors'])}",
                flush=True,
            )
        report["classify"] = {"calls": len(latencies), "p50_s": round(statistics.median(latencies), 3) if latencies else None, "p95_s": round(sorted(latencies)[round(0.95 * (len(latencies) - 1))], 3) if latencies else None, "errors": errors}
        print(f"classification while training: {len(latencies)} calls, {summary(latencies)}, errors {len(errors)}", flush=True)

        if args.soak:
            client = Client(url, verbose=False)
            soak = []
            for n in range(args.soak):
                job = client.submit(**SOAK_SETTINGS, seed=1000 + n, api_name="/compare_momentum")
                job.result()
                soak.append(rss_mb(server.pid))
            report["soak"] = {"runs": args.soak, "rss_after_first_mb": round(soak[0]), "rss_after_last_mb": round(soak[-1]), "growth": round(soak[-1] / soak[0] - 1, 4), "max_mb": round(max(soak))}
            print(f"soak: {args.soak} runs, RSS {soak[0]:.0f} MB after the first, {soak[-1]:.0f} MB after the last ({soak[-1] / soak[0] - 1:+.1%}), max {max(soak):.0f} MB", flush=True)
        print(f"server memory: {report['memory_mb']}", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
