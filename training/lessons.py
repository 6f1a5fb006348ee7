"""Did a run show what the report found? Margins, their measured seed-to-seed spread, a verdict.

A lesson (`experiments.Lesson`) is a margin in test-accuracy points between arms. Whether one
run's margin means anything depends on how much that margin moves when only the seed changes,
so `benchmarks/lessons.py` measures it (seeds 0–4, fp32 and bf16, on the weak host) and writes
`results/lessons.json`; the verdict reads that spread back. For settings nobody measured, a
margin is judged against the larger of the test set's own sampling error and the seed spread
measured at the nearest preset (moving a slider does not make seeds agree more), and the verdict
says which.
"""

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from training.config import TrainConfig, noted_settings
from training.experiments import Experiment, Lesson, get_experiment

LESSONS_FILE = Path(__file__).parent.parent / "results" / "lessons.json"
# A class's own runs at a run's settings enter its verdict from this many on: fewer give no spread
# worth a number.
MIN_CLASS_RUNS = 3
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


def preset_arms(experiment_name: str, preset: str, init: str | None = None) -> list[dict]:
    """A preset's arms (under another init, where one is named) as JSON-ready dicts, as recorded
    beside their measured spread."""
    arms = get_experiment(experiment_name).arms(preset, **({"init": init} if init else {}))
    return json.loads(json.dumps([asdict(arm) for arm in arms]))


def spread(lesson: Lesson, recorded: dict) -> dict | None:
    """min, median, max and standard deviation of a lesson's margin over the recorded runs."""
    values = [m for run in recorded["runs"] if (m := margin(lesson, run["accuracies"])) is not None]
    if len(values) < 2:
        return None
    return {"runs": len(values), "min": min(values), "median": statistics.median(values), "max": max(values), "std": statistics.stdev(values)}


def differing_settings(experiment: Experiment, preset: str, configs: list[dict]) -> list[str]:
    """The settings in which these arms differ from the preset's (seed, device and precision
    aside); "arms" where the arms themselves are not the preset's."""
    arms = {arm.label: asdict(arm) for arm in experiment.arms(preset)}
    if sorted(arms) != sorted(config["label"] for config in configs):
        return ["arms"]
    return sorted(differing_keys(configs, arms))


def differing_keys(configs: list[dict], against: dict[str, dict]) -> set[str]:
    """The settings in which arms differ from the arms of the same label in `against` (seed,
    device and precision aside; arms without a namesake there are not compared)."""
    return {
        key
        for config in map(with_new_settings, configs) if config["label"] in against
        for key, value in against[config["label"]].items() if key not in UNMEASURED_FIELDS and config.get(key) != value
    }


def is_preset(experiment: Experiment, preset: str, configs: list[dict]) -> bool:
    """Whether every arm ran the preset's own settings (seed, device and precision aside)."""
    return preset in experiment.base and not differing_settings(experiment, preset, configs)


def nearest_measured(experiment: Experiment, configs: list[dict]) -> tuple[str, dict, list[str]] | None:
    """Of the experiment's presets whose seed runs are recorded, the nearest to these arms: the one
    they differ from in the fewest settings (the first in preset order on a tie). Returns the
    preset, its recorded runs and the settings that differ, or None where no preset is recorded."""
    candidates = [(preset, recorded) for preset in experiment.base if (recorded := measured(experiment.name, preset))]
    ranked = [(preset, recorded, differing_settings(experiment, preset, configs)) for preset, recorded in candidates]
    return min(ranked, key=lambda entry: len(entry[2]), default=None)


def seed_context(recorded: dict) -> str:
    """The seeds, precisions and machine a preset's recorded spread comes from."""
    runs = recorded["runs"]
    seeds = sorted({r["seed"] for r in runs})
    named = f"{seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ", ".join(map(str, seeds))
    return f"seeds {named} in {' and '.join(sorted({r['precision'] for r in runs}))} on {recorded['host']}"


def sampling_noise(runs: list[dict]) -> float:
    """Standard error, in points, of the difference of two accuracies on this test set."""
    n = max(1, sum(sum(row) for row in runs[0]["confusion"]))
    p = statistics.fmean(run["test_acc"] for run in runs)
    return 100 * math.sqrt(2 * p * (1 - p) / n)


