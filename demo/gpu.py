"""Where training runs: on a ZeroGPU Space each training request borrows a GPU for as long as it
needs, and everywhere else it trains in the classroom's queue on the host's own device.

ZeroGPU (`spaces.GPU`) grants a GPU per call for a duration the app asks for; a visitor's
daily quota is counted against it, and shorter requests are queued first. So every request asks
for what its arms need: `gpu_seconds` prices them at the speed the report measured on its own GPU
(each model's `gpu_steps_per_s`, in the model registry). The main process never touches CUDA:
training and the device's name happen inside the granted call, which `spaces` runs in a worker
process forked for it, and the models come back on the CPU.

What crosses between the two processes is only what the call yields, so the app's process keeps
what it has received of each session's run (`GpuRun`): Stop reports from it and ends the stream,
and the progress bar follows the yielded updates (`spaces` relays no gr.Progress from a generator
in its worker). When ZeroGPU refuses a request (the quota is used up, the duration is over its
limit, no GPU came free in time), the student reads why, and the tab offers the quick preset on
the Space's CPU in one click (demo.panel). A run that fails on the GPU (out of memory, or ended by
ZeroGPU) is not a refusal: its status says what failed and what to do, beside the curves so far.
"""

import math
import os
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr

from serving.classroom import Update, classroom
from serving.jobs import replaced, stopped_at
from models import gpu_steps_per_s
from training.config import TrainConfig
from training.datasets import images_per_epoch, register_dataset
from training.devices import resolve_device
from training.experiments import Experiment, get_experiment

ZEROGPU = tomllib.loads((Path(__file__).parent / "zerogpu.toml").read_text())
ON_ZEROGPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")  # how the `spaces` package itself tells
try:
    import spaces
except ImportError:
    spaces = None

STARTUP_S = 5  # per request: the worker's CUDA start and the dataset's copy to the GPU
MARGIN = 1.5  # a call that outlives its duration is killed mid-run, so ask for half as much again
MIN_DURATION_S = 10
# ZeroGPU's errors that refuse a request before it runs, by the titles `spaces` gives them: only
# these offer the CPU. Any other exception in the worker reaches the app as a WORKER_ERROR whose
# message is the exception's class name, or ABORTED where the worker died (as when ZeroGPU ends a
# run that outlived its duration).
REFUSALS = ("ZeroGPU quota exceeded", "ZeroGPU illegal duration", "ZeroGPU queue timeout", "ZeroGPU client error", "ZeroGPU pending credits exceeded")
WORKER_ERROR, ABORTED = "ZeroGPU worker error", "GPU task aborted"


def duration_factor() -> float:
    """The quota ZeroGPU counts per second of duration asked for on this Space's GPU: the `spaces`
    package's figure for the GPU it finds (1.0 on an H200, 1.5 on a Blackwell), else zerogpu.toml's."""
    if ON_ZEROGPU and spaces is not None:
        try:
            from spaces.zero import config

            return float(config.get_config()["duration_factor"])
        except (ImportError, KeyError):  # a `spaces` release laid out otherwise
            pass
    return ZEROGPU["quota_factor"]


# The longest duration this Space asks for: a free account's whole daily quota, net of the factor
# ZeroGPU's GPU counts. A longer request could never be granted to a free visitor; a Space whose
# visitors have more quota can raise it with ZEROGPU_MAX_DURATION.
MAX_DURATION_S = int(os.environ.get("ZEROGPU_MAX_DURATION", ZEROGPU["daily_quota_s"]["free"] / duration_factor()))

# What this host trains on outside ZeroGPU, as the CLI's --device: auto (CUDA or Apple's MPS where
# PyTorch finds one, else the CPU), cpu, cuda or mps.
HOST_DEVICE = os.environ.get("CNNLAB_DEVICE", "auto")
# What a granted call trains on: ZeroGPU's GPU. (A CPU-only test of this path sets cpu.)
GRANTED_DEVICE = os.environ.get("CNNLAB_GRANTED_DEVICE", "cuda")


def gpu_available() -> bool:
    """Whether this host trains on a GPU (CUDA, or a Mac's through MPS). On ZeroGPU it is known
    from the environment, without asking CUDA in the main process."""
    return ON_ZEROGPU or resolve_device(HOST_DEVICE).type != "cpu"


def on_zerogpu_gpu(on_cpu: bool) -> bool:
    """Whether a request goes to a ZeroGPU call (not on the Space's CPU, nor on another host)."""
    return ON_ZEROGPU and spaces is not None and not on_cpu


def gpu_seconds(configs: list[TrainConfig]) -> int:
    """The GPU duration to ask for: every arm's training steps at its model's GPU speed, plus the
    start-up, with a margin, in whole seconds."""
    seconds = sum(c.epochs * math.ceil(n / c.batch_size) / gpu_steps_per_s(c.model) for c, n in zip(configs, images_per_epoch(configs)))
    return max(MIN_DURATION_S, math.ceil((STARTUP_S + seconds) * MARGIN))


class GpuRefused(gr.Error):
    """ZeroGPU would not (or could not) grant this request; the message says why and what to do (an
    expected refusal: no traceback in the server's log)."""


