"""The ZeroGPU path under the real `spaces` package, as on a Space: its device API simulated
(tests/zerogpu_device.py), its worker forked for every call. Every training handler goes through
one GPU call priced from its request; nothing touches CUDA outside it; a granted run streams to
its end with its progress; each of ZeroGPU's refusals says why and offers the CPU; a crash on the
GPU is not a refusal; Stop reports what the app's process received and stops the worker.

The scenarios run in one fresh interpreter (`spaces` reads its settings and patches torch at
import), each in turn, and print what they saw for the tests below to check."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

SESSION = r"""
import inspect
import itertools
import json
import os
import signal
import threading
import time
import zipfile

import zerogpu_device as device

os.environ.update(device.serve())
import spaces  # the real package: on "ZeroGPU" it patches torch so that CUDA cannot start here

device.simulate_gpu()
import gradio as gr
import torch
from gradio.context import LocalContext
from PIL import Image
from spaces.zero.decorator import decorated_cache

import app
from demo import gpu, panel
from demo.tabs import batchnorm, momentum, your_images
from demo.lesson import lesson_tabs
from demo.views import REFERENCE_TAG
from training.engine import Arm

MAIN = os.getpid()
app.load_classifiers()
built = app.build_app()  # the whole UI is built without touching CUDA
handlers = [tab.handler for tab in lesson_tabs(app.TABS)] + [your_images.train_your_images]
out = {"wrapped": sorted({f.__qualname__ for f in decorated_cache}), "handlers": len(handlers), "default_preset": panel.DEFAULT_PRESET, "queue_max_size": built._queue.max_size, "analytics_every": built._queue.ANAYLTICS_CACHE_FREQUENCY}

# What a training step does in the worker (a forked copy of this process): "slow" makes the run
# last long enough to stop; "oom" raises CUDA's out-of-memory error; "kill" kills the worker.
trouble = None
real_step = Arm.train_step
taken = itertools.count(1)  # steps taken in a worker (each worker counts from this process's 1)

def step(self, *args, **kwargs):
    if os.getpid() != MAIN and trouble:
        time.sleep(0.05)
        if trouble == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if trouble == "kill" and next(taken) >= 20:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_step(self, *args, **kwargs)

Arm.train_step = step

def request(headers=None):
    # As Gradio hands it to the handler and to `spaces` (which reads it from Gradio's context).
    made = gr.Request(session_hash="student", headers={"x-gradio-user": "app"} if headers is None else headers)
    LocalContext.request.set(made)
    return made

progress = []

def run(handler, *args, headers=None, **settings):
    # By position, as Gradio passes a handler's arguments, progress and request included.
    record = lambda share, desc=None: progress.append(share)
    call = inspect.signature(handler).bind(*args, **settings, progress=record, request=request(headers))
    call.apply_defaults()
    return list(handler(*call.args))

def refused(handler, *args, **settings):
    try:
        run(handler, *args, **settings)
    except gpu.GpuRefused as error:
        return {"message": error.message, "offered": panel.offer_cpu(request(settings.get("headers")))["visible"], "traceback_logged": error.print_exception}
    return None

TINY = dict(epochs=1, n_train=160, batch_size=32)
with zipfile.ZipFile("photos.zip", "w") as archive:
    for name, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        for i in range(5):
            Image.new("RGB", (64, 64), colour).save(f"{name}{i}.png")
            archive.write(f"{name}{i}.png", f"{name}/{i}.png")

# Every handler's defaults, priced: the duration each asks ZeroGPU for (then refused).
device.answer = "quota"
out["durations"] = {}
for handler in handlers:
    refused(handler, *(["photos.zip"] if handler is your_images.train_your_images else []))
    out["durations"][handler.__name__] = int([q for p, q in device.calls if p == "/schedule"][-1]["durationSeconds"])
out["duration_factor"] = gpu.duration_factor()
out["report_momentum"] = gpu.gpu_seconds(panel.lesson_arms(momentum.TAB, preset="report"))

# Granted: the run streams to its end in a forked worker, with its progress from the yields.
device.answer = "grant"
device.calls.clear()
progress.clear()
updates = run(batchnorm.TAB.handler, **TINY)
out["granted"] = {"status": updates[-1][3], "progress": progress[:], "pids": device.allowed_pids(), "main": MAIN, "released": device.released()}

# Runs trained on the GPU reach the class record through what the call yields: three seeds of one setting.
for seed in (1, 2, 3):
    *_, status, session, _, _ = run(momentum.TAB.handler, **{**TINY, "n_train": 192, "seed": seed})[-1]
note, board, words = panel.after_run(momentum.TAB.experiment, "no momentum", session)
out["class"] = {"status": status, "words": words, "board": board["visible"], "note": note}

