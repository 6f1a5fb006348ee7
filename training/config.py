"""One training run's settings (after nanoGPT's one readable config) and their one validator.

Every fact about a setting lives on its field: its comment, the range a request from the app or
its API may ask for (`limits`), how a preset note names it (`words`) and whether a model card
lists it (`card`). The app's sliders, the preset notes and the model cards all read those facts
from here, so a new field cannot silently drop out of one of them.
"""

import math
import typing
from dataclasses import dataclass, field, fields, replace

from models import INITS, model_arguments
from training.devices import ACCELERATORS

OPTIMIZERS = ("sgd", "adadelta", "adam", "muon")
LR_SCHEDULES = ("constant", "linear", "onecycle")
DEVICES = ("auto", "cpu", *ACCELERATORS)
PRECISIONS = ("auto", "fp32", "bf16")
PADDING_MODES = ("zeros", "reflect")
# Widest training-crop padding: beyond a quarter of a CIFAR-10 image a crop is mostly padding.
MAX_CROP_PADDING = 8


def setting(default=None, *, limits: tuple | None = None, words: str = "", card: bool | tuple[str, ...] = False, default_factory=None):
    """A TrainConfig field with its facts: `limits` (low, high) bound what a request may ask for;
    `words` name it in a preset note (empty: never noted); `card`: a model card lists it (for
    `model_overrides`: which of the model's constructor arguments it lists)."""
    metadata = {"limits": limits, "words": words, "card": card}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """One training run (one arm of a comparison)."""

    label: str = "run"  # the arm's name in plots, tables and saved folders
    dataset: str = "cifar10"  # cifar10 | hymenoptera (ants vs bees) | a folder with one sub-folder of images per class (training.datasets.get_dataset)
    model: str = setting("cnn-quick", words="model", card=True)  # a name from models.list_models()
    model_overrides: dict = setting(default_factory=dict, words="model changes", card=("widths", "mode", "batch_norm"))  # constructor arguments changed from the preset
    init: str = setting("default", words="init")  # first weights of conv/linear layers: default (PyTorch's, as in the report) | he
    optimizer: str = setting("sgd", words="optimizer", card=True)  # sgd | adadelta | adam | muon: the conv filters take Muon's orthogonalised steps, everything else Nesterov SGD's (training.muon)
    lr: float = setting(0.01, limits=(1e-5, 10.0), words="learning rate", card=True)  # learning rate (Adadelta's own default is 1.0)
    lr_schedule: str = setting("constant", words="learning-rate schedule", card=True)  # constant | linear: decays to 0 at the last step, so the run ends on settled weights | onecycle: warms up, then decays to 0
    momentum: float = setting(0.0, limits=(0.0, 0.99), words="momentum", card=True)  # SGD momentum β; 0 is plain SGD
    filter_lr: float = setting(0.24, words="filter learning rate", card=True)  # muon: the conv filters' learning rate; each bank is held at a fixed norm, so this is its step's size relative to the filters
    filter_momentum: float = setting(0.6, words="filter momentum", card=True)  # muon: the conv filters' (Nesterov) momentum β
    nesterov: bool = setting(False, words="Nesterov momentum", card=True)  # SGD (and muon's SGD steps): Nesterov's momentum, which looks ahead along the velocity before taking the gradient
    label_smoothing: float = setting(0.0, words="label smoothing", card=True)  # share of each target spread over all classes: the net is not pushed to ever more confident logits
    weight_decay: float = setting(0.0, words="weight decay", card=True)  # L2 penalty added by the optimizer
    lookahead: bool = setting(False, words="lookahead", card=True)  # every 5 steps the weights move back towards a slow average of themselves, more so as the run ends (hlb-CIFAR10, airbench; training.lookahead)
    norm_lr_scale: float = 1.0  # batch-norm parameters (for muon every bias) learn this many times faster (airbench: 64); their weight decay is divided by it, so each step decays them as much as the rest
    batch_size: int = setting(64, limits=(2, 512), words="batch size", card=True)  # training images per step
    epochs: int = setting(2, limits=(1, 30), words="epochs", card=True)  # passes over the training subset
    crop_padding: int | None = None  # training crops are cut from images padded by this many pixels; None = the dataset's own (CIFAR-10: 4)
    crop_padding_mode: str = setting("zeros", words="crop padding", card=True)  # zeros | reflect: the padding mirrors the image's edge, so a shifted crop shows no black border (airbench)
    alternating_flip: bool = setting(False, words="alternating flips", card=True)  # each image is mirrored in every other epoch (from a random start) instead of at random, so two epochs show both sides (airbench)
    n_train: int | None = setting(None, limits=(100, 50_000), words="training images", card=True)  # class-balanced training subset size; None = the whole split
    n_test: int | None = None  # class-balanced evaluation subset size; None = the whole split
    seed: int = setting(0, limits=(0, 2**31 - 1), card=True)  # subset, batch order, augmentation, initial weights and dropout
    device: str = "auto"  # auto (the accelerator PyTorch finds, else the CPU) | cpu | cuda | mps (an Apple GPU)
    precision: str = "auto"  # auto | fp32 | bf16 (auto: bf16 where the device computes it natively)
    loss_threshold: float | None = setting(None, card=True)  # stop once a batch loss falls below this (report's final run: 0.005)
    evals_per_epoch: float = 1  # test-set evaluations per epoch (more points on a short run's curve; 0.25: one every 4 epochs)
    event_interval_s: float = 0.25  # least seconds between two training-loss events of one arm
    cache_frozen_features: bool = True  # feature extraction: run the frozen backbone once, not every step
    test_time_flip: bool = setting(False, words="flipped test images", card=True)  # evaluate on each test image and its mirror image, averaging the two predictions
    test_time_shift: bool = setting(False, words="shifted test images", card=True)  # also average in each test image shifted by a pixel up-left and down-right (edges mirrored), weighing the shifted views as much as the unshifted (airbench)
    instruments: bool = True  # read each layer's gradient, steps and output every few steps (training.instruments); costs a few percent of training