def sentence(text: str) -> str:
    """`text` ending as a sentence does, so that the next one can follow it."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def refusal(session: str | None, reason: str, api_call: bool) -> GpuRefused:
    """The refusal's message: why, and what to do, which for a browser's session is one click."""
    if session and not api_call:
        classroom.sessions.get(session).gpu_refused = True
    advice = (
        "Try again once the quota has refilled, or run CNN Lab on a machine of your own (see its README)." if api_call
        else "Press **Use the CPU instead** to run the quick preset on this Space's own CPU (about a minute)."
    )
    return GpuRefused(f"{sentence(reason)} {advice}", title="No GPU for this run", duration=None, print_exception=False)


def is_api_call(request: gr.Request | None) -> bool:
    """Whether a request comes from an API client rather than the app's page, told as `spaces`
    tells it: the page's requests carry `x-gradio-user: app`."""
    headers = getattr(request, "headers", None) if request else None
    return not headers or headers.get("x-gradio-user") != "app"


def was_refused(request: gr.Request | None) -> bool:
    """Whether this session's last training request was refused a GPU (and is offered the CPU)."""
    session = classroom.sessions.find(request.session_hash) if request else None
    return bool(session and session.gpu_refused)


def train_granted(experiment_name: str, configs: list[TrainConfig], preset: str, session: str | None, datasets: dict) -> Iterator[Update]:
    """Inside a granted call (ZeroGPU's worker process): hold the in-memory datasets the arms read,
    train on the GPU outside the queue, and hand back the finished models on the CPU, since the
    app's process must not touch CUDA."""
    for splits in datasets.values():
        register_dataset(*splits)
    configs = [replace(c, device=GRANTED_DEVICE) for c in configs]
    ticket = classroom.request(get_experiment(experiment_name), configs, preset, session, inline=True)
    for update in classroom.follow(ticket):
        if update.finished:
            update.recorder.models = {label: model.cpu() for label, model in update.recorder.models.items()}
        yield update


def _granted_seconds(experiment_name, configs, *args, **kwargs) -> int:
    return gpu_seconds(configs)


on_gpu = spaces.GPU(duration=_granted_seconds)(train_granted) if ON_ZEROGPU and spaces is not None else None


@dataclass
class GpuRun:
    """What the app's process has received of one session's run on the GPU: the worker's own
    state is in another process, out of Stop's reach."""

    experiment: Experiment
    latest: Update | None = None
    stopped: Update | None = None  # Stop's report, once Stop was pressed


def stop_on_gpu(session: str | None) -> tuple[Experiment, Update] | None:
    """Stop's report for this session's run on the GPU, whose stream then ends on it; None where
    there is none to stop."""
    holder = classroom.sessions.find(session)
    run = holder.gpu_run if holder else None
    if run is None or run.stopped or (run.latest and run.latest.finished):
        return None
    if run.latest and run.latest.steps[1]:
        run.stopped = stopped_at(run.latest)
    else:
        run.stopped = Update(None, "**Stopped** before the GPU started training: nothing was trained.", stopped=True)
    return run.experiment, run.stopped


def failed_on_gpu(latest: Update | None, error: gr.Error, granted_s: int, ran_s: float) -> Update:
    """The last update of a run that failed on the GPU: what failed and what to do, with the
    curves it drew so far."""
    reason = str(error.message)
    if reason == "OutOfMemoryError":
        status = "**The GPU ran out of memory on this run.** Choose a smaller batch size, or the quick preset, and press Train again."
    elif reason == ABORTED:
        status = (
            f"**ZeroGPU ended this run** after {ran_s:.0f} s on the GPU, of the {granted_s} s it was granted "
            "(a run that outlives its duration is ended). Press Train again, or choose fewer epochs or training images."
        )
    else:
        status = f"**This run failed on the GPU** ({reason}). Press Train again; if it fails again, choose the quick preset."
    return Update(latest.recorder if latest else None, status, stopped=True, steps=latest.steps if latest else (0, 0))


def updates_on_gpu(experiment_name: str, configs: list[TrainConfig], preset: str, session: str | None, datasets: dict, api_call: bool = False) -> Iterator[Update]:
    """The run's updates from a ZeroGPU call priced for its arms; a GpuRefused that says why where
    ZeroGPU refuses it; Stop's report where Stop was pressed; a failure's update where it failed."""
    needed = gpu_seconds(configs)
    if needed > MAX_DURATION_S:
        raise refusal(session, f"This run needs about {needed} s of GPU time, more than the {MAX_DURATION_S} s one request may take here.", api_call)
    holder = classroom.sessions.get(session) if session else None
    run = GpuRun(get_experiment(experiment_name))
    if holder:
        holder.gpu_refused, holder.gpu_run = False, run  # a newer request of the session replaces its last
    started = None  # when the worker's first update came: the GPU's clock, not the queue's
    stream = on_gpu(experiment_name, configs, preset, session, datasets)
    try:
        for update in stream:
            started = started or time.monotonic()
            if run.stopped or (holder and holder.gpu_run is not run):
                break  # closing the stream stops the worker at its next update
            run.latest = update
            yield update
    except gr.Error as error:
        title = str(getattr(error, "title", ""))
        if title in REFUSALS:
            raise refusal(session, f"ZeroGPU said: {error.message!s}", api_call) from None  # !s: the text of an HTML message
        if title != WORKER_ERROR:
            raise
        yield failed_on_gpu(run.latest, error, round(needed * duration_factor()), time.monotonic() - (started or time.monotonic()))
        return
    finally:
        stream.close()
    if run.stopped:
        yield run.stopped
    elif holder and holder.gpu_run is not run and run.latest:
        yield replaced(run.latest)
