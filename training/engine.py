"""The training engine: a typed config goes in, plain event objects come out of a generator.

Nothing here knows about Gradio or the terminal; the CLI, the app and the tests all drive
`run` and `compare`. A comparison is a list of arms that differ only in the factor under
study. Every arm uses the same seed, so it sees the same subset, the same batches in the same
order and the same augmentation draws, and starts from identical initial weights wherever the
architectures match. Arms are interleaved in lockstep, one step each in turn, so a live plot
grows all curves together and a run stopped at any moment still compares equal numbers of
steps (one after another, a stopped run would leave the last arms untrained).
Each arm keeps its own RNG state (dropout) and its own clock (elapsed time counts only its
own steps; both in `training.devices`), so an arm's numbers do not depend on which arms run
beside it. It is evaluated on the test set by `training.evaluation`.
"""

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from models import create_model, model_arguments
from training.config import TrainConfig, validate
from training.datasets import ImageTensors, balanced_subset, get_dataset, load_splits
from training.loader import BatchLoader, FeatureLoader, normalize
from training.devices import ArmClock, cpu_threads, empty_cache, resolve_device, resolve_precision, rng_state, seeded_rng_state, set_rng_state
from training.evaluation import accuracy, evaluate
from training.instruments import Instruments, LayerReading, StepWatch
from training.lookahead import Lookahead
from training.muon import MuonSGD

# The share of a one-cycle run spent warming the rate up from a tenth of `lr` (the rest decays it
# to zero): a high rate from the first step would throw a freshly initialised network off course.
ONECYCLE_WARMUP = 0.2
# The early-stop rule looks at the smallest batch loss of every this many steps: a fixed
# cadence keeps the stopping step deterministic, and it avoids a device sync every step.
EARLY_STOP_CHECK_STEPS = 20
# Training images a data-dependent first layer is computed from (models.airbench.Whitening), drawn
# at random across the classes: 5,000 CIFAR-10 images give 4.8 million patches for a 12×12 covariance.
WHITENING_IMAGES = 5000
# Smoothing of the reported training loss (exponential moving average, bias-corrected).
LOSS_SMOOTHING = 0.9


@dataclass
class Started:
    arm: str
    device: str
    precision: str
    parameters: int  # trainable parameters
    total_steps: int


@dataclass
class TrainStep:
    arm: str
    step: int
    epoch: float  # fractional epochs done
    train_loss: float  # smoothed
    elapsed_s: float  # this arm's training time so far, evaluations excluded
    images_per_s: float


@dataclass
class Evaluation:
    arm: str
    step: int
    epoch: float
    test_acc: float  # 0–1
    elapsed_s: float


@dataclass
class Reading:
    arm: str
    step: int
    layers: list[LayerReading]  # every layer with weights, in the network's order (training.instruments)


@dataclass
class Finished:
    arm: str
    steps: int
    test_acc: float  # 0–1
    train_time_s: float
    images_per_s: float
    stopped_early: bool
    per_class_acc: list[float]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    classes: list[str]
    model: nn.Module = field(repr=False)


Event = Started | TrainStep | Evaluation | Reading | Finished


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer over the model's trainable parameters: its batch-norm ones in a group of their
    own when `norm_lr_scale` sets them a different rate, and for muon its conv filters in another."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    norms = {p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in m.parameters() if p.requires_grad and config.norm_lr_scale != 1}
    filters = set()
    if config.optimizer == "muon":
        # As airbench94_muon: every bias (the whitening layer's too) learns at the norms' rate.
        filters = {p for p in trainable if p.dim() == 4}
        norms |= {p for p in trainable if p.dim() == 1}
    scale = config.norm_lr_scale
    groups = [
        {"params": [p for p in trainable if p not in norms and p not in filters]},
        {"params": [p for p in trainable if p in norms], "lr": config.lr * scale, "weight_decay": config.weight_decay / scale},
        # Muon holds each filter bank at a fixed norm, so weight decay would do nothing there.
        {"params": [p for p in trainable if p in filters], "lr": config.filter_lr, "momentum": config.filter_momentum, "weight_decay": 0.0, "orthogonalise": True},
    ]
    groups = [group for group in groups if group["params"]]
    if config.optimizer == "muon":
        return MuonSGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)


