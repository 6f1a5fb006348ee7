"""The device and number format a run computes on, and what an arm keeps of its own there.

`resolve_device` and `resolve_precision` turn a config's `auto | cpu | cuda | mps` and
`auto | fp32 | bf16` into what this machine has. `auto` is PyTorch's current accelerator (CUDA,
Apple's MPS, or whichever backend this torch build was made for; `torch.accelerator`), else the
CPU. bf16 is chosen only where the device computes it natively, since emulated bf16 is slower than
fp32. `device_name` labels measured numbers. Arms of a comparison take turns on one device, so each
keeps its own clock (`ArmClock`: timing events on an accelerator, where steps run asynchronously)
and its own RNG stream (`rng_state`, `set_rng_state`), and its numbers do not depend on which arms
run beside it.

Nothing here is Linux-only: a student's laptop is as often a Mac or a Windows machine
(tests/test_portable.py runs a comparison in a process without Linux's own APIs).
"""

import functools
import os
import platform
import time

import torch

# The accelerators a config may name; any other backend torch.accelerator reports is reached by `auto`.
ACCELERATORS = ("cuda", "mps")


def accelerator() -> torch.device | None:
    """This machine's accelerator, as PyTorch reports it (None: the CPU only). On CUDA it asks NVML,
    not the CUDA driver (PYTORCH_NVML_BASED_CUDA_CHECK, set in training/__init__.py), so that a
    process that forks later stays able to use CUDA in its children."""
    return torch.accelerator.current_accelerator(check_available=True)


def resolve_device(name: str) -> torch.device:
    found = accelerator()
    if name == "auto":
        return found or torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name not in ACCELERATORS:
        raise ValueError(f"device must be auto, cpu, {' or '.join(ACCELERATORS)}, got {name!r}")
    if found is None or found.type != name:
        has = f"this machine's accelerator is {found.type}" if found else "this machine has no accelerator PyTorch can use"
        raise ValueError(f"device {name!r} was asked for but {has}; use 'auto' or 'cpu'")
    return torch.device(name)


def cpu_threads() -> int:
    """The cores this process may run on: Python 3.13's `os.process_cpu_count`, else the affinity
    set where the OS has one (Linux: a container's or `taskset`'s share), else every core."""
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.cache
def cpu_brand() -> str:
    """The processor's marketing name ("AMD EPYC", "Apple M2", "Intel(R) Core(TM) i7-1165G7").

    py-cpuinfo reads it where each OS publishes it (Linux's /proc/cpuinfo or lscpu, macOS's sysctl,
    Windows' registry); the standard library's `platform.processor()` gives only the architecture
    on Linux and macOS ("x86_64", "arm"). It takes about a second (it asks a child process), once.
    """
    try:
        import cpuinfo

        brand = cpuinfo.get_cpu_info().get("brand_raw", "")
    except Exception:  # its sources differ by OS and any may be missing: the name is only a label
        brand = ""
    return brand or platform.processor() or platform.machine() or "CPU"


def device_name(device: torch.device) -> str:
    """A human name for the device, for labelling measured numbers."""
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"{cpu_brand()}, {threads} thread{'' if threads == 1 else 's'}"
    if device.type == "mps":  # the GPU of the Mac's own chip, which names both
        return f"{cpu_brand()} (MPS)"
    module = torch.get_device_module(device)
    return module.get_device_name(device) if hasattr(module, "get_device_name") else device.type.upper()


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        # Pre-Ampere GPUs run bf16 emulated, slower than fp32: only the native kind counts.
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        # Without AVX512-BF16 or AMX, bf16 on a CPU is emulated and slower than fp32.
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    # MPS and the rest: whether bf16 outruns fp32 depends on the chip (Apple's M1 has no bf16
    # arithmetic) and PyTorch does not say, so `auto` keeps fp32, which is right everywhere.
    return False


def computes_bf16(device: torch.device) -> bool:
    """Whether the device can compute bf16 at all, natively or not."""
    if device.type == "mps":  # autocast's own test (torch.amp.autocast_mode); torch 2.11's MPS needs macOS 14 anyway
        return torch.backends.mps.is_macos_or_newer(14, 0)
    if device.type in ("cpu", "cuda"):
        return True
    try:
        return torch.bfloat16 in torch.accelerator.get_device_capability(device)["supported_dtypes"]
    except (RuntimeError, KeyError, TypeError):  # a backend that does not report its types
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {name!r}")
    if name == "bf16" and not computes_bf16(device):
        raise ValueError(f"this {device_name(device)} cannot compute bf16; use fp32 or auto")
    return name


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, which runs it as it is called)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def empty_cache(device: torch.device) -> None:
    """Hand the accelerator's cached free memory back, so that the next run, or the next process
    on a shared GPU, finds it free."""
    if device.type != "cpu":  # the device's own module: torch 2.11's accelerator-wide call asserts on MPS
        torch.get_device_module(device).empty_cache()


class ArmClock:
    """Training time of one arm, counting only its own steps.

    On an accelerator, steps run asynchronously, so each step is bracketed by timing events and the
    total is read (one sync) only when an event is due; on a CPU the wall clock is exact.
    """

    def __init__(self, device: torch.device):
        self.device = device if device.type != "cpu" else None
        self.seconds = 0.0
        self.pending: list[tuple] = []

    def start(self) -> None:
        if self.device:
            self.pending.append((torch.Event(self.device, enable_timing=True), torch.Event(self.device, enable_timing=True)))
            self.pending[-1][0].record()
        else:
            self.started = time.perf_counter()

    def stop(self) -> None:
        if self.device:
            self.pending[-1][1].record()
        else:
            self.seconds += time.perf_counter() - self.started

    def total(self) -> float:
        if self.pending:
            # The device's queue, not the last event: on MPS (torch 2.11) an event waited on and
            # then timed waits forever for a signal already used up (pytorch/pytorch#162872).
            torch.accelerator.synchronize(self.device)
            self.seconds += sum(begin.elapsed_time(end) for begin, end in self.pending) / 1000
            self.pending.clear()
        return self.seconds


def _accelerators(device: torch.device) -> list[torch.device]:
    return [] if device.type == "cpu" else [device]


def rng_state(device: torch.device):
    """The global RNG state of the CPU and, on an accelerator, of `device`: an arm's stream, saved after its step."""
    return torch.get_rng_state(), *(torch.get_device_module(d).get_rng_state(d) for d in _accelerators(device))


def set_rng_state(device: torch.device, state) -> None:
    """Swap an arm's stream (from `rng_state`) in, before its step."""
    torch.set_rng_state(state[0])
    for d, saved in zip(_accelerators(device), state[1:]):
        torch.get_device_module(d).set_rng_state(saved, d)


def seeded_rng_state(seed: int, device: torch.device):
    """The RNG state an arm's stream (dropout) starts from: the seed's, on the CPU and the device."""
    with torch.random.fork_rng(devices=_accelerators(device), device_type=device.type):
        torch.manual_seed(seed)
        return rng_state(device)
