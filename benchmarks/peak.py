"""Training throughput of the engine against the machine's matmul peak, in one process.

    python benchmarks/peak.py [--model cnn-quick] [--batch-size 64] [--device auto]

Peak: the best of several timed large square matmuls (fp32 and bf16). Model FLOPs: counted by
torch.utils.flop_counter.FlopCounterMode on one forward+backward of a training batch (convs and
linear layers; elementwise work is not counted, as is usual for MFU). The training rate is the
engine's own images/s on synthetic CIFAR-sized data, so no dataset is needed.
"""

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from training.config import TrainConfig
from training.devices import native_bf16, resolve_device, synchronize
from training.engine import build_model


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 4096, repeats: int = 5) -> float:
    """FLOP/s of the fastest of `repeats` n×n matmuls."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: thread pool, kernel selection
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def training_flops_per_image(model: torch.nn.Module, batch: torch.Tensor, labels: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(model(batch), labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch)


def training_rate(model, batch, labels, precision: str, device: torch.device, seconds: float = 10.0) -> float:
    """Images/s of the engine's training step (autocast, channels_last, SGD with momentum)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(batch), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    synchronize(device)
    return steps * len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cnn-quick")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    model = build_model(TrainConfig(model=args.model), device)
    batch = torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (args.batch_size,), device=device)
    flops = training_flops_per_image(model, batch, labels)
    print(f"{args.model}: {flops / 1e6:.1f} MFLOP per training image (forward + backward), batch {args.batch_size}, {device}")
    precisions = ["fp32"] + (["bf16"] if native_bf16(device) else [])
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        peak = matmul_peak(device, dtype)
        rate = training_rate(model, batch, labels, precision, device)
        achieved = rate * flops
        print(
            f"{precision}: matmul peak {peak / 1e9:.0f} GFLOP/s; training {rate:.0f} img/s = "
            f"{achieved / 1e9:.0f} GFLOP/s = {achieved / peak:.0%} of peak"
        )


if __name__ == "__main__":
    main()
