"""Record reference runs: the report's experiments at full length, one JSON each, with provenance.

    python -m training reproduce [--preset report] [--only EXP ...] [--out-dir results/reference] [--device auto] [--precision auto] [--force]

Each file holds the CLI's results schema plus a "provenance" record (device, torch version, git
commit, date, wall time), with each arm's training-loss points thinned to at most 1,000. Experiments whose file exists are skipped unless --force, so an
interrupted recording resumes where it stopped.

An experiment whose model ships with the app (`embedded`, the CIFAR-10 classifier) is recorded as
a `--save-dir` folder instead, `--models-dir`/NAME: its results.json and one `save_pretrained`
folder per arm, which the app loads and `publish` reads. Each arm's folder also gets its
predictions on the test set (TEST_PREDICTIONS), so that the app can show which test images land
in each cell of the confusion matrix without running the model over them on a slow CPU.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from models import WeightsUnavailableError
from training.datasets import load_splits
from training.sources import DatasetMissingError
from training.config import DEVICES, TrainConfig
from training.evaluation import predict
from training.experiments import EXPERIMENTS, PRESETS, get_experiment
from training.results import PRETRAINED_DIR, TEST_PREDICTIONS, git_commit, provenance, thinned
from training.runner import folder_name, print_table, run_experiment


def save_test_predictions(model: torch.nn.Module, config: TrainConfig, folder: Path) -> None:
    """The model's class and confidence for every test image, in fp32 (every host's precision),
    with the test-time views its accuracy was measured with."""
    test = load_splits(config.dataset)[1]
    predicted, confidence = predict(model, test, next(model.parameters()).device, "fp32", config.test_time_flip, config.test_time_shift)
    tensors = {"label": test.labels.to(torch.uint8), "predicted": predicted.to(torch.uint8).cpu(), "confidence": confidence.half().cpu()}
    save_file(tensors, folder / TEST_PREDICTIONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training reproduce", description="Record reference runs of the report's experiments.")
    parser.add_argument("--preset", choices=PRESETS, default="report")
    parser.add_argument("--only", nargs="+", choices=sorted(EXPERIMENTS), help="these experiments only (default: all)")
    parser.add_argument("--out-dir", type=Path, default=Path("results/reference"))
    parser.add_argument("--models-dir", type=Path, default=PRETRAINED_DIR, help="where experiments whose model ships with the app are saved")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA or Apple's MPS where PyTorch finds one, else the CPU")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="record again experiments already written")
    args = parser.parse_args(argv)
    for name in args.only or [name for name, experiment in EXPERIMENTS.items() if not experiment.own_data]:
        experiment = get_experiment(name)
        target = args.models_dir / name / "results.json" if experiment.embedded else args.out_dir / f"{name}.json"
        if target.exists() and not args.force:
            print(f"{name}: {target} exists, skipped (--force records it again)")
            continue
        commit = git_commit()  # read before the run: the code that ran, not whatever HEAD is when it ends
        start = time.perf_counter()
        try:
            results, models = run_experiment(name, args.preset, args.seed, args.device, args.precision)
        except (DatasetMissingError, WeightsUnavailableError, ValueError) as error:
            print(f"{name}: not recorded: {error}", file=sys.stderr)
            continue
        results["provenance"] = provenance(results, commit, time.perf_counter() - start)
        target.parent.mkdir(parents=True, exist_ok=True)
        if experiment.embedded:  # the models first: a folder with results.json is complete
            for config in experiment.arms(args.preset, seed=args.seed, device=args.device):
                models[config.label].save_pretrained(target.parent / folder_name(config.label))
                save_test_predictions(models[config.label], config, target.parent / folder_name(config.label))
        # Written whole, then renamed: an interrupted run leaves no half file that resume would skip.
        partial = target.with_suffix(".json.tmp")
        partial.write_text(json.dumps(thinned(results), separators=(",", ":")))  # compact and thinned: committed, so kept small
        partial.replace(target)
        print_table(results)
        print(f"{name}: written to {target} in {results['provenance']['wall_time_s']} s")
    return 0
