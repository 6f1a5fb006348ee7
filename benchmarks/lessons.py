"""Do the quick presets teach the report's lessons at every seed, in both precisions, in time?

    python benchmarks/lessons.py [--experiments batchnorm ...] [--seeds 0 1 2 3 4] [--precisions fp32 bf16] [--write] [--write-readings]
    python benchmarks/lessons.py --table     # the tables of the runs kept in results/lessons.json and results/readings.json

Runs `python -m training EXP --preset quick` once per experiment, seed and precision, as a
student would, and prints each lesson's margin (test-accuracy points, see
`training.experiments.Lesson`), the comparison's training time, the whole command's wall time, and
what the tab's instrument reads inside the network (its gauges, training.readings).
fp32 runs emulate the weakest host we target (2 cores, AVX2, no bf16) with
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2; bf16 runs use this machine's own ISA, since a
host without native bf16 would never pick it (`--precision auto` gives fp32 there).
`--write` keeps the runs in results/lessons.json, where the app's verdicts read the spread;
`--write-readings` keeps only their readings, in results/readings.json.
Needs DATA_DIR with the real CIFAR-10; run it on an otherwise idle machine (readings alone do not
depend on the machine's load).
"""

import argparse
import datetime
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import TABS  # noqa: E402
from demo.lesson import lesson_tabs  # noqa: E402
from training.experiments import get_experiment  # noqa: E402
from training.lessons import LESSONS_FILE, margin, preset_arms  # noqa: E402
from training.readings import instrument_of  # noqa: E402
from training.results import code_version, git_commit  # noqa: E402

# The instruments' readings of the same runs (training.readings), kept apart from the margins and
# times: they can be recorded on a busy machine, since no reading depends on the time.
READINGS_FILE = ROOT / "results" / "readings.json"
WEAK_HOST = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# Every lesson tab's experiment that states a lesson of the report, in the tab bar's order.
LESSON_EXPERIMENTS = tuple(tab.experiment_name for tab in lesson_tabs(TABS) if tab.experiment.lessons)


def environment(precision: str) -> dict:
    return {**os.environ, **(WEAK_HOST if precision == "fp32" else {})}


