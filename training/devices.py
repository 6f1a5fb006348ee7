"""The device and number format a run computes on, and what an arm keeps of its own there.

`resolve_device` and `resolve_precision` turn a config's `auto | cpu | cuda` and
`auto | fp32 | bf16` into what this machine has: bf16 only where the device computes it
natively, since emulated bf16 is slower than fp32. `device_name` labels measured numbers.
Arms of a comparison take turns on one device, so each keeps its own clock (`ArmClock`: CUDA
events on a GPU, where steps run asynchronously) and its own RNG stream (`rng_state`,
`set_rng_state`), and its numbers do not depend on which arms run beside it.
"""

import platform
import time

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """A human name for the device, for labelling measured numbers."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    return f"{model or 'CPU'}, {torch.get_num_threads()} threads"


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # Without AVX512-BF16 or AMX, bf16 on a CPU is emulated and slower than fp32.
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {name!r}")
    return name


class ArmClock:
    """Training time of one arm, counting only its own steps.

    On a GPU, steps run asynchronously, so each step is bracketed by CUDA events and the total
    is read (one sync) only when an event is due; on a CPU the wall clock is exact.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds = 0.0
        self.pending: list[tuple] = []

    def start(self) -> None:
        if self.cuda:
            self.pending.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            self.pending[-1][0].record()
        else:
            self.started = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            self.pending[-1][1].record()
        else:
            self.seconds += time.perf_counter() - self.started

    def total(self) -> float:
        if self.pending:
            self.pending[-1][1].synchronize()
            self.seconds += sum(begin.elapsed_time(end) for begin, end in self.pending) / 1000
            self.pending.clear()
        return self.seconds


def rng_state(device: torch.device):
    """The global RNG state of the CPU and, on a GPU, of `device`: an arm's stream, saved after its step."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_state(device: torch.device, state) -> None:
    """Swap an arm's stream (from `rng_state`) in, before its step."""
    torch.set_rng_state(state[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1], device)


def seeded_rng_state(seed: int, device: torch.device):
    """The RNG state an arm's stream (dropout) starts from: the seed's, on the CPU and the device."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return rng_state(device)
