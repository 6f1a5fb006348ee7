"""What the class record says, for the pages to draw: a finished run is recorded and its verdict
told with the class's runs at its settings; a tab's board after a run; a teacher's summary of every
experiment. Plain data: Gradio is not imported here.
"""

import csv
import io
from collections import Counter
from dataclasses import dataclass, replace

from serving.class_record import ClassRecord, ClassRun, distinct_trainings, settings_key
from serving.jobs import Update, finished_status
from training.datasets import data_source
from training.experiments import Experiment, get_experiment
from training.lessons import differing_settings, margin, predictions, verdicts, with_new_settings


def report_margin(experiment: Experiment) -> float | None:
    """The first lesson's margin in the report's own figures, where it gives both sides."""
    figures = {number.arm: number.test_acc for number in experiment.report if number.test_acc is not None}
    return margin(experiment.lessons[0], figures) if experiment.lessons else None


def shared_data(results: dict) -> bool:
    """Whether every arm read data this server shares (not a session's own photos, which are
    neither kept nor comparable between students)."""
    return all(data_source(run["config"]["dataset"]) is not None for run in results["runs"])


def spread_runs(runs: list[ClassRun]) -> list[dict]:
    """The class's runs as the verdict reads them: one per training."""
    return [{"seed": run.seed, "accuracies": run.accuracies} for run in distinct_trainings(runs)]


@dataclass(frozen=True)
class Recorded:
    """A finished run as the class record took it: its row (None where it was not recorded), the
    class's runs at its settings, this one among them, which its verdict was told with, and the
    noise that verdict judged it against (its board shades the same band)."""

    run_id: int | None = None
    class_runs: tuple[dict, ...] = ()
    sigma: float | None = None


def at_settings(record: ClassRecord, experiment: Experiment, results: dict) -> list[ClassRun]:
    """The recorded runs at a finished run's settings, other seeds included."""
    configs = [run["config"] for run in results["runs"] if "test_acc" in run]
    return record.runs(experiment.name, settings_key(experiment.name, configs))


def record_finished(record: ClassRecord, experiment: Experiment, update: Update, session: str | None, client: str | None) -> tuple[Update, Recorded]:
    """Add a finished run to the record, and its update with the verdict told with the class's
    runs at its settings."""
    results = update.results
    if not update.finished or not results or not shared_data(results):
        return update, Recorded()
    run_id = record.add(results, session, client)
    if run_id is None:
        return update, Recorded()
    class_runs = tuple(spread_runs(at_settings(record, experiment, results)))
    found = verdicts(experiment, results, class_runs)
    record.settle(run_id, outcome=found[0].outcome if found else None)
    status = finished_status(update.headline, experiment, results, class_runs)
    return replace(update, status=status), Recorded(run_id, class_runs, found[0].sigma if found else None)


def predicted(record: ClassRecord, experiment: Experiment, words: str | None, recorded: Recorded | None) -> None:
    """Keep a student's prediction (the words they chose) with their recorded run."""
    outcome = {said: outcome for outcome, said in predictions(experiment).items()}.get(words or "")
    if recorded and outcome:
        record.settle(recorded.run_id, prediction=outcome)


@dataclass(frozen=True)
class Board:
    """A tab's board after a run: the class's runs at its settings (one point per training, with
    how many students finished it), this run's margin and the report's, and the predictions."""

    lesson: str  # "momentum − no momentum": what the margins measure
    points: list[tuple[int, float, int]]  # seed, margin, students
    this_run: float | None
    report: float | None
    sigma: float | None  # what this run's verdict judged its gap against: within 2σ of 0, no clear winner
    predicted: dict[str, int]  # prediction's words → students
    right: int
    wrong: int

    @property
    def runs(self) -> int:
        return len(self.points)


