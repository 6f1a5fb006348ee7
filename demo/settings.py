"""What every comparison tab shares: the preset a host starts on, the settings a Train request
gives (checked once, on the server, by the engine's validator), the training a run may cost, and
what the quick preset changes from the report's settings, in words.
"""

from dataclasses import dataclass

from demo.gpu import ON_ZEROGPU, gpu_available
from training.config import TrainConfig, noted_settings, requested, validate
from training.datasets import get_dataset, images_per_epoch
from training.experiments import PRESETS, Experiment, get_experiment

GPU_AVAILABLE = gpu_available()
# The report's settings on a GPU of one's own; on ZeroGPU the quick preset, whose runs each ask for
# a few seconds of a visitor's daily GPU quota (demo/gpu.py), and on a CPU the quick preset.
DEFAULT_PRESET = "report" if GPU_AVAILABLE and not ON_ZEROGPU else "quick"
# Most training images one request may cost, all arms together: on a 2-core CPU about two
# minutes of the quick models at 1,500 images/s, the largest quick comparison included (the final
# CNN beside the report's recipe, 2 × 2 epochs × 45,000 = 180,000, trained in 82–99 s on the weak
# host); on a GPU the report's longest comparison (three activations × 5 epochs × 50,000 is 750,000).
MAX_IMAGES = {"cpu": 200_000, "gpu": 5_000_000}
# The settings a preset may leave to the student (None keeps the preset's value).
CHANGEABLE = ("epochs", "n_train", "lr", "batch_size")


@dataclass(frozen=True)
class Settings:
    """The shared controls' values, checked once: what every comparison tab turns into its arms.
    A setting left None keeps the preset's value."""

    preset: str = "quick"  # quick | report (see training.experiments)
    epochs: int | None = None
    n_train: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    seed: int = 0  # shared by every arm
    init: str | None = None  # default | he; the engine refuses one a pretrained model cannot take

    @classmethod
    def checked(cls, preset="quick", epochs=None, n_train=None, lr=None, batch_size=None, seed=0, init=None) -> "Settings":
        """The settings as a request gave them, each within its field's limits, or a ValueError
        that says what is allowed."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be 'quick' or 'report', got {preset!r}")
        given = dict(epochs=epochs, n_train=n_train, lr=lr, batch_size=batch_size)
        return cls(preset, **{name: None if value is None else requested(name, value) for name, value in given.items()}, seed=requested("seed", seed), init=init)

    def arms(self, experiment: Experiment) -> list[TrainConfig]:
        """The experiment's arms with these settings. A setting the page shows as the preset's own
        (the whole split as its image count, say) is no change: the arms, and so the run and its
        replay, are the preset's."""
        shown = dict(zip((*CHANGEABLE, "init"), preset_values(experiment.name, self.preset)))
        changes = {name: value for name in (*CHANGEABLE, "init") if (value := getattr(self, name)) is not None and value != shown[name]}
        return experiment.arms(self.preset, seed=self.seed, **changes)


def checked_arms(configs: list[TrainConfig]) -> list[TrainConfig]:
    """The arms a request made, each held to its settings' limits (a ValueError says which)."""
    for config in configs:
        validate(config, bounded=True)
    return configs


def check_budget(configs: list[TrainConfig], device_type: str) -> None:
    """A ValueError if the arms would train on more images than this server allows per run on
    `device_type` (cpu, or any accelerator's)."""
    images = sum(c.epochs * n for c, n in zip(configs, images_per_epoch(configs)))
    budget = MAX_IMAGES["cpu" if device_type == "cpu" else "gpu"]
    if images > budget:
        hint = " This is a GPU job: choose the quick preset, or fewer epochs or images." if device_type == "cpu" else ""
        raise ValueError(f"This run would train on {images:,} images, more than the {budget:,} this server allows per run.{hint}")


def preset_values(experiment_name: str, preset: str) -> tuple:
    """The shared controls' values for a preset: epochs, training images, lr, batch size, init."""
    base = get_experiment(experiment_name).base[preset]
    return base.epochs, base.n_train or get_dataset(base.dataset).train_size, base.lr, base.batch_size, base.init


def written(value) -> str:
    """A setting's value as a preset note writes it: n_train None is the whole split; a model's
    changed constructor arguments read as `name value` pairs."""
    if value is None:
        return "all"
    if isinstance(value, dict):
        return ", ".join(f"{name} {item}" for name, item in value.items()) or "none"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def preset_note(experiment: Experiment, preset: str) -> str:
    """What a preset changes from the report's settings, read off the two presets' arms."""
    if preset == "report" or "quick" not in experiment.base:
        return "The report's settings, as far as it states them (its code's defaults where it is silent)."
    quick, report = (experiment.arms(p)[0] for p in ("quick", "report"))
    changed = [
        f"{words} {written(getattr(quick, name))} (report: {written(getattr(report, name))})"
        for name, words in noted_settings().items()
        if getattr(quick, name) != getattr(report, name)
    ]
    why = f" {experiment.quick_note}" if experiment.quick_note else ""
    return f"**The quick preset changes** {'; '.join(changed) or 'nothing'}.{why}"


def preset_controls(experiment_name: str, preset: str) -> tuple:
    """The shared controls and the note for a newly chosen preset."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be 'quick' or 'report', got {preset!r}")
    return *preset_values(experiment_name, preset), preset_note(get_experiment(experiment_name), preset)
