"""Command line: run one of the report's experiments and write its results.

    python -m training batchnorm --preset quick --device cpu --out results.json --save-dir models/
    python -m training reproduce --only batchnorm momentum     # reference runs, see reproduce.py
    python -m training publish --repo-id OWNER/NAME --experiment final   # to the Hub, see publish.py
"""

import argparse
import json
import sys
import time
from pathlib import Path

from models import INITS, WeightsUnavailableError
from training.config import DEVICES
from training.experiments import EXPERIMENTS, PRESETS
from training.results import git_commit, provenance
from training.runner import folder_name, print_table, run_experiment
from training.sources import DatasetMissingError


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
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA or Apple's MPS where PyTorch finds one, else the CPU")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="auto: bf16 where the device computes it natively, else fp32")
    parser.add_argument("--init", choices=INITS, help="first weights of the conv and linear layers (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="shared by every arm: subset, batches, augmentation, initial weights")
    parser.add_argument(
        "--dataset",
        help="train on this dataset instead of the experiment's: cifar10, hymenoptera, or a folder with one sub-folder of images per class "
        "(split 80/20 into train and validation, or its own train/ and val/)",
    )
    parser.add_argument("--no-instruments", action="store_true", help="do not read the layers' gradients, steps and outputs as the arms train")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--save-dir", type=Path, help="save results.json and each trained model here (save_pretrained format, one folder per arm); publish reads it")
    args = parser.parse_args(argv)
    commit, start = git_commit(), time.perf_counter()
    try:
        changes = ({"dataset": args.dataset} if args.dataset else {}) | ({"instruments": False} if args.no_instruments else {})
        results, models = run_experiment(args.experiment, args.preset, args.seed, args.device, args.precision, args.init, **changes)
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
