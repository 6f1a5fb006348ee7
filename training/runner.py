"""One comparison run, shared by the CLI, `reproduce` and the app: the engine's events, recorded
as they come, with a count of the steps done out of those planned. Each caller adds only how it
shows progress (a tqdm bar, live plots)."""

import re
import sys
import threading
from collections.abc import Iterator

from tqdm import tqdm

from models import model_arguments
from models.alexnet import backbone_url

from training.config import TrainConfig
from training.datasets import load_splits
from training.sources import data_activity, download_checkpoint
from training.devices import device_name, resolve_device
from training.engine import Event, Finished, Started, TrainStep, compare, model_overrides
from training.experiments import Experiment, get_experiment
from training.lessons import verdicts
from training.results import Recorder


def folder_name(label: str) -> str:
    """An arm's label as a folder name (its trained model's `save_pretrained` folder)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")


def fetch_data(configs: list[TrainConfig], poll_s: float) -> Iterator[str]:
    """Load every arm's dataset, and fetch the pretrained weights any arm starts from, in a
    thread, yielding what is happening every `poll_s` seconds: on a fresh host the first click
    downloads or decodes before anything trains."""
    failure: list[BaseException] = []

    def load() -> None:
        try:
            for name in dict.fromkeys(c.dataset for c in configs):
                load_splits(name)
        except Exception as error:  # raised again in the caller's thread
            failure.append(error)
            return
        weights = {model_arguments(c.model, **model_overrides(c)).get("backbone_weights") for c in configs} - {None}
        for name in weights:
            try:
                download_checkpoint(backbone_url(name), "AlexNet's ImageNet weights")
            except OSError:
                pass  # building the model tries again and says what to do (WeightsUnavailableError)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    while loader.is_alive():
        loader.join(poll_s)
        if loader.is_alive():
            yield data_activity() or "Loading the data"
    if failure:
        raise failure[0]


class ComparisonRun:
    """Iterate it for the comparison's events; meanwhile `recorder` holds every arm's history and
    models, and `done` and `planned` the training steps of each arm (an early stop drops the
    steps an arm skipped from `planned`)."""

    def __init__(self, experiment: Experiment, configs: list[TrainConfig]):
        self.experiment = experiment
        self.configs = configs
        self.recorder = Recorder(configs)
        self.planned: dict[str, int] = {}
        self.done: dict[str, int] = {}

    @property
    def steps_done(self) -> int:
        return sum(self.done.values())

    @property
    def steps_planned(self) -> int:
        return sum(self.planned.values())

    def __iter__(self) -> Iterator[Event]:
        for event in compare(self.configs, lockstep=self.experiment.lockstep):
            self.recorder.add(event)
            if isinstance(event, Started):
                self.planned[event.arm] = event.total_steps
            elif isinstance(event, TrainStep):
                self.done[event.arm] = event.step
            elif isinstance(event, Finished):
                self.planned[event.arm] = self.done[event.arm] = event.steps
            yield event

    def results(self, preset: str, device: str) -> dict:
        return self.recorder.to_json(self.experiment.name, preset, self.configs[0].seed, device_name(resolve_device(device)))


def run_experiment(
    name: str, preset: str, seed: int, device: str, precision: str = "auto", init: str | None = None, progress: bool = True, **changes
) -> tuple[dict, dict]:
    """Run an experiment to the end with a progress bar; return its results JSON and trained models.
    `init` None keeps the preset's; `changes` alter other shared settings (`dataset`)."""
    experiment = get_experiment(name)
    changes = {**changes, **({"init": init} if init else {})}
    run = ComparisonRun(experiment, experiment.arms(preset, seed=seed, device=device, precision=precision, **changes))
    with tqdm(total=0, unit="step", desc=name, disable=not progress, file=sys.stderr) as bar:
        for event in run:
            bar.total = run.steps_planned
            bar.update(run.steps_done - bar.n)
            if isinstance(event, TrainStep):
                bar.set_postfix_str(f"{event.arm}: loss {event.train_loss:.3f}", refresh=False)
    return run.results(preset, device), run.recorder.models


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
    for verdict in verdicts(experiment, results):
        print(f"verdict: {verdict.said}\n  ({verdict.details})")