@dataclass(frozen=True)
class Verdict:
    """One lesson's verdict on a finished run. `said` is what a student reads: who came out ahead
    and by how much, whether that is beyond what repeat runs vary by (with their range), and what
    to try where it is not. `details` names the noise it was judged against and where that was
    measured, for whoever asks how sure it is."""

    said: str
    details: str
    outcome: str  # "ahead" (the report's direction), "behind" or "unclear"
    sigma: float  # the noise it was judged against, points: within twice it, no clear winner


@dataclass(frozen=True)
class Noise:
    """What a margin is judged against: its size (points, 1 σ), what repeat runs did in words, and
    where it was measured."""

    sigma: float
    variation: str  # "In 10 repeat runs of these settings (other seeds) the gap was +9.1 to +14.2 points."
    details: str


def verdicts(experiment: Experiment, results: dict, class_runs: list[dict] = ()) -> list[Verdict]:
    """One verdict per lesson: how this finished run compares with the report. A margin within
    twice the noise is no clear winner. `class_runs` ({"seed", "accuracies"}, one per training) are
    the class's runs at these settings, this one among them: from MIN_CLASS_RUNS on they are said,
    and their spread is judged against where it is the larger (never to sound surer)."""
    runs = [run for run in results["runs"] if "test_acc" in run]
    if not runs:
        return []
    accuracies = {run["label"]: run["test_acc"] for run in runs}
    configs = [run["config"] for run in runs]
    on_preset = is_preset(experiment, results["preset"], configs)
    recorded = measured(experiment.name, results["preset"]) if on_preset else None
    nearest = None if recorded else nearest_measured(experiment, configs)  # a preset nobody measured (report) too
    found = []
    for lesson in experiment.lessons:
        points = margin(lesson, accuracies)
        if points is None:
            continue
        noise = with_class_spread(lesson, judged_against(lesson, runs, recorded, nearest), class_runs)
        ahead, behind = lesson.ahead_label, lesson.behind_label
        outcome = "unclear" if abs(points) <= 2 * noise.sigma else "ahead" if points > 0 else "behind"
        if outcome == "unclear":
            said = (
                f"No clear winner this time: {ahead} {'ahead of' if points >= 0 else 'behind'} {behind} by {abs(points):.1f} points, "
                f"a gap repeat runs can make by chance. {noise.variation} To find out, train again with another seed, or more epochs, "
                f"and see whether the gap holds."
            )
        elif outcome == "ahead":
            said = f"{ahead} came out ahead of {behind} by {points:.1f} points, as the report found. {noise.variation}"
        else:
            said = f"{behind} came out ahead of {ahead} by {-points:.1f} points: the opposite of what the report found. {noise.variation}"
        found.append(Verdict(said, f"Judged against σ {noise.sigma:.1f} points (a clear result is over twice that): {noise.details}.", outcome, noise.sigma))
    return found


def judged_against(lesson: Lesson, runs: list[dict], recorded: dict | None, nearest: tuple[str, dict, list[str]] | None) -> Noise:
    """The noise a margin is judged against: this preset's measured seed σ; off the preset, the
    larger of the test set's own noise and the nearest measured preset's seed σ."""
    seeds = spread(lesson, recorded) if recorded else None
    if seeds:
        gap = f"the gap was {seeds['min']:+.1f} to {seeds['max']:+.1f} points"
        return Noise(seeds["std"], f"In {seeds['runs']} repeat runs of these settings (other seeds) {gap}.", f"this preset's seed-to-seed spread, {seed_context(recorded)}")
    test = sampling_noise(runs)
    images = max(1, sum(sum(row) for row in runs[0]["confusion"]))
    alone = f"with {images:,} test images, a gap is uncertain by about {2 * test:.1f} points either way from the test images alone"
    nearby = spread(lesson, nearest[1]) if nearest else None
    if nearby is None:
        return Noise(test, f"Nobody has repeated these settings; {alone}.", "the test set's own sampling noise; no seed spread was measured for these settings")
    preset, differing = nearest[0], ", ".join(nearest[2])
    if nearby["std"] > test:
        return Noise(
            nearby["std"],
            f"Nobody has repeated exactly these settings; at the {preset} preset's, which differ in {differing}, the gap was "
            f"{nearby['min']:+.1f} to {nearby['max']:+.1f} points over {nearby['runs']} repeat runs.",
            f"the seed-to-seed spread measured at the {preset} preset, {seed_context(nearest[1])}; the test set alone would give ±{test:.1f}",
        )
    return Noise(
        test,
        f"Nobody has repeated these settings; {alone}, more than repeat runs at the {preset} preset vary by.",
        f"the test set's own sampling noise, more than the {preset} preset's seed σ ({nearby['std']:.1f}; these settings differ in {differing})",
    )


