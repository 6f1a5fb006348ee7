"""What each piece the quick final preset borrows is worth: the preset with one taken out at a time.

    python benchmarks/ablations.py [--seeds 0 1 2] [--write]

Trains the Final CNN tab's quick preset (its fast-recipe arm, `experiments.FAST_RECIPE`) as it is
and with each of `training.ablations.ABLATIONS` taken out, at each seed, in fp32 on the weakest host
we target: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 are set before torch loads. The
instruments are off (they read the network and change nothing it learns). Pieces that act only on
the test images are evaluated on the full recipe's own weights. Prints the table; `--write` keeps
it in results/ablations.json, which the tab and the README show. Needs DATA_DIR with the real
CIFAR-10; run it on an otherwise idle machine (the times are measured).
"""

import os

os.environ.update({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})  # before torch loads

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from training.ablations import ABLATIONS, ABLATIONS_FILE, FULL_RECIPE, markdown_table  # noqa: E402
from training.devices import cpu_threads  # noqa: E402
from training.engine import Finished, prepare_data, run  # noqa: E402
from training.evaluation import accuracy, evaluate  # noqa: E402
from training.experiments import FAST_RECIPE  # noqa: E402
from training.results import git_commit  # noqa: E402


def trained(config) -> Finished:
    return next(event for event in run(config) if isinstance(event, Finished))


def measure(seeds: list[int]) -> list[dict]:
    """One row per piece taken out (the full recipe first), each with its runs at every seed."""
    rows = [{"piece": FULL_RECIPE, "instead": "—", "runs": []}] + [{"piece": a.piece, "instead": a.instead, "runs": []} for a in ABLATIONS]
    for seed in seeds:
        config = replace(FAST_RECIPE, seed=seed, precision="fp32", device="cpu", instruments=False)
        full = trained(config)
        rows[0]["runs"].append({"seed": seed, "test_acc": full.test_acc, "train_time_s": round(full.train_time_s, 1)})
        print(f"{FULL_RECIPE}, seed {seed}: {full.test_acc:.2%} in {full.train_time_s:.1f} s", flush=True)
        test_data = prepare_data(config)[1]
        for ablation, row in zip(ABLATIONS, rows[1:]):
            ablated = ablation.applied(config)
            if ablation.test_time_only:
                confusion = evaluate(full.model, test_data, torch.device("cpu"), "fp32", ablated.test_time_flip, ablated.test_time_shift)
                result = {"seed": seed, "test_acc": accuracy(confusion, test_data), "train_time_s": round(full.train_time_s, 1)}
            else:
                finished = trained(ablated)
                result = {"seed": seed, "test_acc": finished.test_acc, "train_time_s": round(finished.train_time_s, 1)}
            row["runs"].append(result)
            print(f"without {ablation.piece}, seed {seed}: {result['test_acc']:.2%} in {result['train_time_s']} s", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--write", action="store_true", help=f"keep the table in {ABLATIONS_FILE.relative_to(ABLATIONS_FILE.parent.parent)}")
    args = parser.parse_args()
    torch.set_num_threads(cpu_threads())
    results = {
        "host": os.environ.get("CNNLAB_HOST", "a 2-core AMD EPYC"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "precision": "fp32",
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "recipe": asdict(FAST_RECIPE),  # the preset measured: a test flags the table once the preset changes
        "seeds": args.seeds,
        "rows": measure(args.seeds),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    print("\n" + markdown_table(results))
    if args.write:
        ABLATIONS_FILE.write_text(json.dumps(results, indent=1) + "\n")
        print(f"written to {ABLATIONS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