# Refused, in each of ZeroGPU's wordings.
ip = device.ip_token()
WHO = {
    "anonymous, no token": {"x-gradio-user": "app"},
    "anonymous": {"x-gradio-user": "app", "x-ip-token": ip},
    "free": {"x-gradio-user": "app", "x-ip-token": ip},
    "PRO": {"x-gradio-user": "app", "x-ip-token": ip},
    "API caller": {"x-ip-token": ip},
}
AUTH = {"free": "regular", "PRO": "pro", "API caller": "regular"}
out["quota"] = {}
device.answer = "quota"
for who, headers in WHO.items():
    device.auth = AUTH.get(who)
    out["quota"][who] = refused(momentum.TAB.handler, headers=headers, **TINY)
device.auth = None
for answer in ("illegal-duration", "queue-timeout", "unavailable"):
    device.answer = answer
    out[answer] = refused(momentum.TAB.handler, headers={"x-gradio-user": "app", "x-ip-token": ip}, **TINY)

# Then the CPU: it trains on this process's CPU without asking ZeroGPU.
device.calls.clear()
out["cpu_status"] = run(momentum.TAB.cpu_handler, **TINY)[-1][3]
out["cpu_schedules"] = len([p for p, _ in device.calls if p == "/schedule"])

# Failures on the GPU: out of memory at the first step, and a worker that dies mid-run.
device.answer = "grant"
for kind in ("oom", "kill"):
    trouble = kind
    device.calls.clear()
    try:
        updates = run(momentum.TAB.handler, epochs=2, n_train=640, batch_size=32)
        last = updates[-1]
        loss = last[0]  # the loss curves' rows: this run's, and the reference run's (its arms tagged)
        points = int(loss[~loss["arm"].str.endswith(REFERENCE_TAG)]["train loss"].notna().sum())
        out[kind] = {"status": last[3], "points": points, "offered": panel.offer_cpu(request())["visible"], "released": device.released()}
    except Exception as error:
        out[kind] = {"raised": f"{type(error).__name__}: {error}"}
trouble = None

# Stop mid-run: the report comes from what this process received, and the worker stops.
trouble = "slow"
device.calls.clear()
stream = momentum.TAB.handler(epochs=3, n_train=640, batch_size=32, progress=lambda *a, **k: None, request=request())
shown = []
started = time.monotonic()
for outputs in stream:
    shown.append(outputs[3])
    if len(shown) == 3:
        _, stop_status = panel.stop_run(request())
out["stop"] = {"report": stop_status, "last": shown[-1], "seconds": time.monotonic() - started, "released": device.released(), "nothing_left": panel.stop_run(request()) == (gr.skip(), gr.skip())}
trouble = None

