"""Collect a comparison's events into the results JSON that the CLI writes and the app reads.

Schema: {"experiment", "preset", "device", "device_name", "seed", "runs": [{"label", "config",
"history", "instruments", "test_acc", "train_time_s", ...}]}; `instruments` holds the arm's
readings inside the network, one record {step, layer, grad_norm, update_ratio, step_cosine,
travelled, act_std, dead_share} per layer and reading (training.instruments; empty when they
are off, and absent from runs recorded before them); `test_acc` is a fraction (0–1) and `config`
holds the arm's settings with its model's constructor arguments flattened in, so that arms can
be told apart by `batch_norm`, `momentum`, `activation`, `optimizer`, `n_conv`, `n_fc`, `mode`.

Recorded results live in two places, named here for the CLI that writes them and the app that
reads them: reference runs in REFERENCE_DIR, one JSON each, and the experiments whose model
ships with the app in PRETRAINED_DIR, one folder each, whose arms keep their test-set
predictions in TEST_PREDICTIONS (training/reproduce.py).
"""

import datetime
import functools
import hashlib
import json
import subprocess
from dataclasses import asdict
from pathlib import Path

import torch

from models import model_arguments
from training.config import TrainConfig
from training.datasets import data_description
from training.engine import Evaluation, Event, Finished, Reading, Started, TrainStep, event_record, model_overrides, reading_records


def describe(config: TrainConfig) -> dict:
    return {**asdict(config), **model_arguments(config.model, **model_overrides(config))}


class Recorder:
    """Feed it every event of a comparison; it keeps each arm's history and final numbers."""

    def __init__(self, configs: list[TrainConfig]):
        self.runs = {c.label: {"label": c.label, "config": describe(c), "history": [], "instruments": []} for c in configs}
        self.models = {}
        self.device = None
        self.precision = None

    def add(self, event: Event) -> None:
        run = self.runs[event.arm]
        if isinstance(event, Started):
            self.device = event.device
            self.precision = event.precision
            run["precision"] = event.precision
            run["parameters"] = event.parameters
        elif isinstance(event, TrainStep | Evaluation):
            run["history"].append(event_record(event))
        elif isinstance(event, Reading):
            run["instruments"] += reading_records(event)
        elif isinstance(event, Finished):
            record = event_record(event)
            del record["type"], record["arm"]
            run.update(record)
            self.models[event.arm] = event.model

    @classmethod
    def restored(cls, results: dict, models: dict) -> "Recorder":
        """A recorder holding a finished run read back from its results JSON and models."""
        recorder = cls([])
        recorder.runs = {run["label"]: run for run in results["runs"]}
        recorder.models = dict(models)
        recorder.device, recorder.precision = results["device"], results.get("precision")
        return recorder

    def snapshot(self) -> "Recorder":
        """A copy that later events leave as it is, for readers in other threads (the models are shared)."""
        copy = Recorder([])
        copy.runs = {label: {**run, "history": list(run["history"]), "instruments": list(run.get("instruments", []))} for label, run in self.runs.items()}
        copy.models = dict(self.models)
        copy.device, copy.precision = self.device, self.precision
        return copy

    def to_json(self, experiment: str, preset: str, seed: int, device_name: str) -> dict:
        return {
            "experiment": experiment,
            "preset": preset,
            "device": self.device,
            "device_name": device_name,
            "precision": self.precision,  # what the arms computed in (one for all): fp32 or bf16
            "seed": seed,
            "runs": list(self.runs.values()),
        }


# The folders whose code decides a run's numbers: a recording names their uncommitted changes, and
# the run cache keys its entries by their files.
CODE_FOLDERS = ("training", "models")
CODE_FILES = sorted(path for folder in CODE_FOLDERS for path in (Path(__file__).parent.parent / folder).glob("*.py"))


