"""Collect a comparison's events into the results JSON that the CLI writes and the app reads.

Schema: {"experiment", "preset", "device", "device_name", "seed", "runs": [{"label", "config",
"history", "test_acc", "train_time_s", ...}]}; `test_acc` is a fraction (0–1) and `config`
holds the arm's settings with its model's constructor arguments flattened in, so that arms can
be told apart by `batch_norm`, `momentum`, `activation`, `optimizer`, `n_conv`, `n_fc`, `mode`.
"""

from dataclasses import asdict

from models import model_arguments
from training.engine import Evaluation, Event, Finished, Started, TrainConfig, TrainStep, event_record


def describe(config: TrainConfig) -> dict:
    return {**asdict(config), **model_arguments(config.model, **config.model_overrides)}


class Recorder:
    """Feed it every event of a comparison; it keeps each arm's history and final numbers."""

    def __init__(self, configs: list[TrainConfig]):
        self.runs = {c.label: {"label": c.label, "config": describe(c), "history": []} for c in configs}
        self.models = {}
        self.device = None

    def add(self, event: Event) -> None:
        run = self.runs[event.arm]
        if isinstance(event, Started):
            self.device = event.device
            run["precision"] = event.precision
            run["parameters"] = event.parameters
        elif isinstance(event, TrainStep | Evaluation):
            run["history"].append(event_record(event))
        elif isinstance(event, Finished):
            record = event_record(event)
            del record["type"], record["arm"]
            run.update(record)
            self.models[event.arm] = event.model

    def to_json(self, experiment: str, preset: str, seed: int, device_name: str) -> dict:
        return {
            "experiment": experiment,
            "preset": preset,
            "device": self.device,
            "device_name": device_name,
            "seed": seed,
            "runs": list(self.runs.values()),
        }