# Over the largest duration asked for: refused before ZeroGPU is asked.
device.calls.clear()
out["too_long"] = refused(momentum.TAB.handler, preset="report", epochs=30)
out["too_long_schedules"] = len([p for p, _ in device.calls if p == "/schedule"])
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def zerogpu_session(tiny_root, torch_home, tmp_path_factory):
    env = {
        **os.environ,
        "CNNLAB_GRANTED_DEVICE": "cpu",  # this machine's stand-in for the granted GPU
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "stand_in_weights"), str(ROOT / "tests"), str(ROOT)]),
        "DATA_DIR": str(tiny_root),
        "TORCH_HOME": str(torch_home),
        "CNNLAB_CACHE": str(tmp_path_factory.mktemp("zerogpu-cache")),
        "HF_HUB_OFFLINE": "1",
    }
    scratch = tmp_path_factory.mktemp("zerogpu-session")
    done = subprocess.run([sys.executable, "-c", SESSION], cwd=scratch, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT", 1)[1])


def test_every_training_handler_asks_the_one_gpu_call_and_nothing_touches_cuda_outside(zerogpu_session):
    # The session imported the app, loaded the classifiers and built the UI with torch patched by `spaces`.
    assert zerogpu_session["wrapped"] == ["train_granted"]  # one GPU call, which every tab's training goes through
    assert len(zerogpu_session["durations"]) == zerogpu_session["handlers"] == 8
    assert zerogpu_session["default_preset"] == "quick"


def test_gradios_queue_holds_a_class_on_zerogpu(zerogpu_session):
    assert zerogpu_session["queue_max_size"] >= 64  # Gradio's default on a ZeroGPU Space is 1
    assert zerogpu_session["analytics_every"] >= 1000  # not a summary of the last 10,000 events after every answer


def test_durations_are_priced_from_the_request_and_ten_fit_a_free_visitors_quota(zerogpu_session):
    durations, factor = zerogpu_session["durations"], zerogpu_session["duration_factor"]
    assert set(durations) == {"compare_activations", "compare_adaptive_lr", "compare_batchnorm", "depth_grid", "train_final_cnn", "compare_momentum", "train_transfer", "train_your_images"}
    # What `spaces` asks the device API for is the duration times its GPU's factor; a free
    # account's 300 s a day hold ten of every two- or three-arm comparison at its defaults.
    for name in ("compare_activations", "compare_adaptive_lr", "compare_batchnorm", "compare_momentum", "train_transfer"):
        assert 10 * durations[name] <= 300, (name, durations[name])
    assert durations["depth_grid"] > durations["compare_momentum"]  # nine arms cost more than two
    assert zerogpu_session["report_momentum"] * factor > 5 * durations["compare_momentum"]  # the report's 5 epochs × 50,000 images


def test_a_granted_run_streams_to_the_end_in_a_forked_worker_with_its_progress(zerogpu_session):
    granted = zerogpu_session["granted"]
    assert granted["status"].startswith("Done on")
    assert granted["pids"] and all(pid != granted["main"] for pid in granted["pids"])  # the GPU went to a worker process
    assert [r["fail"] for r in granted["released"]] == ["false"]
    # The progress bar follows the yielded updates, in the app's process, to the last step.
    shares = granted["progress"]
    assert len(shares) >= 2 and shares == sorted(shares) and shares[-1] > 0.9


@pytest.mark.parametrize("who", ["anonymous, no token", "anonymous", "free", "PRO", "API caller"])
def test_a_used_up_quota_says_why_and_what_to_do_in_each_wording(zerogpu_session, who):
    refused = zerogpu_session["quota"][who]
    said = {
        "anonymous, no token": "ZeroGPU said: Space app has reached its GPU limit.",
        "anonymous": "ZeroGPU said: You have exceeded your ZeroGPU quota (",
        "free": "ZeroGPU said: You have exceeded your free ZeroGPU quota (",
        "PRO": "ZeroGPU said: You have exceeded your Pro ZeroGPU quota (",
        "API caller": "Subscribe to Hugging Face PRO",
    }[who]
    assert said in refused["message"]
    assert refused["traceback_logged"] is False  # an expected refusal: no traceback in the server's log
    if who == "API caller":  # no button to press: the advice is what a client can do
        assert "Try again once the quota has refilled" in refused["message"] and refused["offered"] is False
    else:
        assert ". Press **Use the CPU instead**" in refused["message"] and refused["offered"] is True


@pytest.mark.parametrize("answer, said", [
    ("illegal-duration", "is larger than the maximum allowed"),
    ("queue-timeout", "No GPU was available after 60s"),
    ("unavailable", "No GPU was available. Press **Use the CPU instead**"),  # the two messages joined as sentences
])
def test_every_scheduling_refusal_offers_the_cpu(zerogpu_session, answer, said):
    refused = zerogpu_session[answer]
    assert said in refused["message"] and "<a " not in refused["message"] and refused["offered"] is True


def test_after_a_refusal_the_cpu_trains_without_asking_for_a_gpu(zerogpu_session):
    assert zerogpu_session["cpu_status"].startswith("Done on") and zerogpu_session["cpu_schedules"] == 0


def test_runs_on_the_gpu_reach_the_class_record_and_the_verdicts_spread(zerogpu_session):
    seen = zerogpu_session["class"]
    assert seen["status"].startswith("Done on") and "In 3 runs at these settings in your class (seeds 1, 2, 3) the gap was" in seen["status"]
    assert seen["board"] is True and seen["words"].startswith("**Your class at these settings:** 3 runs.")
    assert "1 said no momentum; " in seen["words"] and seen["note"].startswith("**Your prediction, no momentum:")


def test_out_of_memory_on_the_gpu_is_a_failure_that_says_what_to_do_not_a_refusal(zerogpu_session):
    oom = zerogpu_session["oom"]
    assert "raised" not in oom, oom
    assert "The GPU ran out of memory" in oom["status"] and "smaller batch size" in oom["status"]
    assert oom["offered"] is False and [r["fail"] for r in oom["released"]] == ["true"]


def test_a_worker_that_dies_mid_run_says_how_long_it_ran_and_keeps_the_curves(zerogpu_session):
    killed = zerogpu_session["kill"]
    assert "raised" not in killed, killed
    assert "ZeroGPU ended this run" in killed["status"] and "s it was granted" in killed["status"]
    assert killed["points"] > 0 and killed["offered"] is False  # the curves drawn before it died stay


def test_stop_on_zerogpu_reports_what_arrived_and_ends_the_worker_run(zerogpu_session):
    stop = zerogpu_session["stop"]
    assert stop["report"].startswith("**Stopped** after") and stop["last"] == stop["report"]
    assert stop["seconds"] < 20  # three epochs of slowed steps would take over a minute
    assert [r["fail"] for r in stop["released"]] == ["false"]  # the worker ended its run and gave the GPU back
    assert stop["nothing_left"]  # a second Stop finds nothing to stop


def test_a_run_longer_than_any_grant_is_refused_before_asking(zerogpu_session):
    assert "more than the" in zerogpu_session["too_long"]["message"] and "s one request may take here" in zerogpu_session["too_long"]["message"]
    assert zerogpu_session["too_long_schedules"] == 0
