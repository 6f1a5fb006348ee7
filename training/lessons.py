"""Did a run show what the report found? Margins, their measured seed-to-seed spread, a verdict.

A lesson (`experiments.Lesson`) is a margin in test-accuracy points between arms. Whether one
run's margin means anything depends on how much that margin moves when only the seed changes,
so `benchmarks/lessons.py` measures it (seeds 0–4, fp32 and bf16, on the weak host) and writes
`results/lessons.json`; the verdict reads that spread back. For settings nobody measured, the
only noise we know is the test set's own sampling error, and the verdict says so.
"""

import json
import math
import statistics
from dataclasses import asdict
from pathlib import Path

from training.config import TrainConfig
from training.experiments import Experiment, Lesson, get_experiment

LESSONS_FILE = Path(__file__).parent.parent / "results" / "lessons.json"
# Settings that may differ from the preset without changing what was measured.
UNMEASURED_FIELDS = {"seed", "device", "precision", "event_interval_s", "label"}


def with_new_settings(config: dict) -> dict:
    """A recorded arm's settings with those added to TrainConfig since it ran filled in at their
    defaults, which train exactly as runs did before the settings existed."""
    return {**json.loads(json.dumps(asdict(TrainConfig()))), **config}


def member(label: str, name: str) -> bool:
    return label == name or label.startswith(name + " ")


def margin(lesson: Lesson, accuracies: dict[str, float]) -> float | None:
    """Points by which the `ahead` arms lead the `behind` arms (accuracies are fractions), or None
    where the run lacks either side."""
    ahead = [acc for label, acc in accuracies.items() if any(member(label, name) for name in lesson.ahead)]
    behind = [acc for label, acc in accuracies.items() if any(member(label, name) for name in lesson.behind)]
    if not ahead or not behind:
        return None
    return 100 * (statistics.fmean(ahead) - statistics.fmean(behind))


def measured(experiment_name: str, preset: str, path: Path | None = None) -> dict | None:
    """The recorded seed runs of an experiment's preset: {"host", "runs": [{"seed", "precision",
    "accuracies", "train_time_s", ...}]}, or None where none were recorded."""
    try:
        recorded = json.loads((path or LESSONS_FILE).read_text())
    except (OSError, ValueError):
        return None
    entry = recorded.get("experiments", {}).get(experiment_name)
    if not entry or entry.get("preset") != preset:
        return None
    # A spread measured for other settings says nothing about the preset as it is now.
    if [with_new_settings(arm) for arm in entry.get("arms", [])] != preset_arms(experiment_name, preset):
        return None
    return {"host": recorded.get("host", "unknown host"), **entry}


def preset_arms(experiment_name: str, preset: str) -> list[dict]:
    """A preset's arms as JSON-ready dicts, as recorded beside their measured spread."""
    return json.loads(json.dumps([asdict(arm) for arm in get_experiment(experiment_name).arms(preset)]))


def spread(lesson: Lesson, recorded: dict) -> dict | None:
    """min, median, max and standard deviation of a lesson's margin over the recorded runs."""
    values = [m for run in recorded["runs"] if (m := margin(lesson, run["accuracies"])) is not None]
    if len(values) < 2:
        return None
    return {"runs": len(values), "min": min(values), "median": statistics.median(values), "max": max(values), "std": statistics.stdev(values)}


def is_preset(experiment: Experiment, preset: str, configs: list[dict]) -> bool:
    """Whether every arm ran the preset's own settings (seed, device and precision aside)."""
    if preset not in experiment.base:
        return False
    arms = {arm.label: asdict(arm) for arm in experiment.arms(preset)}
    for config in map(with_new_settings, configs):
        own = arms.get(config["label"])
        if own is None or any(config.get(key) != value for key, value in own.items() if key not in UNMEASURED_FIELDS):
            return False
    return len(configs) == len(arms)


def sampling_noise(runs: list[dict]) -> float:
    """Standard error, in points, of the difference of two accuracies on this test set."""
    n = max(1, sum(sum(row) for row in runs[0]["confusion"]))
    p = statistics.fmean(run["test_acc"] for run in runs)
    return 100 * math.sqrt(2 * p * (1 - p) / n)


def verdicts(experiment: Experiment, results: dict) -> list[str]:
    """One line per lesson: how this finished run compares with the report."""
    runs = [run for run in results["runs"] if "test_acc" in run]
    if not runs:
        return []
    accuracies = {run["label"]: run["test_acc"] for run in runs}
    recorded = measured(experiment.name, results["preset"]) if is_preset(experiment, results["preset"], [run["config"] for run in runs]) else None
    lines = []
    for lesson in experiment.lessons:
        points = margin(lesson, accuracies)
        if points is None:
            continue
        seeds = spread(lesson, recorded) if recorded else None
        if seeds:
            noise, what = seeds["std"], "this preset's seed-to-seed σ"
            runs_measured = recorded["runs"]
            context = (
                f"Seed-to-seed spread of this preset: {seeds['min']:+.1f} to {seeds['max']:+.1f} (median {seeds['median']:+.1f}, σ {noise:.1f}) "
                f"over seeds {', '.join(str(s) for s in sorted({r['seed'] for r in runs_measured}))} in {' and '.join(sorted({r['precision'] for r in runs_measured}))} "
                f"on {recorded['host']}."
            )
        else:
            noise, what = sampling_noise(runs), "the test set's own noise"
            context = f"No seed spread was measured for these settings; the test set alone makes a margin uncertain by ±{noise:.1f} (1 σ)."
        ahead, behind = lesson.ahead_label, lesson.behind_label
        if abs(points) <= 2 * noise:
            lines.append(f"Inconclusive this time: {ahead} {'ahead of' if points >= 0 else 'behind'} {behind} by {abs(points):.1f} points, within twice {what}. {context}")
        elif points > 0:
            lines.append(f"{ahead} ahead of {behind} by {points:.1f} points, as the report found. {context}")
        else:
            lines.append(f"{behind} ahead of {ahead} by {-points:.1f} points: the opposite of the report's finding. {context}")
    return lines