def changed(config: TrainConfig, changes: dict) -> TrainConfig:
    """`config` with some fields changed; `changes["model_overrides"]` adds to the config's own
    model overrides instead of replacing them."""
    changes = dict(changes)
    model_overrides = {**config.model_overrides, **changes.pop("model_overrides", {})}
    return replace(config, model_overrides=model_overrides, **changes)


FIELDS = {f.name: f for f in fields(TrainConfig)}
TYPES = typing.get_type_hints(TrainConfig)


def limits(name: str) -> tuple:
    """The (low, high) a request may ask for of a setting."""
    return FIELDS[name].metadata["limits"]


def noted_settings() -> dict[str, str]:
    """Setting → how a preset note names it, in the config's order."""
    return {name: f.metadata["words"] for name, f in FIELDS.items() if f.metadata.get("words")}


def card_settings() -> list[str]:
    """The settings (and model constructor arguments) a model card lists, in the config's order."""
    names = []
    for name, f in FIELDS.items():
        card = f.metadata.get("card")
        names += list(card) if isinstance(card, tuple) else [name] if card else []
    return names


def is_integer(name: str) -> bool:
    kind = TYPES[name]
    return kind is int or int in typing.get_args(kind)


def requested(name: str, value) -> int | float:
    """A value a request gave for a limited setting, as its field's type and within its limits,
    or a ValueError that says the allowed range."""
    low, high = limits(name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number between {low} and {high}, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    if is_integer(name) and number != int(number):
        raise ValueError(f"{name} must be a whole number, got {value}")
    return int(number) if is_integer(name) else number


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_at_least(config: TrainConfig, names: tuple[str, ...], least: int, none_means: str = "") -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < least:
            raise ValueError(f"{name} must be at least {least}{none_means}, got {value}")


def validate(config: TrainConfig, bounded: bool = False) -> None:
    """Reject settings that cannot train, with a message naming the setting; `bounded` (a request
    from the app or its API) first holds every setting to its field's limits."""
    if bounded:
        for name, f in FIELDS.items():
            if f.metadata.get("limits") and getattr(config, name) is not None:
                requested(name, getattr(config, name))
    for name, choices in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES), ("init", INITS), ("device", DEVICES), ("precision", PRECISIONS), ("crop_padding_mode", PADDING_MODES)):
        _check_choice(name, getattr(config, name), choices)
    _check_at_least(config, ("batch_size", "epochs"), 1)
    _check_at_least(config, ("n_train", "n_test"), 2, " (or None for all)")
    if not config.evals_per_epoch > 0:
        raise ValueError(f"evals_per_epoch must be positive, got {config.evals_per_epoch}")
    for name in ("lr", "norm_lr_scale", "filter_lr"):
        if not getattr(config, name) > 0 or not math.isfinite(getattr(config, name)):
            raise ValueError(f"{name} must be a positive number, got {getattr(config, name)}")
    for name in ("momentum", "filter_momentum", "label_smoothing"):
        if not 0 <= getattr(config, name) < 1:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(config, name)}")
    if config.nesterov and (config.optimizer not in ("sgd", "muon") or config.momentum == 0):
        raise ValueError("nesterov needs the sgd or muon optimizer and a momentum above 0")
    if config.crop_padding is not None and not 0 <= config.crop_padding <= MAX_CROP_PADDING:
        raise ValueError(f"crop_padding must be 0–{MAX_CROP_PADDING} pixels (or None for the dataset's own), got {config.crop_padding}")
    if config.init != "default" and "init" not in model_arguments(config.model):
        raise ValueError(f"model {config.model!r} starts from pretrained weights; init must be 'default', got {config.init!r}")