def board(record: ClassRecord, experiment: Experiment, results: dict | None, sigma: float | None = None) -> Board | None:
    """The board beside a finished run, its "no clear winner" band ±2 `sigma` (its verdict's), or
    None where the experiment has no lesson or the run is not in the record."""
    if not experiment.lessons or not results:
        return None
    rows = [run for run in at_settings(record, experiment, results) if run.margin is not None]
    if not rows:
        return None
    students = Counter(run.training for run in rows)
    trainings = distinct_trainings(rows)
    named = predictions(experiment)
    said = [run for run in rows if run.prediction]
    accuracies = {run["label"]: run["test_acc"] for run in results["runs"] if "test_acc" in run}
    return Board(
        experiment.lessons[0].name, [(run.seed, run.margin, students[run.training]) for run in trainings], margin(experiment.lessons[0], accuracies),
        report_margin(experiment), sigma,
        dict(Counter(named[run.prediction] for run in said)), sum(run.prediction == run.outcome for run in said), sum(run.prediction != run.outcome for run in said if run.outcome),
    )


@dataclass(frozen=True)
class Setting:
    """One experiment's runs at one setting, for the teacher: how many, where their margins fell
    beside the report's, and how the predictions did."""

    experiment: str  # its title
    differs: str  # how its settings differ from the quick preset, in a few words
    runs: int  # trainings (distinct seeds, precisions or devices)
    finished: int  # students' finished runs, replays included
    seeds: str
    margins: str  # min to max, points
    report: str
    right: int
    wrong: int
    unpredicted: int


def summary(record: ClassRecord) -> list[Setting]:
    """Every experiment's runs in the record, a line per setting, in the order they were first run."""
    by_setting: dict[tuple[str, str], list[ClassRun]] = {}
    for run in record.runs():
        by_setting.setdefault((run.experiment, run.settings), []).append(run)
    return [setting_line(get_experiment(name), rows, record.arms(key)) for (name, key), rows in by_setting.items()]


def setting_line(experiment: Experiment, rows: list[ClassRun], arms: list[dict]) -> Setting:
    trainings = distinct_trainings(rows)
    margins = [run.margin for run in trainings if run.margin is not None]
    said = [run for run in rows if run.prediction]
    reported = report_margin(experiment)
    return Setting(
        experiment.title, differing_words(experiment, arms), len(trainings), len(rows),
        ", ".join(str(seed) for seed in sorted({run.seed for run in trainings})),
        f"{min(margins):+.1f} to {max(margins):+.1f}" if margins else "–", "–" if reported is None else f"{reported:+.1f}",
        sum(run.prediction == run.outcome for run in said), sum(run.prediction != run.outcome for run in said if run.outcome), len(rows) - len(said),
    )


def differing_words(experiment: Experiment, arms: list[dict]) -> str:
    """How recorded arms differ from the experiment's presets: the preset they ran, or the settings
    in which they differ from the quick preset, with their values."""
    for preset in experiment.base:
        if not differing_settings(experiment, preset, arms):
            return f"{preset} preset"
    quick = differing_settings(experiment, "quick", arms)
    if quick == ["arms"]:
        return "arms: " + ", ".join(arm["label"] for arm in arms)
    values = {key: value for arm in map(with_new_settings, arms) for key, value in arm.items() if key in quick}  # in the config's order
    return ", ".join(f"{key} {value}" for key, value in values.items())


def as_csv(record: ClassRecord) -> str:
    """The record as CSV, a row per finished run: its settings in words (and their key), accuracies
    in columns by arm."""
    runs = record.runs()
    labels = sorted({label for run in runs for label in run.accuracies})
    words = {key: differing_words(get_experiment(name), record.arms(key)) for name, key in {(run.experiment, run.settings) for run in runs}}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["finished_at_utc", "experiment", "settings", "settings_key", "seed", "precision", "device", "margin_points", "outcome", "prediction", *(f"acc: {label}" for label in labels)])
    for run in runs:
        margin_text = "" if run.margin is None else f"{run.margin:.2f}"
        accuracies = [f"{run.accuracies[label]:.4f}" if label in run.accuracies else "" for label in labels]
        writer.writerow([run.finished_at, run.experiment, words[run.settings], run.settings, run.seed, run.precision, run.device, margin_text, run.outcome or "", run.prediction or "", *accuracies])
    return out.getvalue()
