"""What every tab shares: bounded settings and presets.

Every number a user or an API client sends is checked here, on the server, before any work
starts. What the tabs draw is in `demo.views`; the shared controls and the streaming comparison
in `demo.panel`.
"""

import math

import gradio as gr

from demo.gpu import ON_ZEROGPU, gpu_available
from models import INITS, model_arguments
from training.data import get_dataset, images_per_epoch
from training.devices import resolve_device
from training.engine import TrainConfig
from training.experiments import Experiment, get_experiment

GPU_AVAILABLE = gpu_available()
# The report's settings on a GPU of one's own; on ZeroGPU the quick preset, whose runs each ask for
# a few seconds of a visitor's daily GPU quota (demo/gpu.py), and on a CPU the quick preset.
DEFAULT_PRESET = "report" if GPU_AVAILABLE and not ON_ZEROGPU else "quick"
# Server-side bounds of every numeric input (the sliders show the same ranges).
LIMITS = {
    "epochs": (1, 30),
    "n_train": (100, 50_000),
    "batch_size": (2, 512),
    "lr": (1e-5, 10.0),
    "momentum": (0.0, 0.99),
    "seed": (0, 2**31 - 1),
}
# Most training images one request may cost, all arms together: on a 2-core CPU about two
# minutes of the quick models at 1,500 images/s (the full quick depth grid is 108,000); on a GPU
# the report's longest comparison (three activations × 5 epochs × 50,000 images is 750,000).
MAX_IMAGES = {"cpu": 150_000, "cuda": 5_000_000}

def bounded(name: str, value, integer: bool = True):
    """`value` checked against LIMITS[name], or a gr.Error that says the allowed range."""
    low, high = LIMITS[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number between {low} and {high}, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise gr.Error(f"{name} must be between {low} and {high}, got {value}")
    if integer and number != int(number):
        raise gr.Error(f"{name} must be a whole number, got {value}")
    return int(number) if integer else number


def check_init(init: str, base: TrainConfig) -> str:
    if init not in INITS:
        raise gr.Error(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if init != base.init and "init" not in model_arguments(base.model):
        raise gr.Error("This model starts from pretrained weights; its init cannot be changed")
    return init


def check_preset(preset: str) -> str:
    if preset not in ("quick", "report"):
        raise gr.Error(f"preset must be 'quick' or 'report', got {preset!r}")
    return preset


def plan(experiment: Experiment, preset, epochs=None, n_train=None, lr=None, batch_size=None, seed=0, init=None) -> list[TrainConfig]:
    """The experiment's arms with the user's shared settings, bounded (`watch` checks the budget).
    A setting left None keeps the preset's value."""
    base = experiment.base[check_preset(preset)]
    chosen = {
        "epochs": None if epochs is None else bounded("epochs", epochs),
        "n_train": None if n_train is None else bounded("n_train", n_train),
        "batch_size": None if batch_size is None else bounded("batch_size", batch_size),
        "lr": None if lr is None else bounded("lr", lr, integer=False),
        "init": None if init is None else check_init(init, base),
    }
    return experiment.arms(preset, seed=bounded("seed", seed), **{k: v for k, v in chosen.items() if v is not None})


def check_budget(configs: list[TrainConfig]) -> None:
    device = resolve_device(configs[0].device).type
    images = sum(c.epochs * n for c, n in zip(configs, images_per_epoch(configs)))
    if images > MAX_IMAGES[device]:
        hint = " This is a GPU job: choose the quick preset, or fewer epochs or images." if device == "cpu" else ""
        raise gr.Error(f"This run would train on {images:,} images, more than the {MAX_IMAGES[device]:,} this server allows per run.{hint}")


def preset_values(experiment_name: str, preset: str) -> tuple:
    """The shared controls' values for a preset: epochs, training images, lr, batch size, init."""
    base = get_experiment(experiment_name).base[check_preset(preset)]
    return base.epochs, base.n_train or get_dataset(base.dataset).train_size, base.lr, base.batch_size, base.init


# The settings a preset note compares, in words.
SETTING_NAMES = {"n_train": "training images", "epochs": "epochs", "batch_size": "batch size", "optimizer": "optimizer", "lr": "learning rate", "lr_schedule": "learning-rate schedule", "momentum": "momentum", "nesterov": "Nesterov momentum", "weight_decay": "weight decay", "label_smoothing": "label smoothing", "test_time_flip": "flipped test images", "init": "init", "model": "model", "model_overrides": "model changes"}


def preset_note(experiment: Experiment, preset: str) -> str:
    """What a preset changes from the report's settings, read off the two presets' arms."""
    if preset == "report" or "quick" not in experiment.base:
        return "The report's settings, as far as it states them (its code's defaults where it is silent)."
    quick, report = (experiment.arms(p)[0] for p in ("quick", "report"))

    def shown(value) -> str:
        if value is None:  # n_train: the whole split
            return "all"
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)

    changed = [
        f"{words} {shown(getattr(quick, name))} (report: {shown(getattr(report, name))})"
        for name, words in SETTING_NAMES.items()
        if getattr(quick, name) != getattr(report, name)
    ]
    why = f" {experiment.quick_note}" if experiment.quick_note else ""
    return f"**The quick preset changes** {'; '.join(changed) or 'nothing'}.{why}"


def preset_controls(experiment_name: str, preset: str) -> tuple:
    """The shared controls and the note for a newly chosen preset."""
    return *preset_values(experiment_name, preset), preset_note(get_experiment(experiment_name), preset)
