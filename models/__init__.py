"""A tiny model registry (after timm): every model the experiments use, by name.

`create_model(name, **overrides)` builds a preset with some arguments changed;
`list_models()` names them. Tests are parametrized over this list.
"""

import inspect
from dataclasses import dataclass

from torch import nn

from models.airbench import AirbenchCNN
from models.alexnet import MODES, AlexNetTransfer, WeightsUnavailableError
from models.cnn import ACTIVATIONS, INITS, TeachingCNN


@dataclass(frozen=True)
class Preset:
    model_class: type[nn.Module]
    arguments: dict  # constructor arguments changed from the class's defaults
    # Training steps per second on the report's Kaggle GPU, from its own times (the momentum runs:
    # 25,000 steps of batch 10 in 105 s; the final CNN: 10,000 steps of batch 100 in 472 s;
    # AlexNet: 130 steps of batch 20 in 19 s). ZeroGPU requests are priced by it (demo/gpu.py).
    gpu_steps_per_s: float


_PRESETS: dict[str, Preset] = {
    # Small enough to train in seconds; used by tests and the depth grid's quick preset.
    "cnn-tiny": Preset(TeachingCNN, dict(n_conv=2, n_fc=2, width=8, width_growth=8, fc_width=32), 238),
    # The `quick` default: the report's 5-conv/3-fc shape at a width a 2-core CPU trains live.
    "cnn-quick": Preset(TeachingCNN, dict(n_conv=5, n_fc=3, width=16, width_growth=16, fc_width=128), 238),
    # The 5-conv/3-fc network of the report's momentum, adaptive-LR and batch-norm runs. The
    # report gives no widths; its ~100 s for 5 epochs at batch 10 on a GPU implies a small net.
    "cnn-report": Preset(TeachingCNN, dict(n_conv=5, n_fc=3, width=32, width_growth=32, fc_width=128), 238),
    # The report's final architecture (see TeachingCNN's docstring for the reading).
    "cnn-final": Preset(TeachingCNN, dict(n_conv=7, n_fc=3, width=100, width_growth=100, fc_width=100, fc_growth=100, batch_norm=True), 21),
    # The final CNN's quick preset: airbench's network at widths 16, 48, 64 instead of 64, 256, 256,
    # a fourteenth of its cost per image (16.7 against 236 MFLOP a forward pass), for a minute of
    # training on 2 cores, AVX2, fp32.
    "cnn-final-quick": Preset(AirbenchCNN, dict(widths=(16, 48, 64)), 21),
    # The embedded classifier: airbench's network (see models/airbench.py).
    "cnn-classifier": Preset(AirbenchCNN, dict(widths=(64, 256, 256)), 21),
    # Its class count comes from the dataset it trains on (training.engine.model_overrides).
    "alexnet-transfer": Preset(AlexNetTransfer, dict(backbone_weights="IMAGENET1K_V1"), 6.8),
}


def list_models() -> list[str]:
    return sorted(_PRESETS)


def model_arguments(name: str, **overrides) -> dict:
    """The constructor arguments `create_model(name, **overrides)` would use, defaults included."""
    if name not in _PRESETS:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}")
    preset = _PRESETS[name]
    defaults = {k: p.default for k, p in inspect.signature(preset.model_class).parameters.items()}
    return {**defaults, **preset.arguments, **overrides}


def model_class(name: str) -> type[nn.Module]:
    model_arguments(name)  # an unknown name is refused with the list of known ones
    return _PRESETS[name].model_class


def gpu_steps_per_s(name: str) -> float:
    model_arguments(name)
    return _PRESETS[name].gpu_steps_per_s


def create_model(name: str, **overrides) -> nn.Module:
    arguments = model_arguments(name, **overrides)
    return _PRESETS[name].model_class(**arguments)


__all__ = ["ACTIVATIONS", "INITS", "MODES", "AirbenchCNN", "AlexNetTransfer", "TeachingCNN", "WeightsUnavailableError", "create_model", "gpu_steps_per_s", "list_models", "model_arguments", "model_class"]
