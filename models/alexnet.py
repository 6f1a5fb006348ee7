"""AlexNet transfer learning for the report's ants-vs-bees experiment.

The backbone is torchvision's AlexNet with its ImageNet weights; the last classifier layer is
replaced by a fresh 2-class head. Two standard modes (the report swapped their names):

- `feature_extraction`: the backbone is frozen, only the new head trains;
- `fine_tuning`: every layer trains, starting from the ImageNet weights.

Idea: the PyTorch transfer-learning tutorial, which trains ResNet-18 on the same data.
"""

import os
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from models.checkpoint import foreign_digest

MODES = ("feature_extraction", "fine_tuning")


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights are neither cached intact nor downloadable; the message says what to do."""


# The cached checkpoints whose content was found to match their name: (path, size, mtime) each,
# so that a file is hashed once per process.
_verified: set[tuple[str, int, int]] = set()


def check_cached(url: str) -> None:
    """Refuse torch's cached copy of `url` if its content is not what its name says. torch checks
    the hash of what it downloads, never of what it finds cached: a truncated or foreign file
    there would train quietly to chance."""
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    try:
        stat = os.stat(path)
    except OSError:
        return  # not cached: torchvision downloads it and checks its hash
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return
    digest = foreign_digest(Path(path))
    if digest:
        expected = torch.hub.HASH_REGEX.search(os.path.basename(url)).group(1)
        raise WeightsUnavailableError(
            f"The file {path} is not AlexNet's ImageNet weights: its SHA-256 begins {digest[:8]}, and its name says "
            f"{expected} (a truncated download, or another file saved under its name). "
            f"Delete it and try again to download the weights, or download {url} to {path}."
        )
    _verified.add(key)


def load_backbone(weights_name: str | None) -> nn.Module:
    """torchvision's AlexNet, with its ImageNet weights from the torch hub cache (checked) or the network."""
    from torchvision.models import AlexNet_Weights, alexnet  # here, not at import: see training/sources.py

    if weights_name is None:
        return alexnet(weights=None)
    weights = AlexNet_Weights[weights_name]
    check_cached(weights.url)
    try:
        return alexnet(weights=weights)
    except OSError as error:  # URLError and socket errors are OSErrors
        target = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        raise WeightsUnavailableError(
            f"AlexNet's ImageNet weights are not cached and could not be downloaded ({error}). "
            f"Download {weights.url} to {target} (TORCH_HOME sets the folder), then try again."
        ) from None


def backbone_url(weights_name: str) -> str:
    """Where torchvision downloads a backbone's weights from."""
    from torchvision.models import AlexNet_Weights

    return AlexNet_Weights[weights_name].url


class AlexNetTransfer(nn.Module, PyTorchModelHubMixin, tags=["cnn-lab", "transfer-learning"]):
    """AlexNet with a new head.

    Args:
        num_classes: outputs of the new head (2: ants, bees).
        mode: `feature_extraction` or `fine_tuning`.
        backbone_weights: torchvision weights name for the backbone (`IMAGENET1K_V1`), or None
            for random weights (tests, and reloading a checkpoint that holds every weight).
    """

    def __init__(self, num_classes: int = 2, mode: str = "feature_extraction", backbone_weights: str | None = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        backbone = load_backbone(backbone_weights)
        self.features = backbone.features
        self.avgpool = backbone.avgpool
        self.flatten = nn.Flatten()
        # Keep AlexNet's classifier except its last 4096 → 1000 layer, which the head replaces.
        self.classifier = nn.Sequential(*list(backbone.classifier.children())[:-1])
        self.head = nn.Linear(4096, num_classes)
        self.mode = mode
        for parameter in self.backbone_parameters():
            parameter.requires_grad = mode == "fine_tuning"
        # A saved checkpoint holds every weight, so reloading it must not fetch ImageNet again.
        if self._hub_mixin_config is not None:
            self._hub_mixin_config = {**self._hub_mixin_config, "backbone_weights": None}

    def backbone_parameters(self):
        yield from self.features.parameters()
        yield from self.classifier.parameters()

    def frozen_prefix(self) -> nn.Module | None:
        """The leading layers that stay fixed in training and hold no randomness (no dropout), so
        the engine may compute their outputs once; None when every layer trains."""
        if self.mode != "feature_extraction":
            return None
        return nn.Sequential(self.features, self.avgpool, self.flatten)

    def forward_from_prefix(self, x: torch.Tensor) -> torch.Tensor:
        x = self.classifier(x)  # B, 4096 (frozen, but its dropout stays active in training)
        x = self.head(x)  # B, num_classes
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # B, 256, 6, 6 for 224×224 inputs
        x = self.avgpool(x)  # B, 256, 6, 6
        x = self.flatten(x)  # B, 9216
        x = self.forward_from_prefix(x)  # B, num_classes
        return x
