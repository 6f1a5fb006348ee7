"""Instruments inside the network: what each layer's gradient, steps and output do as an arm trains.

Every few steps (`reading_interval`), and at the last step, the engine reads, for every layer with weights (conv or
linear, frozen ones included) in the network's order, one `LayerReading`:

- `grad_norm`: ‖∂loss/∂W‖ for the layer's weights (None for a frozen layer, which gets none);
- `update_ratio`: ‖ΔW‖ / ‖W‖, the step the optimizer really took, relative to the weights: what a
  learning rate or Adadelta changes. Exactly 0 for a frozen layer;
- `step_cosine`: the cosine between this step's ΔW and the step before's. Near 1 the steps agree
  and add up; near 0 or below they zig-zag and cancel: what momentum changes;
- `travelled`: ‖W − W₀‖ / ‖W₀‖, how far the weights have moved from where they started;
- `act_std`: the standard deviation of the layer's output on the training batch, read after the
  activation that follows it (so after batch norm too): what an init shrinks and batch norm
  restores. None where the training pass never runs the layer (a frozen prefix whose features
  the loader caches);
- `dead_share`: after a ReLU, the share of channels (or units) that are zero on every image of
  the batch, so pass no gradient at all; None after activations whose units cannot die.

A reading costs two copies of the weights (the step before the reading is watched too, for its
ΔW) and a pass over the read outputs; at one reading in `reading_interval` steps that is a few
percent of training at most (benchmarks/instruments.py measures it).

Idea: ConvNetJS's per-layer activation and gradient views (Karpathy, 2014) and the
update-to-weight ratio that CS231n's notes on babysitting training ask to watch, here measured
on every arm of a paired comparison, so the same layer compares across arms.
"""

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

# Readings per arm over its whole run: enough points for a curve, few enough to cost little.
READINGS_PER_RUN = 32
# What counts as the activation that follows a layer: its output is read there.
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU)
# Activations whose units can die: exactly zero for every input below zero.
DYING = (nn.ReLU, nn.ReLU6)
# Significant digits kept in a record: the plots and sentences need two or three.
DIGITS = 4


@dataclass
class LayerReading:
    layer: str  # the weighted module's name in the model, shared by arms of one architecture ("features.0.conv")
    grad_norm: float | None
    update_ratio: float
    step_cosine: float | None
    travelled: float
    act_std: float | None
    dead_share: float | None


@dataclass
class Layer:
    name: str
    weight: nn.Parameter
    output: nn.Module  # where its output is read: the activation after it, else the layer itself


def weighted_layers(model: nn.Module) -> list[Layer]:
    """Every conv and linear layer in the network's order, each with the module its output is
    read from: the first activation registered after it and before the next weighted layer. The
    models register their modules in the order their forward runs them."""
    layers: list[Layer] = []
    looking = False  # whether the last weighted layer still waits for its activation
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            layers.append(Layer(name, module.weight, module))
            looking = True
        elif looking and isinstance(module, ACTIVATIONS):
            layers[-1].output = module
            looking = False
    return layers


def reading_interval(total_steps: int) -> int:
    """Steps between two readings; at least 2, since a reading also watches the step before it."""
    return max(2, total_steps // READINGS_PER_RUN)


def rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(f"{value:.{DIGITS}g}")


def output_statistics(output: torch.Tensor, can_die: bool) -> tuple[float, float | None]:
    """The output's standard deviation and, after a ReLU, the share of its channels (dim 1) that
    are zero on every image and position of the batch."""
    x = output.detach().float()
    std = x.std().item()
    if not can_die:
        return std, None
    peak = x.transpose(0, 1).flatten(1).amax(dim=1)  # C: each channel's largest output
    return std, (peak == 0).float().mean().item()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float | None:
    norms = a.norm() * b.norm()
    return (a.flatten() @ b.flatten() / norms).item() if norms > 0 else None


class Instruments:
    """The readings of one arm's model. `probe(step)` gives the watch for a training step that is
    read or precedes one (None for the others); the arm's step drives it."""

    def __init__(self, model: nn.Module, total_steps: int):
        self.layers = weighted_layers(model)
        self.every, self.total_steps = reading_interval(total_steps), total_steps
        # W₀ of every trainable layer, for how far it has travelled (a frozen one stays at 0).
        self.start = [layer.weight.detach().clone() if layer.weight.requires_grad else None for layer in self.layers]
        self.previous_update: list[torch.Tensor | None] | None = None

    def is_read(self, step: int) -> bool:
        """Every `every` steps, and the last step, so that even a run of one step is read."""
        return step % self.every == 0 or step == self.total_steps

    def probe(self, step: int) -> "StepWatch | None":
        """The watch of training step `step` (1 for the first), if it is read or precedes a reading."""
        if self.is_read(step):
            return StepWatch(self, reads=True)
        if self.is_read(step + 1):
            return StepWatch(self, reads=False)
        return None


class StepWatch:
    """One watched step: its layers' outputs (forward hooks), gradients and weights before the
    update, and what the update did to them."""

    def __init__(self, instruments: Instruments, reads: bool):
        self.instruments = instruments
        self.reads = reads
        self.outputs: dict[int, tuple[float, float | None]] = {}
        self.readings: list[LayerReading] | None = None

    @contextmanager
    def forward(self):
        """Read each layer's output as the forward pass makes it."""
        if not self.reads:
            yield
            return
        hooks = [layer.output.register_forward_hook(self._hook(i, isinstance(layer.output, DYING))) for i, layer in enumerate(self.instruments.layers)]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()

    def _hook(self, index: int, can_die: bool):
        def read(module, inputs, output):
            self.outputs[index] = output_statistics(output, can_die)

        return read

    def before_update(self) -> None:
        """After the backward pass: the gradients, and the weights the update starts from."""
        layers = self.instruments.layers
        self.grad_norms = [layer.weight.grad.norm().item() if self.reads and layer.weight.grad is not None else None for layer in layers]
        self.before = [layer.weight.detach().clone() if layer.weight.requires_grad else None for layer in layers]

    def after_update(self) -> None:
        """After the optimizer's step: what it did, kept for the next step or read now."""
        updates = [None if w0 is None else layer.weight.detach() - w0 for layer, w0 in zip(self.instruments.layers, self.before)]
        if self.reads:
            self.readings = self._read(updates)
        self.instruments.previous_update = None if self.reads else updates

    def _read(self, updates: list[torch.Tensor | None]) -> list[LayerReading]:
        instruments = self.instruments
        previous = instruments.previous_update or [None] * len(updates)
        readings = []
        for i, layer in enumerate(instruments.layers):
            update, before, start = updates[i], self.before[i], instruments.start[i]
            weight = layer.weight.detach()
            ratio = (update.norm() / before.norm()).item() if update is not None and before.norm() > 0 else 0.0
            step_cosine = cosine(update, previous[i]) if update is not None and previous[i] is not None else None
            travelled = ((weight - start).norm() / start.norm()).item() if start is not None and start.norm() > 0 else 0.0
            act_std, dead_share = self.outputs.get(i, (None, None))
            values = (self.grad_norms[i], ratio, step_cosine, travelled, act_std, dead_share)
            readings.append(LayerReading(layer.name, *map(rounded, values)))
        return readings