def make_schedule(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule, stepped once per training step; None keeps the rate constant."""
    if config.lr_schedule == "constant":
        return None
    if config.lr_schedule == "onecycle":
        # Smith's one-cycle policy with linear ramps, as the fast CIFAR-10 recipes use it (airbench,
        # "How to train your ResNet"): up from a tenth of the rate, then down to zero. Momentum
        # stays the optimizer's own.
        warmup = max(1, round(ONECYCLE_WARMUP * total_steps))
        rise = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=warmup)
        fall = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=max(1, total_steps - warmup))
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [rise, fall], milestones=[warmup])
    # Linear decay to zero, as nanoGPT and airbench end their runs: the last steps are small, so
    # the final weights (and the accuracy read from them) do not jump with the last few batches.
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=total_steps)


def model_overrides(config: TrainConfig) -> dict:
    """The constructor arguments the arm changes from its model's preset: its dataset's class
    count and image size, its own overrides, and its init where the model draws its own weights."""
    arguments = model_arguments(config.model)
    init = {"init": config.init} if "init" in arguments else {}
    # The dataset decides how many classes the model tells apart, and the size of its input.
    spec = get_dataset(config.dataset)
    shape = {"num_classes": len(spec.classes), "image_size": spec.crop_size}
    return {**{k: v for k, v in shape.items() if k in arguments}, **config.model_overrides, **init}


def build_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The arm's model, its random weights drawn from the seed alone (same seed, same weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_model(config.model, **model_overrides(config))
    return model.to(device=device, memory_format=torch.channels_last)


@dataclass
class Arm:
    """One arm built for training: the model, the forward pass its batches go through, its
    optimizer, loader and schedule, and the steps after which it is evaluated."""

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, or its layers after the frozen prefix whose features the loader serves
    optimizer: torch.optim.Optimizer
    loader: BatchLoader
    schedule: torch.optim.lr_scheduler.LRScheduler | None
    steps_per_epoch: int
    total_steps: int
    eval_steps: set[int]
    label_smoothing: float
    precision: str
    instruments: Instruments | None  # None: the arm's inside is not read
    lookahead: Lookahead | None  # None: no slow copy of the weights

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor, watch: StepWatch | None = None) -> torch.Tensor:
        """One optimizer step (and schedule step) on a batch, watched by the instruments where
        `watch` is given; its loss, as computed."""
        x, y = inputs, labels
        with watch.forward() if watch else nullcontext(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            loss = nn.functional.cross_entropy(self.forward(x), y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if watch:
            watch.before_update()
        self.optimizer.step()
        if watch:
            watch.after_update()
        if self.schedule is not None:
            self.schedule.step()
        if self.lookahead is not None:
            self.lookahead.step()
        return loss

    def finish(self) -> None:
        """Settle the trained weights: the lookahead's slow copy, where the arm keeps one."""
        if self.lookahead is not None:
            self.lookahead.finish()


def build_arm(config: TrainConfig, train_data: ImageTensors, device: torch.device, precision: str) -> Arm:
    """The arm's model (its first layer fitted to the data where it is computed from it), its
    optimizer, its loader (cached features of a frozen prefix where the dataset allows), its
    schedule and its evaluation steps."""
    model = build_model(config, device)
    if hasattr(model, "fit_whitening"):
        # A first layer computed from the data (airbench's whitening), from a sample drawn by the
        # seed, so that arms with the same seed and data start alike. Drawn at random: a split is
        # stored sorted by class, and its first images are all airplanes.
        spec = train_data.spec
        sample = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(config.seed))[:WHITENING_IMAGES]
        model.fit_whitening(normalize(train_data.images[sample].to(device), spec.mean, spec.std))
    optimizer = make_optimizer(config, model)
    prefix = model.frozen_prefix() if hasattr(model, "frozen_prefix") and config.cache_frozen_features else None
    if prefix is not None and FeatureLoader.supports(train_data.spec):
        loader = FeatureLoader(prefix, train_data, config.batch_size, device, config.seed, autocast=precision == "bf16", alternating_flip=config.alternating_flip)
        forward = model.forward_from_prefix
    else:
        loader = BatchLoader(
            train_data, config.batch_size, device, train=True, seed=config.seed,
            crop_padding=config.crop_padding, crop_padding_mode=config.crop_padding_mode, alternating_flip=config.alternating_flip,
        )
        forward = model
    steps_per_epoch = len(loader)
    total_steps = config.epochs * steps_per_epoch
    evals = max(1, round(config.evals_per_epoch * config.epochs))  # the last step is always evaluated
    schedule = make_schedule(config, optimizer, total_steps)
    eval_steps = {math.ceil(i * total_steps / evals) for i in range(1, evals + 1)}
    instruments = Instruments(model, total_steps) if config.instruments else None
    lookahead = Lookahead(model, total_steps) if config.lookahead else None
    return Arm(model, forward, optimizer, loader, schedule, steps_per_epoch, total_steps, eval_steps, config.label_smoothing, precision, instruments, lookahead)


