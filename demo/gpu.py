"""Where training runs: on a ZeroGPU Space each training request borrows a GPU for as long as it
needs, and everywhere else it trains in the classroom's queue on the host's own device.

ZeroGPU (`spaces.GPU`) grants a GPU per call for a duration the app asks for; a visitor's
daily quota is counted against it, and shorter requests are queued first. So every request asks
for what its arms need: `gpu_seconds` prices them at the speed the report measured on its own GPU
(each model's `gpu_steps_per_s`, in the model registry). The main process never touches CUDA:
training and the device's name happen inside the granted call (in ZeroGPU's worker process), and
the models come back on the CPU.

When ZeroGPU refuses (the quota is used up, or the duration is over its limit), the student
reads why, and the tab offers the quick preset on the Space's CPU in one click (demo.panel).
"""

import math
import os
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import gradio as gr
import torch

from demo.classroom import Update, classroom
from models import gpu_steps_per_s
from training.config import TrainConfig
from training.datasets import images_per_epoch, register_dataset
from training.experiments import get_experiment
from training.lru import BoundedLRU

ZEROGPU = tomllib.loads((Path(__file__).parent / "zerogpu.toml").read_text())
ON_ZEROGPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")  # how the `spaces` package itself tells
try:
    import spaces
except ImportError:
    spaces = None

STARTUP_S = 5  # per request: the worker's CUDA start and the dataset's copy to the GPU
MARGIN = 1.5  # a call that outlives its duration is killed mid-run, so ask for half as much again
MIN_DURATION_S = 10
# The longest duration this Space asks for: a free account's whole daily quota, net of the 1.5×
# that ZeroGPU's current GPUs count. A longer request could never be granted to a free visitor;
# a Space whose visitors have more quota can raise it with ZEROGPU_MAX_DURATION.
MAX_DURATION_S = int(os.environ.get("ZEROGPU_MAX_DURATION", ZEROGPU["daily_quota_s"]["free"] / ZEROGPU["quota_factor"]))

# What a granted call trains on: ZeroGPU's GPU. (A CPU-only test of this path sets cpu.)
GRANTED_DEVICE = os.environ.get("CNNLAB_GRANTED_DEVICE", "cuda")
# Browser sessions whose last training request ZeroGPU refused: they are offered the CPU.
_refused = BoundedLRU(256)


def gpu_available() -> bool:
    """Whether this host trains on a GPU. On ZeroGPU it is known from the environment, without
    asking CUDA in the main process."""
    return ON_ZEROGPU or torch.cuda.is_available()


def on_zerogpu_gpu(on_cpu: bool) -> bool:
    """Whether a request goes to a ZeroGPU call (not on the Space's CPU, nor on another host)."""
    return ON_ZEROGPU and spaces is not None and not on_cpu


def gpu_seconds(configs: list[TrainConfig]) -> int:
    """The GPU duration to ask for: every arm's training steps at its model's GPU speed, plus the
    start-up, with a margin, in whole seconds."""
    seconds = sum(c.epochs * math.ceil(n / c.batch_size) / gpu_steps_per_s(c.model) for c, n in zip(configs, images_per_epoch(configs)))
    return max(MIN_DURATION_S, math.ceil((STARTUP_S + seconds) * MARGIN))


class GpuRefused(gr.Error):
    """ZeroGPU would not (or could not) grant this request; the message says why and what to do."""


def refusal(session: str | None, reason: str) -> GpuRefused:
    if session:
        _refused[session] = None
    return GpuRefused(
        f"{reason} Press **Use the CPU instead** to run the quick preset on this Space's own CPU (about a minute).",
        title="No GPU for this run", duration=None,
    )


def was_refused(request: gr.Request | None) -> bool:
    """Whether this session's last training request was refused a GPU (and is offered the CPU)."""
    return bool(request and request.session_hash in _refused)


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


def updates_on_gpu(experiment_name: str, configs: list[TrainConfig], preset: str, session: str | None, datasets: dict) -> Iterator[Update]:
    """The run's updates from a ZeroGPU call priced for its arms, or a GpuRefused that says why."""
    needed = gpu_seconds(configs)
    if needed > MAX_DURATION_S:
        raise refusal(session, f"This run needs about {needed} s of GPU time, more than the {MAX_DURATION_S} s one request may take here.")
    _refused.pop(session, None)
    try:
        yield from on_gpu(experiment_name, configs, preset, session, datasets)
    except gr.Error as error:
        if not str(getattr(error, "title", "")).startswith("ZeroGPU"):
            raise
        raise refusal(session, f"ZeroGPU said: {error.message}") from None
