"""What do the instruments (training.instruments) cost? Each lesson's quick-preset arm, trained
twice in one lockstep run, once with the instruments on and once off:

    python benchmarks/instruments.py [--experiments momentum ...] [--precision fp32|bf16] [--repeats 2]

The two copies share the seed, data and batches and take their steps in turn, so the machine's
drift (another process, the clock's boost) falls on both alike; each arm's clock counts only its
own steps (training.devices.ArmClock). fp32 runs emulate the weakest host we target (2 cores,
AVX2) as benchmarks/lessons.py does. Needs DATA_DIR with the real CIFAR-10 (and, for transfer,
AlexNet's weights); run it on an otherwise idle machine.
"""

import argparse
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

WEAK_HOST = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["activations", "momentum", "adaptive-lr", "batchnorm", "architecture", "final"])
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--repeats", type=int, default=1, help="lockstep runs per experiment")
    args = parser.parse_args()
    if args.precision == "fp32" and any(os.environ.get(k) != v for k, v in WEAK_HOST.items()):
        # The variables must be set before torch loads: run again with them.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WEAK_HOST})
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import torch

    from training.engine import Finished, compare
    from training.experiments import get_experiment

    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, {args.precision}, torch {torch.__version__}")
    print("| experiment | arm | steps | off s | on s | cost |\n| --- | --- | --- | --- | --- | --- |")
    costs = []
    for name in args.experiments:
        # The most expensive arm of the preset: the deepest cell of a grid, the final network.
        arm = get_experiment(name).arms("quick", device="cpu", precision=args.precision)[-1 if name == "architecture" else 0]
        for _ in range(args.repeats):
            pair = [replace(arm, label="on", instruments=True), replace(arm, label="off", instruments=False)]
            done = {e.arm: e for e in compare(pair) if isinstance(e, Finished)}
            cost = done["on"].train_time_s / done["off"].train_time_s - 1
            costs.append(cost)
            print(f"| {name} | {arm.label} | {done['on'].steps} | {done['off'].train_time_s:.1f} | {done['on'].train_time_s:.1f} | {cost:+.1%} |", flush=True)
    print(f"\nmedian cost {statistics.median(costs):+.1%}, largest {max(costs):+.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