def with_class_spread(lesson: Lesson, noise: Noise, class_runs: list[dict]) -> Noise:
    """The noise, told first what the class's own runs at these settings did (from MIN_CLASS_RUNS
    runs on), and judged against their spread where it is the larger."""
    runs = spread(lesson, {"runs": class_runs}) if len(class_runs) >= MIN_CLASS_RUNS else None
    if runs is None:
        return noise
    seeds = ", ".join(str(seed) for seed in sorted({run["seed"] for run in class_runs}))
    said = f"In {runs['runs']} runs at these settings in your class (seeds {seeds}) the gap was {runs['min']:+.1f} to {runs['max']:+.1f} points."
    if runs["std"] > noise.sigma:
        return Noise(runs["std"], f"{said} {noise.variation}", f"the spread of your class's {runs['runs']} runs at these settings, larger than {noise.details} (σ {noise.sigma:.1f})")
    return Noise(noise.sigma, f"{said} {noise.variation}", f"{noise.details}; your class's {runs['runs']} runs at these settings spread less (σ {runs['std']:.1f})")


def reference_disagreements(experiment: Experiment, results: dict, reference: dict | None) -> list[str]:
    """Where the recorded reference run (the tab's dashed curves) came out the other way from this
    finished run, one sentence each: a student sees the dashed curves contradict the verdict, and
    is told which settings the two runs differ in."""
    runs = [run for run in results["runs"] if "test_acc" in run]
    if not reference or not runs:
        return []
    theirs = {run["label"]: run["test_acc"] for run in reference["runs"]}
    ours = {run["label"]: run["test_acc"] for run in runs}
    words = noted_settings()
    recorded = {run["label"]: with_new_settings(run["config"]) for run in reference["runs"]}
    differing = sorted(words[key] for key in differing_keys([run["config"] for run in runs], recorded) if key in words)
    said = []
    for lesson in experiment.lessons:
        here, there = margin(lesson, ours), margin(lesson, theirs)
        if here is None or there is None or (here > 0) == (there > 0):
            continue
        first, second = (lesson.ahead_label, lesson.behind_label) if there > 0 else (lesson.behind_label, lesson.ahead_label)
        said.append(
            f"The dashed reference run has {first} ahead of {second} instead, by {abs(there):.1f} points: it ran the report's settings, "
            f"which differ from this run's in {', '.join(differing) or 'nothing the page sets'}. "
            "“What the quick preset changes, and why” says which of them turns the result around."
        )
    return said


def predictions(experiment: Experiment) -> dict[str, str]:
    """What a student may predict of an experiment's first lesson (which side comes out ahead), by
    the outcome it names."""
    lesson = experiment.lessons[0]
    return {"ahead": lesson.ahead_label, "behind": lesson.behind_label, "unclear": "no clear winner"}


def judged_prediction(experiment: Experiment, predicted: str | None, results: dict | None, class_runs: list[dict] = ()) -> str:
    """Whether a student's prediction of the first lesson came true, in their words, by the verdict
    their run was told (with the class's runs it was told with); "" where nothing was predicted or
    nothing finished."""
    found = verdicts(experiment, results, class_runs) if predicted and results else []
    if not found:
        return ""
    named = predictions(experiment)
    happened = found[0].outcome
    outcome = named[happened] + ("" if happened == "unclear" else " came out ahead")
    right = "right" if named[happened] == predicted else "not this time"
    return f"**Your prediction, {predicted}: {right}.** This run: {outcome} (the verdict above says by how much, and why)."