@functools.cache
def code_version() -> str:
    """A digest of the training and model code and of torch's version: what a run's numbers depend
    on besides its settings, data and device (the run cache's key; the recorded seed runs')."""
    digest = hashlib.sha256(torch.__version__.encode())
    for path in CODE_FILES:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def git_commit(repo: Path = Path(__file__).parent.parent) -> str | None:
    """HEAD's commit, and the code files that differ from it: a recording made from a working tree
    with uncommitted changes to them ran code that no commit holds."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=repo).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", *CODE_FOLDERS], capture_output=True, text=True, check=True, cwd=repo).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    changed = sorted(line[3:] for line in status.splitlines() if line[3:].endswith(".py"))
    return f"{head} with uncommitted changes to {', '.join(changed)}" if changed else head


def provenance(results: dict, commit: str | None, wall_time_s: float) -> dict:
    """Where and when a run was made: stored with reference runs and saved models."""
    return {
        "device_name": results["device_name"],
        "data": data_description(results["runs"][0]["config"]["dataset"]),  # which copy: the original pixels or a folder of (lossy) files
        "torch": torch.__version__,
        "git_commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 1),
    }


def thinned(results: dict, max_loss_points: int = 1000) -> dict:
    """`results` with at most `max_loss_points` evenly spaced training-loss points per arm, the
    first and last included; every evaluation is kept. A report-length run logs a loss point
    every 0.25 s, thousands per arm, far more than a plot of it can show."""
    runs = []
    for run in results["runs"]:
        steps = [i for i, point in enumerate(run["history"]) if point["type"] == "TrainStep"]
        keep = {steps[round(k * (len(steps) - 1) / (max_loss_points - 1))] for k in range(max_loss_points)} if len(steps) > max_loss_points else set(steps)
        history = [point for i, point in enumerate(run["history"]) if i in keep or point["type"] != "TrainStep"]
        runs.append({**run, "history": history})
    return {**results, "runs": runs}


REFERENCE_DIR = Path(__file__).parent.parent / "results" / "reference"
PRETRAINED_DIR = Path("pretrained")  # where embedded experiments are recorded, one folder each
TEST_PREDICTIONS = "test_predictions.safetensors"  # label, predicted: N uint8 classes; confidence: N float16
RUN_KEYS = {"label": str, "config": dict, "history": list, "test_acc": float, "train_time_s": float}
PROVENANCE_KEYS = ("device_name", "torch", "git_commit", "date", "wall_time_s")


def validate_results(results: dict) -> dict:
    """`results` if it follows the results schema (reference runs: with provenance), else ValueError."""
    for key in ("experiment", "preset", "device", "seed", "runs"):
        if key not in results:
            raise ValueError(f"results lack {key!r}")
    if not results["runs"]:
        raise ValueError("results hold no runs")
    for run in results["runs"]:
        for key, kind in RUN_KEYS.items():
            if not isinstance(run.get(key), kind) and not (kind is float and isinstance(run.get(key), int)):
                raise ValueError(f"run {run.get('label')!r}: {key!r} must be {kind.__name__}")
        if not 0 <= run["test_acc"] <= 1:
            raise ValueError(f"run {run['label']!r}: test_acc {run['test_acc']} is not a fraction")
        for point in run["history"]:
            if point.get("type") not in ("TrainStep", "Evaluation") or "epoch" not in point:
                raise ValueError(f"run {run['label']!r}: malformed history point {point}")
    return results


def load_reference(experiment: str, folder: Path = REFERENCE_DIR) -> dict | None:
    """The recorded reference run of an experiment, or None where none has been recorded."""
    path = folder / f"{experiment}.json"
    if not path.exists():
        return None
    results = validate_results(json.loads(path.read_text()))
    missing = [k for k in PROVENANCE_KEYS if k not in results.get("provenance", {})]
    if missing:
        raise ValueError(f"{path} lacks provenance: {', '.join(missing)}")
    return results


@functools.cache
def committed_reference(experiment: str) -> dict | None:
    """The committed reference run of an experiment, read once per process (every page draws it and
    every finished run's verdict reads it), or None where there is none or it cannot be read."""
    try:
        return load_reference(experiment)
    except (OSError, ValueError) as error:
        print(f"ignoring the reference run of {experiment}: {error}")
        return None