class LossTracker:
    """The arm's training loss: its smoothed value for the events, and the early-stop rule,
    which looks at the smallest batch loss of every EARLY_STOP_CHECK_STEPS steps.

    The running statistics stay on the device: reading them only when an event or a check is
    due avoids a GPU→CPU sync on every step.
    """

    def __init__(self, device: torch.device, loss_threshold: float | None):
        self.loss_threshold = loss_threshold
        self.ema = torch.zeros((), device=device)
        self.window_min = torch.full((), math.inf, device=device)

    def add(self, loss: torch.Tensor, step: int) -> bool:
        """Count the batch loss of `step` (1 for the first); True where it stops training early."""
        loss = loss.detach().float()
        self.ema = LOSS_SMOOTHING * self.ema + (1 - LOSS_SMOOTHING) * loss
        self.window_min = torch.minimum(self.window_min, loss)
        if self.loss_threshold is None or step % EARLY_STOP_CHECK_STEPS != 0:
            return False
        below = self.window_min.item() < self.loss_threshold
        self.window_min.fill_(math.inf)
        return below

    def smoothed(self, step: int) -> float:
        """The moving average after `step` steps, bias-corrected (it starts from zero)."""
        return (self.ema / (1 - LOSS_SMOOTHING**step)).item()


def finished_event(config: TrainConfig, model: nn.Module, steps: int, elapsed_s: float, stopped_early: bool, confusion: torch.Tensor, test_data: ImageTensors) -> Finished:
    """The arm's closing event, from its final confusion matrix on the test set."""
    per_class = (confusion.diag() / confusion.sum(dim=1).clamp(min=1)).tolist()
    test_acc, images_per_s = accuracy(confusion, test_data), steps * config.batch_size / elapsed_s
    return Finished(config.label, steps, test_acc, elapsed_s, images_per_s, stopped_early, per_class, confusion.tolist(), list(test_data.spec.classes), model)