@functools.cache
def cpu_capability(precision: str) -> str:
    """What torch says the CPU computes with, in the environment a run of this precision gets."""
    command = [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"]
    return subprocess.run(command, env=environment(precision), capture_output=True, text=True, check=True).stdout.strip()


def run_once(experiment: str, seed: int, precision: str, init: str | None = None, extra: tuple[str, ...] = ()) -> dict:
    """One CLI run (`extra`: more of its arguments); its accuracies, training times, instrument
    readings, wall time and CPU capability."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "results.json"
        command = [sys.executable, "-m", "training", experiment, "--preset", "quick", "--device", "cpu", "--seed", str(seed), "--precision", precision, "--out", str(out)] + (["--init", init] if init else []) + list(extra)
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=environment(precision), check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        results = json.loads(out.read_text())
    runs = results["runs"]
    return {
        "seed": seed,
        "precision": results["precision"],
        "cpu_capability": cpu_capability(precision),
        "accuracies": {run["label"]: run["test_acc"] for run in runs},
        "train_times_s": {run["label"]: round(run["train_time_s"], 2) for run in runs},
        "train_time_s": round(sum(run["train_time_s"] for run in runs), 1),
        "readings": {name: value if value is None else float(f"{value:.4g}") for name, value in instrument_of(experiment).numbers({run["label"]: run["instruments"] for run in runs}).items()},
        "wall_time_s": round(wall, 1),
    }


def time_grows_with_depth(run: dict) -> bool:
    """Depth grid: the mean training time of each conv count exceeds the shallower one's."""
    by_conv: dict[int, list[float]] = {}
    for label, seconds in run["train_times_s"].items():
        by_conv.setdefault(int(label.split("-")[0].removeprefix("conv")), []).append(seconds)
    means = [statistics.fmean(by_conv[c]) for c in sorted(by_conv)]
    return all(a < b for a, b in zip(means, means[1:]))


def summary_table(experiments: dict[str, dict]) -> str:
    """Markdown: one row per lesson, one column per seed × precision, then min and median."""
    columns = sorted({(run["precision"], run["seed"]) for entry in experiments.values() for run in entry["runs"]}, key=lambda c: (c[0] != "fp32", c))
    header = ["lesson"] + [f"{p} s{s}" for p, s in columns] + ["min", "median", "least asked", "train s (fp32 max)", "wall s (fp32 max)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, entry in experiments.items():
        runs = {(run["precision"], run["seed"]): run for run in entry["runs"]}
        # Times are the weak host's: the fp32 runs, where there are any.
        timed = [run for run in runs.values() if run["precision"] == "fp32"] or list(runs.values())
        for lesson in get_experiment(name).lessons:
            values = {column: margin(lesson, run["accuracies"]) for column, run in runs.items()}
            cells = [f"{values[c]:+.2f}" if c in values else "–" for c in columns]
            present = list(values.values())
            lines.append(
                f"| {name}: {lesson.name} | " + " | ".join(cells) + f" | {min(present):+.2f} | {statistics.median(present):+.2f} | {lesson.least:+.1f} | "
                f"{max(r['train_time_s'] for r in timed):.1f} | {max(r['wall_time_s'] for r in timed):.1f} |"
            )
    return "\n".join(lines)


def readings_table(experiments: dict[str, dict]) -> str:
    """Markdown: one row per gauge of each tab's instrument (training.readings), one column per
    seed × precision, then the range and the direction the literature expects."""
    columns = sorted({(run["precision"], run["seed"]) for entry in experiments.values() for run in entry["runs"]}, key=lambda c: (c[0] != "fp32", c))
    header = ["reading"] + [f"{p} s{s}" for p, s in columns] + ["min", "max", "expected"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, entry in experiments.items():
        runs = {(run["precision"], run["seed"]): run.get("readings", {}) for run in entry["runs"]}
        for gauge in instrument_of(name).gauges:
            values = {column: readings.get(gauge.name) for column, readings in runs.items()}
            present = [v for v in values.values() if v is not None]
            cells = [f"{values[c]:.3g}" if values.get(c) is not None else "–" for c in columns]
            spread = [f"{min(present):.3g}", f"{max(present):.3g}"] if present else ["–", "–"]
            lines.append(f"| {name}: {gauge.name} | " + " | ".join(cells) + " | " + " | ".join(spread) + f" | {gauge.expected.words if gauge.expected else '–'} |")
    return "\n".join(lines)


def arm_table(experiments: dict[str, dict], name: str = "final") -> str:
    """Markdown: each arm's own test accuracy and training time (its clock counts only its own
    steps) per seed and precision; the final CNN's quick preset is judged by its own arm."""
    if name not in experiments:
        return ""
    lines = ["| arm | precision | " + " | ".join(f"s{run['seed']}" for run in experiments[name]["runs"] if run["precision"] == "fp32") + " | min | train s (max) |"]
    lines.append("|" + " --- |" * (lines[0].count("|") - 1))
    for label in experiments[name]["runs"][0]["accuracies"]:
        for precision in ("fp32", "bf16"):
            runs = [run for run in experiments[name]["runs"] if run["precision"] == precision]
            if runs:
                accuracies = [run["accuracies"][label] for run in runs]
                cells = " | ".join(f"{a:.2%}" for a in accuracies)
                lines.append(f"| {label} | {precision} | {cells} | {min(accuracies):.2%} | {max(run['train_times_s'][label] for run in runs):.1f} |")
    return "\n".join(lines)


def write_readings(experiments: dict[str, dict]) -> None:
    """Merge the runs' readings into READINGS_FILE, keeping other seeds' and precisions'."""
    recorded = json.loads(READINGS_FILE.read_text()) if READINGS_FILE.exists() else {"experiments": {}}
    for name, entry in experiments.items():
        runs = [{key: run[key] for key in ("seed", "precision", "cpu_capability", "readings")} for run in entry["runs"]]
        new = {(run["precision"], run["seed"]) for run in runs}
        # Runs at other seeds or precisions are kept where they ran the same arms with the same code.
        earlier = recorded["experiments"].get(name, {})
        same = (earlier.get("arms"), earlier.get("code")) == (entry["arms"], entry["code"])
        kept = [run for run in earlier.get("runs", []) if (run["precision"], run["seed"]) not in new] if same else []
        recorded["experiments"][name] = {"preset": "quick", "arms": entry["arms"], "code": entry["code"], "runs": kept + runs}
    recorded["host"] = os.environ.get("CNNLAB_HOST", "a 2-core AMD EPYC without AVX-512 (fp32 runs as AVX2, the weakest host we target)")
    recorded["git_commit"] = git_commit()
    recorded["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    READINGS_FILE.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n")
    print(f"written to {READINGS_FILE}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=list(LESSON_EXPERIMENTS), choices=LESSON_EXPERIMENTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--init", choices=("default", "he"), help="run the presets with this init instead of their own (--write keeps them apart, under the preset's with_init)")
    parser.add_argument("--write", action="store_true", help=f"merge the runs into {LESSONS_FILE.relative_to(ROOT)}")
    parser.add_argument("--write-readings", action="store_true", help=f"merge only the runs' instrument readings into {READINGS_FILE.relative_to(ROOT)}")
    parser.add_argument("--table", action="store_true", help=f"only print the table of the runs kept in {LESSONS_FILE.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.table:
        recorded = json.loads(LESSONS_FILE.read_text())["experiments"]
        print(summary_table(recorded) + "\n\n" + arm_table(recorded))
        if READINGS_FILE.exists():
            print("\n" + readings_table(json.loads(READINGS_FILE.read_text())["experiments"]))
        return 0
    experiments = {}
    broken: list[str] = []  # readings against what their gauge expects
    for name in args.experiments:
        runs = []
        for precision in args.precisions:
            for seed in args.seeds:
                try:
                    run = run_once(name, seed, precision, args.init)
                except subprocess.CalledProcessError:  # the CLI said why (transfer: no ImageNet weights here)
                    print(f"{name}: not measured, its run failed", flush=True)
                    break
                margins = {lesson.name: round(margin(lesson, run["accuracies"]), 2) for lesson in get_experiment(name).lessons}
                extra = f", time grows with depth: {time_grows_with_depth(run)}" if name == "architecture" else ""
                print(f"{name} {precision} seed {seed} ({run['cpu_capability']}): {margins}, train {run['train_time_s']} s, wall {run['wall_time_s']} s{extra}", flush=True)
                for line in instrument_of(name).contrary(run["readings"]):  # the tab would tell a student the same
                    broken.append(f"{name} {precision} seed {seed}: {line}")
                    print(f"!!! {broken[-1]}", flush=True)
                runs.append(run)
            else:
                continue
            break  # a failed run: the experiment's other runs would fail the same way
        if runs:
            experiments[name] = {"preset": "quick", "arms": preset_arms(name, "quick", args.init), "code": code_version(), "runs": runs}
    print()
    print(summary_table(experiments) + "\n\n" + arm_table(experiments) + "\n\n" + readings_table(experiments))
    if args.write_readings:
        write_readings(experiments)
    if args.write:
        recorded = json.loads(LESSONS_FILE.read_text()) if LESSONS_FILE.exists() else {"experiments": {}}
        for name, entry in experiments.items():
            # A preset's own runs are what verdicts read; runs under another init are kept apart, for
            # the explanations that quote them.
            home = recorded["experiments"].setdefault(name, {})
            if args.init:
                home = home.setdefault("with_init", {}).setdefault(args.init, {})
            # Runs of the same arms at other seeds or precisions (an earlier invocation, the same code) are kept.
            new = {(run["precision"], run["seed"]) for run in entry["runs"]}
            if (home.get("arms"), home.get("code")) == (entry["arms"], entry["code"]):
                entry["runs"] = [run for run in home["runs"] if (run["precision"], run["seed"]) not in new] + entry["runs"]
            home.update(entry)
        recorded["host"] = os.environ.get("CNNLAB_HOST", "a 2-core AMD EPYC (fp32 runs as AVX2, the weakest host we target)")
        recorded["git_commit"] = git_commit()
        recorded["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        LESSONS_FILE.write_text(json.dumps(recorded, indent=1) + "\n")
        print(f"written to {LESSONS_FILE}")
    if broken:  # recorded as measured, and loudly: the tab's words or the gauge must change
        raise SystemExit("readings against their gauge's expectation:\n" + "\n".join(broken))
    return 0


if __name__ == "__main__":
    sys.exit(main())
