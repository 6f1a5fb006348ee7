"""A tiny model registry (after timm): every model the experiments use, by name.

`create_model(name, **overrides)` builds a preset with some arguments changed;
`list_models()` names them. Tests are parametrized over this list.
"""

import inspect

from torch import nn

from models.airbench import AirbenchCNN
from models.alexnet import MODES, AlexNetTransfer, WeightsUnavailableError
from models.cnn import ACTIVATIONS, INITS, TeachingCNN

_PRESETS: dict[str, tuple[type[nn.Module], dict]] = {
    # Small enough to train in seconds; used by tests and the depth grid's quick preset.
    "cnn-tiny": (TeachingCNN, dict(n_conv=2, n_fc=2, width=8, width_growth=8, fc_width=32)),
    # The `quick` default: the report's 5-conv/3-fc shape at a width a 2-core CPU trains live.
    "cnn-quick": (TeachingCNN, dict(n_conv=5, n_fc=3, width=16, width_growth=16, fc_width=128)),
    # The 5-conv/3-fc network of the report's momentum, adaptive-LR and batch-norm runs. The
    # report gives no widths; its ~100 s for 5 epochs at batch 10 on a GPU implies a small net.
    "cnn-report": (TeachingCNN, dict(n_conv=5, n_fc=3, width=32, width_growth=32, fc_width=128)),
    # The report's final architecture (see TeachingCNN's docstring for the reading).
    "cnn-final": (
        TeachingCNN,
        dict(n_conv=7, n_fc=3, width=100, width_growth=100, fc_width=100, fc_growth=100, batch_norm=True),
    ),
    # The final CNN's quick preset: its layer pattern, with a pool between the first two convs
    # so that the five-conv stage runs at 8×8; trains 2 epochs of CIFAR-10 in about 45 s (2
    # cores, AVX2, fp32).
    "cnn-final-quick": (
        TeachingCNN,
        dict(n_conv=7, n_fc=1, widths=(16, 32, 32, 32, 32, 32, 32), pool_after=(1, 2, 7), batch_norm=True),
    ),
    # The embedded classifier: airbench's network (see models/airbench.py).
    "cnn-classifier": (AirbenchCNN, dict(widths=(64, 256, 256))),
    # Its class count comes from the dataset it trains on (training.engine.model_overrides).
    "alexnet-transfer": (AlexNetTransfer, dict(backbone_weights="IMAGENET1K_V1")),
}


def list_models() -> list[str]:
    return sorted(_PRESETS)


def model_arguments(name: str, **overrides) -> dict:
    """The constructor arguments `create_model(name, **overrides)` would use, defaults included."""
    if name not in _PRESETS:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models()}")
    model_class, preset = _PRESETS[name]
    defaults = {k: p.default for k, p in inspect.signature(model_class).parameters.items()}
    return {**defaults, **preset, **overrides}


def model_class(name: str) -> type[nn.Module]:
    model_arguments(name)  # an unknown name is refused with the list of known ones
    return _PRESETS[name][0]


def create_model(name: str, **overrides) -> nn.Module:
    arguments = model_arguments(name, **overrides)
    return _PRESETS[name][0](**arguments)


__all__ = ["ACTIVATIONS", "INITS", "MODES", "AirbenchCNN", "AlexNetTransfer", "TeachingCNN", "WeightsUnavailableError", "create_model", "list_models", "model_arguments", "model_class"]
