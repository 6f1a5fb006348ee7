"""A stand-in for Hugging Face's `spaces` package as it behaves on ZeroGPU, for tests.

`GPU(duration=...)` records every function it wraps and, on each call, the duration asked for
(a number, or a function of the call's arguments, as in `spaces`). Setting `quota_left_s`
(or SPACES_STANDIN_QUOTA_S, for an app started with this package) refuses longer requests with
the error ZeroGPU raises. CUDA may be touched only inside a
wrapped call: on import this module makes torch.cuda's entry points raise outside one, so a
main process that initialises CUDA fails loudly.
"""

import functools
import os

import gradio as gr
import torch

wrapped: list[str] = []  # qualified names of the wrapped functions
requests: list[tuple[str, float]] = []  # (function, seconds asked for), call by call
quota_left_s: float | None = float(os.environ["SPACES_STANDIN_QUOTA_S"]) if "SPACES_STANDIN_QUOTA_S" in os.environ else None  # None: unlimited
_inside = 0


def GPU(task=None, *, duration=60, size=None):
    def decorate(function):
        wrapped.append(function.__qualname__)

        @functools.wraps(function)
        def granted(*args, **kwargs):
            global _inside
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            requests.append((function.__qualname__, seconds))
            if quota_left_s is not None and seconds > quota_left_s:
                raise gr.Error(f"You have exceeded your free ZeroGPU quota ({seconds}s requested vs. {quota_left_s}s left).", title="ZeroGPU quota exceeded")
            _inside += 1
            try:
                yield from function(*args, **kwargs)
            finally:
                _inside -= 1

        return granted

    return decorate(task) if callable(task) else decorate


def _guarded(name: str, real):
    @functools.wraps(real)
    def guard(*args, **kwargs):
        if not _inside:
            raise AssertionError(f"torch.cuda.{name} was called outside a @spaces.GPU call")
        return real(*args, **kwargs)

    return guard


for _name in ("is_available", "device_count", "init", "_lazy_init", "get_device_name", "is_bf16_supported", "current_device", "synchronize"):
    setattr(torch.cuda, _name, _guarded(_name, getattr(torch.cuda, _name)))
