"""Command line: run one of the report's experiments and write its results.

    python -m training batchnorm --preset quick --device cpu --out results.json --save-dir models/
    python -m training reproduce --only batchnorm momentum     # reference runs, see reproduce.py
    python -m training publish --repo-id OWNER/NAME --experiment final   # to the Hub, see publish.py
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path

from tqdm import tqdm

from models import INITS, WeightsUnavailableError
from training.data import DatasetMissingError
from training.engine import Finished, Started, TrainStep, compare, device_name, resolve_device
from training.experiments import EXPERIMENTS, PRESETS, get_experiment
from training.lessons import verdicts
from training.results import Recorder, git_commit, provenance


def folder_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")


def run_experiment(name: str, preset: str, seed: int, device: str, precision: str = "auto", init: str | None = None, progress: bool = True) -> tuple[dict, dict]:
    """Run an experiment to the end with a progress bar; return its results JSON and trained models.
    `init` None keeps the preset's."""
    experiment = get_experiment(name)
    changes = {"init": init} if init else {}
    configs = experiment.arms(preset, seed=seed, device=device, precision=precision, **changes)
    recorder = Recorder(configs)
    done: dict[str, int] = {}
    planned: dict[str, int] = {}
    with tqdm(total=0, unit="step", desc=name, disable=not progress, file=sys.stderr) as bar:
        for event in compare(configs, lockstep=experiment.lockstep):
            recorder.add(event)
            if isinstance(event, Started):
                planned[event.arm] = event.total_steps
                bar.total += event.total_steps
                bar.refresh()
            elif isinstance(event, TrainStep):
                bar.update(event.step - done.get(event.arm, 0))
                done[event.arm] = event.step
                bar.set_postfix_str(f"{event.arm}: loss {event.train_loss:.3f}")
            elif isinstance(event, Finished):
                # An early stop skips the arm's remaining steps.
                bar.total -= planned[event.arm] - event.steps
                bar.refresh()
    results = recorder.to_json(name, preset, seed, device_name(resolve_device(device)))
    return results, recorder.models


def print_table(results: dict) -> None:
    experiment = get_experiment(results["experiment"])
    report = {r.arm: r for r in experiment.report}
    print(f"\n{experiment.title} — preset {results['preset']}, seed {results['seed']}, {results['device_name']}")
    print(f"{'arm':<20} {'test acc':>9} {'train s':>8} {'img/s':>8}   report (Kaggle GPU)")
    for run in results["runs"]:
        ours = f"{run['label']:<20} {run['test_acc']:>9.2%} {run['train_time_s']:>8.1f} {run['images_per_s']:>8.0f}"
        theirs = report.get(run["label"])
        if theirs and theirs.test_acc is not None:
            print(f"{ours}   {theirs.test_acc:.2%} in {theirs.train_time_s} s")
        else:
            print(f"{ours}   {theirs.note if theirs else '—'}")
    for line in verdicts(experiment, results):
        print(f"verdict: {line}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["reproduce"]:
        from training import reproduce

        return reproduce.main(argv[1:])
    if argv[:1] == ["publish"]:
        from training import publish

        return publish.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m training", description="Run one of the report's experiments (or: reproduce, publish).")
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--preset", choices=PRESETS, default="quick", help="quick: about a minute on a 2-core CPU; report: the report's settings")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="auto: bf16 where the device computes it natively, else fp32")
    parser.add_argument("--init", choices=INITS, help="first weights of the conv and linear layers (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="shared by every arm: subset, batches, augmentation, initial weights")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--save-dir", type=Path, help="save results.json and each trained model here (save_pretrained format, one folder per arm); publish reads it")
    args = parser.parse_args(argv)
    commit, start = git_commit(), time.perf_counter()
    try:
        results, models = run_experiment(args.experiment, args.preset, args.seed, args.device, args.precision, args.init)
    except (DatasetMissingError, WeightsUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results["provenance"] = provenance(results, commit, time.perf_counter() - start)
    print_table(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(f"results written to {args.out}")
    if args.save_dir:
        for label, model in models.items():
            model.save_pretrained(args.save_dir / folder_name(label))
        (args.save_dir / "results.json").write_text(json.dumps(results, indent=1))
        print(f"models saved under {args.save_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
