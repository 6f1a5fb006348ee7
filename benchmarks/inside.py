"""Two questions our reference runs raised, answered by the instruments (training.instruments) at
the report's own settings and init (SGD, lr 0.001, momentum 0.9, batch 10, PyTorch's default init),
for the first few hundred steps:

    python benchmarks/inside.py [--steps 500] [--seed 0] [--precision fp32]

1. Why does tanh lead ReLU for five epochs there (the Activations tab)?
2. Why do the deep cells of the depth grid start slower (the Depth tab)?

For each arm it prints every layer's median gradient norm, step size ‖ΔW‖/‖W‖, output scale and
(after ReLU) dead share over the readings, and its training loss at the end, and with `--write`
keeps them in results/inside.json, the one source of the figures the tabs and docs quote from it
(tests/test_explanations.py). fp32 runs emulate the weakest host we target (2 cores, AVX2). Needs
DATA_DIR with the real CIFAR-10.
"""

import argparse
import datetime
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

WEAK_HOST = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
METRICS = ("grad_norm", "update_ratio", "act_std", "dead_share")
CELLS = ("conv1-fc1", "conv3-fc1", "conv5-fc1", "conv5-fc3")
INSIDE_FILE = Path(__file__).resolve().parent.parent / "results" / "inside.json"


def arms(name: str, labels: tuple[str, ...] | None, steps: int, seed: int, precision: str) -> list:
    from training.experiments import get_experiment

    configs = get_experiment(name).arms("report", seed=seed, device="cpu", precision=precision)
    # One epoch of `steps` batches, the report's batch size and rate; a test set of 2,000 images.
    configs = [replace(c, epochs=1, n_train=steps * c.batch_size, n_test=2000, evals_per_epoch=1) for c in configs]
    return [c for c in configs if labels is None or c.label in labels]


def table(results: dict) -> str:
    from training.readings import profile

    lines = ["| arm | final loss | test acc | " + " | ".join(f"{m} by layer" for m in METRICS) + " |", "|" + " --- |" * (3 + len(METRICS))]
    for run in results["runs"]:
        loss = [p["train_loss"] for p in run["history"] if p["type"] == "TrainStep"][-1]
        cells = []
        for metric in METRICS:
            values = profile(run["instruments"], metric)
            cells.append(", ".join(f"{v:.3g}" for v in values.values()) if values else "–")
        lines.append(f"| {run['label']} | {loss:.3f} | {run['test_acc']:.2%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measured(results: dict) -> dict:
    """Each arm's final loss, test accuracy and every metric's median by layer, as kept in INSIDE_FILE."""
    from training.readings import profile

    return {
        run["label"]: {
            "final_loss": [p["train_loss"] for p in run["history"] if p["type"] == "TrainStep"][-1],
            "test_acc": run["test_acc"],
            **{metric: profile(run["instruments"], metric) for metric in METRICS},
        }
        for run in results["runs"]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--write", action="store_true", help=f"keep the measurements in {INSIDE_FILE.name}")
    args = parser.parse_args()
    if args.precision == "fp32" and any(os.environ.get(k) != v for k, v in WEAK_HOST.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WEAK_HOST})
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import torch

    from training.runner import ComparisonRun
    from training.experiments import get_experiment
    from training.devices import cpu_brand
    from training.results import code_version, git_commit

    capability = torch.backends.cpu.get_cpu_capability()
    print(f"CPU capability {capability}, {args.precision}, seed {args.seed}, {args.steps} steps of batch 10; layers in the network's order\n")
    experiments = {}
    for name, labels in (("activations", ("relu", "tanh")), ("architecture", CELLS)):
        run = ComparisonRun(get_experiment(name), arms(name, labels, args.steps, args.seed, args.precision))
        for _ in run:
            pass
        results = run.results("report", "cpu")
        experiments[name] = {"arms": [r["config"] for r in results["runs"]], "measured": measured(results)}
        print(f"{name}\n\n{table(results)}\n", flush=True)
    if args.write:
        recorded = {
            "host": f"{cpu_brand()}, {os.cpu_count()} cores, {capability}", "precision": args.precision, "seed": args.seed, "steps": args.steps,
            "code": code_version(), "git_commit": git_commit(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "experiments": experiments,
        }
        INSIDE_FILE.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n")
        print(f"written to {INSIDE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
