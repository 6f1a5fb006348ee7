"""The ZeroGPU path, with a stand-in `spaces` package (tests/standin/spaces): every training
handler is wrapped, asks for a duration priced from its request, never touches CUDA outside the
granted call, and a refusal is a clear message with the CPU one click away.

Each check runs in a fresh interpreter, since the decorators are applied at import."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

SESSION = r"""
import inspect
import json
import zipfile
import spaces  # the stand-in: importing it guards torch.cuda
from PIL import Image

import app
from demo import gpu, momentum, batchnorm, panel, your_images
from demo.lesson import lesson_tabs

app.load_classifiers()
app.build_app()  # the whole UI is built without touching CUDA
handlers = [tab.handler for tab in lesson_tabs(app.TABS)] + [your_images.train_your_images]
out = {"wrapped": sorted(spaces.wrapped), "handlers": len(handlers), "default_preset": panel.DEFAULT_PRESET}

class Request:
    session_hash = "student"

def run(handler, *args, **settings):
    # by position, as Gradio passes a handler's arguments, progress and request included
    call = inspect.signature(handler).bind(*args, **settings, progress=lambda *a, **k: None, request=Request())
    call.apply_defaults()
    return list(handler(*call.args))

with zipfile.ZipFile("photos.zip", "w") as archive:
    for name, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        for i in range(5):
            Image.new("RGB", (64, 64), colour).save(f"{name}{i}.png")
            archive.write(f"{name}{i}.png", f"{name}/{i}.png")

out["durations"] = {}
for handler in handlers:
    spaces.requests.clear()
    try:
        # the defaults' price only: the run itself is refused, as over a visitor's quota
        spaces.quota_left_s = 0
        run(handler, "photos.zip") if handler is your_images.train_your_images else run(handler)
    except gpu.GpuRefused:
        pass
    out["durations"][handler.__name__] = spaces.requests[-1][1]
spaces.quota_left_s = None
out["report_momentum"] = gpu.gpu_seconds(panel.lesson_arms(momentum.TAB, preset="report"))
# A granted run trains (on the CPU here) and streams to the end.
updates = run(batchnorm.TAB.handler, epochs=1, n_train=160, batch_size=32)
out["granted_status"] = updates[-1][3]
# Refused: the message says why and what to do, the session is offered the CPU, and the CPU run works.
spaces.quota_left_s = 1
try:
    run(momentum.TAB.handler, epochs=1, n_train=160, batch_size=32)
except gpu.GpuRefused as error:
    out["refusal"] = error.message
out["offered"] = panel.offer_cpu(Request())["visible"]
spaces.requests.clear()
out["cpu_status"] = run(momentum.TAB.cpu_handler, epochs=1, n_train=160, batch_size=32)[-1][3]
out["cpu_requests"] = len(spaces.requests)
# Over the largest duration asked for: refused before ZeroGPU is asked.
spaces.quota_left_s = None
spaces.requests.clear()
try:
    run(momentum.TAB.handler, preset="report", epochs=30)
except gpu.GpuRefused as error:
    out["too_long"] = error.message
out["too_long_requests"] = len(spaces.requests)
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def zerogpu_session(tiny_root, torch_home, tmp_path_factory):
    env = {
        **os.environ,
        "SPACES_ZERO_GPU": "true",
        "CNNLAB_GRANTED_DEVICE": "cpu",  # this machine's stand-in for the granted GPU
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "standin"), str(ROOT)]),
        "DATA_DIR": str(tiny_root),
        "TORCH_HOME": str(torch_home),
        "CNNLAB_CACHE": str(tmp_path_factory.mktemp("zerogpu-cache")),
        "HF_HUB_OFFLINE": "1",
    }
    scratch = tmp_path_factory.mktemp("zerogpu-session")
    done = subprocess.run([sys.executable, "-c", SESSION], cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT", 1)[1])


def test_every_training_handler_asks_the_one_gpu_call_and_nothing_touches_cuda_outside(zerogpu_session):
    # The session imported the app, loaded the classifiers and built the UI under the CUDA guard.
    assert zerogpu_session["wrapped"] == ["train_granted"]  # one GPU call, which every tab's training goes through
    assert len(zerogpu_session["durations"]) == zerogpu_session["handlers"] == 8
    assert zerogpu_session["default_preset"] == "quick"


def test_durations_are_priced_from_the_request_and_ten_fit_a_free_visitors_quota(zerogpu_session):
    durations = zerogpu_session["durations"]
    assert set(durations) == {"compare_activations", "compare_adaptive_lr", "compare_batchnorm", "depth_grid", "train_final_cnn", "compare_momentum", "train_transfer", "train_your_images"}
    # A free account's 300 s a day, counted 1.5× on ZeroGPU's GPUs, hold ten of every two- or
    # three-arm comparison at its defaults.
    for name in ("compare_activations", "compare_adaptive_lr", "compare_batchnorm", "compare_momentum", "train_transfer"):
        assert 10 * 1.5 * durations[name] <= 300, (name, durations[name])
    assert durations["depth_grid"] > durations["compare_momentum"]  # nine arms cost more than two
    assert zerogpu_session["report_momentum"] > 5 * durations["compare_momentum"]  # the report's 5 epochs × 50,000 images


def test_a_granted_run_streams_to_the_end(zerogpu_session):
    assert zerogpu_session["granted_status"].startswith("Done on")


def test_a_refusal_says_why_and_offers_the_cpu_which_trains_without_asking_for_a_gpu(zerogpu_session):
    assert "ZeroGPU said: You have exceeded your free ZeroGPU quota" in zerogpu_session["refusal"]
    assert "Use the CPU instead" in zerogpu_session["refusal"] and zerogpu_session["offered"] is True
    assert zerogpu_session["cpu_status"].startswith("Done on") and zerogpu_session["cpu_requests"] == 0


def test_a_run_longer_than_any_grant_is_refused_before_asking(zerogpu_session):
    assert "more than the 200 s one request may take here" in zerogpu_session["too_long"]
    assert zerogpu_session["too_long_requests"] == 0
