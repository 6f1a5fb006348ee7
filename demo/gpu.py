"""Where training runs: on a ZeroGPU Space each training request borrows a GPU for as long as it
needs, and everywhere else the handler simply runs on the host's own device.

ZeroGPU (`spaces.GPU`) grants a GPU per call for a duration the app asks for; a visitor's
daily quota is counted against it, and shorter requests are queued first. So each handler asks
for what its request needs: `gpu_seconds` reads the arms the request would train (preset,
epochs, images, arms) and prices them at the speed the report measured on its own GPU. The
main process never touches CUDA: training and the device's name happen inside the granted call
(in ZeroGPU's worker process), and models come back on the CPU.

When ZeroGPU refuses (the quota is used up, or the duration is over its limit), the student
reads why, and the tab offers the quick preset on the Space's CPU in one click
(`ComparisonPanel.wire`).
"""

import functools
import inspect
import math
import os
import threading
import tomllib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import torch

from training.datasets import images_per_epoch
from training.engine import TrainConfig

ZEROGPU = tomllib.loads((Path(__file__).parent / "zerogpu.toml").read_text())
ON_ZEROGPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")  # how the `spaces` package itself tells
try:
    import spaces
except ImportError:
    spaces = None

# Training steps per second on a GPU, by model: the report's own times on its Kaggle GPU (the
# momentum runs: 25,000 steps of batch 10 in 105 s; the final CNN: 10,000 steps of batch 100 in
# 472 s; AlexNet: 130 steps of batch 20 in 19 s). Our models are no larger than the report's at
# each speed, and ZeroGPU's GPUs are newer, so these overestimate a little.
GPU_STEPS_PER_S = {
    "cnn-tiny": 238, "cnn-quick": 238, "cnn-report": 238,
    "cnn-final-quick": 21, "cnn-final": 21, "cnn-classifier": 21,
    "alexnet-transfer": 6.8,
}
STARTUP_S = 5  # per request: the worker's CUDA start and the dataset's copy to the GPU
MARGIN = 1.5  # a call that outlives its duration is killed mid-run, so ask for half as much again
MIN_DURATION_S = 10
# The longest duration this Space asks for: a free account's whole daily quota, net of the 1.5×
# that ZeroGPU's current GPUs count. A longer request could never be granted to a free visitor;
# a Space whose visitors have more quota can raise it with ZEROGPU_MAX_DURATION.
MAX_DURATION_S = int(os.environ.get("ZEROGPU_MAX_DURATION", ZEROGPU["daily_quota_s"]["free"] / ZEROGPU["quota_factor"]))

# What a granted call trains on: ZeroGPU's GPU. (A CPU-only test of this path sets cpu.)
GRANTED_DEVICE = os.environ.get("CNNLAB_GRANTED_DEVICE", "cuda")
_local = threading.local()  # .device: GRANTED_DEVICE inside a granted call
# Browser sessions whose last training request ZeroGPU refused: they are offered the CPU.
_refused: OrderedDict[str, None] = OrderedDict()
REMEMBERED_SESSIONS = 256


def gpu_available() -> bool:
    """Whether this host trains on a GPU. On ZeroGPU it is known from the environment, without
    asking CUDA in the main process."""
    return ON_ZEROGPU or torch.cuda.is_available()


def training_device() -> str:
    """The device a run started now trains on: the GPU inside a ZeroGPU call, the CPU in a ZeroGPU
    Space's main process (the CPU fallback), and elsewhere whatever the host has."""
    if getattr(_local, "device", None):
        return _local.device
    return "cpu" if ON_ZEROGPU else "auto"


def in_granted_call() -> bool:
    """Whether this thread runs inside a granted ZeroGPU call (its own process, its own GPU)."""
    return bool(getattr(_local, "device", None))


def gpu_seconds(configs: list[TrainConfig]) -> int:
    """The GPU duration to ask for: every arm's training steps at `GPU_STEPS_PER_S`, plus the
    start-up, with a margin, in whole seconds."""
    seconds = sum(c.epochs * math.ceil(n / c.batch_size) / GPU_STEPS_PER_S[c.model] for c, n in zip(configs, images_per_epoch(configs)))
    return max(MIN_DURATION_S, math.ceil((STARTUP_S + seconds) * MARGIN))


class GpuRefused(gr.Error):
    """ZeroGPU would not (or could not) grant this request; the message says why and what to do."""


def refusal(session: str | None, reason: str) -> GpuRefused:
    if session:
        _refused.pop(session, None)
        _refused[session] = None
        while len(_refused) > REMEMBERED_SESSIONS:
            _refused.popitem(last=False)
    return GpuRefused(
        f"{reason} Press **Use the CPU instead** to run the quick preset on this Space's own CPU (about a minute).",
        title="No GPU for this run", duration=None,
    )


def was_refused(request: gr.Request | None) -> bool:
    """Whether this session's last training request was refused a GPU (and is offered the CPU)."""
    return bool(request and request.session_hash in _refused)


def gpu(arms_of: Callable[..., list[TrainConfig]]):
    """Decorate a streaming training handler: on ZeroGPU it runs under `spaces.GPU` with the
    duration `gpu_seconds` prices for the arms `arms_of` builds from the same settings (its
    parameters are the handler's, by name, without progress and request). Elsewhere the handler
    is returned as it is. Either way `handler.on_cpu` is the handler as it is, for the fallback."""

    def decorate(handler):
        handler.on_cpu = handler
        if not ON_ZEROGPU or spaces is None:
            return handler
        signature = inspect.signature(handler)
        wanted = set(inspect.signature(arms_of).parameters)

        def by_name(args, kwargs) -> dict:
            """The call's arguments by name (Gradio passes progress and request by position)."""
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return bound.arguments

        def seconds(arguments: dict) -> int:
            return gpu_seconds(arms_of(**{k: v for k, v in arguments.items() if k in wanted}))

        def on_device(*args, **kwargs):
            _local.device = GRANTED_DEVICE
            try:
                yield from handler(*args, **kwargs)
            finally:
                _local.device = None

        on_gpu = spaces.GPU(duration=lambda *args, **kwargs: seconds(by_name(args, kwargs)))(on_device)

        @functools.wraps(handler)
        def granted(*args, **kwargs):
            arguments = by_name(args, kwargs)
            request = arguments.get("request")
            session = request.session_hash if request else None
            needed = seconds(arguments)  # bad settings are refused here, before a GPU is asked for
            if needed > MAX_DURATION_S:
                raise refusal(session, f"This run needs about {needed} s of GPU time, more than the {MAX_DURATION_S} s one request may take here.")
            _refused.pop(session, None)
            try:
                yield from on_gpu(*args, **kwargs)
            except gr.Error as error:
                if not str(getattr(error, "title", "")).startswith("ZeroGPU"):
                    raise
                raise refusal(session, f"ZeroGPU said: {error.message}") from None

        granted.on_cpu = handler
        return granted

    return decorate