def train(config: TrainConfig, train_data: ImageTensors, test_data: ImageTensors, device: torch.device, precision: str) -> Iterator[Event | None]:
    """Train one arm on already-subset data, yielding its events, and None after every step
    (where a comparison may switch arms). Closing it stops training."""
    arm = build_arm(config, train_data, device, precision)
    yield Started(config.label, str(device), precision, sum(p.numel() for p in arm.model.parameters() if p.requires_grad), arm.total_steps)
    # Each arm owns its RNG stream (dropout), swapped in around its own steps.
    rng = seeded_rng_state(config.seed, device)
    label, steps_per_epoch = config.label, arm.steps_per_epoch
    clock = ArmClock(device)
    losses = LossTracker(device, config.loss_threshold)
    step, stopped_early, last_event = 0, False, -math.inf
    confusion, evaluated_at = None, -1
    arm.model.train()
    for epoch in range(config.epochs):
        batches = iter(arm.loader)
        for _ in range(steps_per_epoch):
            set_rng_state(device, rng)
            watch = arm.instruments.probe(step + 1) if arm.instruments else None
            clock.start()
            loss = arm.train_step(*next(batches), watch)
            clock.stop()
            rng = rng_state(device)
            step += 1
            if watch and watch.readings:
                yield Reading(label, step, watch.readings)
            stopped_early = losses.add(loss, step)
            evaluate_now = step in arm.eval_steps or stopped_early
            if evaluate_now or step % steps_per_epoch == 0 or time.perf_counter() - last_event >= config.event_interval_s:
                last_event = time.perf_counter()
                elapsed = clock.total()
                yield TrainStep(label, step, step / steps_per_epoch, losses.smoothed(step), elapsed, step * config.batch_size / elapsed)
            if evaluate_now:
                if stopped_early or step == arm.total_steps:
                    arm.finish()  # the last evaluation reads the weights the run ends with
                confusion, evaluated_at = evaluate(arm.model, test_data, device, precision, config.test_time_flip, config.test_time_shift), step
                yield Evaluation(label, step, step / steps_per_epoch, accuracy(confusion, test_data), clock.total())
            if stopped_early:
                break
            yield None
        if stopped_early:
            break
    if evaluated_at != step:
        arm.finish()
        confusion = evaluate(arm.model, test_data, device, precision, config.test_time_flip, config.test_time_shift)
    yield finished_event(config, arm.model, step, clock.total(), stopped_early, confusion, test_data)


def prepare_data(config: TrainConfig) -> tuple[ImageTensors, ImageTensors]:
    """The arm's class-balanced training and test subsets; they depend only on the seed."""
    train_data, test_data = load_splits(config.dataset)
    train_data = train_data.subset(balanced_subset(train_data.labels, config.n_train, config.seed))
    test_data = test_data.subset(balanced_subset(test_data.labels, config.n_test, config.seed))
    return train_data, test_data


def compare(configs: list[TrainConfig], lockstep: bool = True) -> Iterator[Event]:
    """Train the arms in lockstep, one step each in turn (or, with `lockstep=False`, one after
    another, as for the cells of a grid that are each timed alone), and yield all their events.

    Closing the generator stops every arm and frees its model and data.
    """
    if not configs:
        raise ValueError("a comparison needs at least one arm")
    labels = [c.label for c in configs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"arm labels must be distinct, got {labels}")
    for config in configs:
        validate(config)
    device = resolve_device(configs[0].device)
    # One precision for every arm, so that no arm wins by its number format.
    precision = resolve_precision(configs[0].precision, device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    arms = [train(config, *prepare_data(config), device, precision) for config in configs]
    try:
        while arms:
            for arm in list(arms):
                # One turn: this arm's next step and the events it produced.
                for event in arm:
                    if event is None:
                        if lockstep:
                            break
                        continue
                    yield event
                else:
                    arms.remove(arm)
    finally:
        for arm in arms:
            arm.close()
        arms.clear()
        empty_cache(device)


def run(config: TrainConfig) -> Iterator[Event]:
    """Train one configuration; the same events as a one-arm comparison."""
    return compare([config])


def event_record(event: Event) -> dict:
    """An event as a JSON-ready dict (the trained model left out)."""
    return {"type": type(event).__name__} | {f.name: getattr(event, f.name) for f in fields(event) if f.name != "model"}


def reading_records(event: Reading) -> list[dict]:
    """A reading as the JSON records of its layers, `{step, layer, grad_norm, update_ratio, ...}`."""
    return [{"step": event.step, **asdict(layer)} for layer in event.layers]
