"""The configurable teaching CNN behind every CIFAR-10 experiment of the report.

One class covers the whole curriculum: the depth grid varies `n_conv` × `n_fc`, the
activation experiment swaps `activation`, the batch-norm experiment flips `batch_norm`, and
the report's final network is the same class at full width. Layers are named blocks
(`features.N.conv`, `features.N.norm`, `classifier.N.linear`) so that two arms of a
comparison that differ only in batch norm or activation share parameter names, and the
engine can give them identical initial weights.
"""

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def default_pool_after(n_conv: int) -> tuple[int, ...]:
    """Pool after the 2nd conv and after the last one, as in the report's final network
    (2 conv → pool → 5 conv → pool); a 1-conv network pools once."""
    return tuple(sorted({min(2, n_conv), n_conv}))


# How conv and linear layers draw their first weights:
# - default: PyTorch's own (uniform, variance 1/(3·fan_in)), what the report's code used. It
#   shrinks the signal at every layer, so a deep network without batch norm starts slowly;
#   batch norm undoes the shrinking, which is why the report saw it help so much.
# - he: He et al. (2015), normal with variance 2/fan_in and zero biases, which keeps a ReLU
#   network's signal at one scale through any depth.
INITS = ("default", "he")


def he_init(module: nn.Module) -> None:
    """He (Kaiming) normal weights and zero biases for a conv or linear layer.

    Every arm of a comparison gets the same init whatever its activation, so the comparison
    stays fair; it consumes the random stream identically with or without batch norm.
    """
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        nn.init.zeros_(module.bias)


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, activation: str, batch_norm: bool):
        super().__init__()
        # The conv keeps its bias even under batch norm (where it is redundant) so that a
        # batch-norm arm draws exactly the same random initial weights as its plain twin.
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.norm(x)
        x = self.act(x)
        return x


class DenseBlock(nn.Module):
    def __init__(self, in_features: int, out_features: int, activation: str | None):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.act = make_activation(activation) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        x = self.act(x)
        return x


class TeachingCNN(nn.Module, PyTorchModelHubMixin, tags=["cnn-lab", "image-classification"]):
    """Stack of 3×3 conv blocks, 2×2 max pools, then fully-connected blocks.

    Reading of the report's final architecture ("number of kernels keep increasing by a
    factor of 100"; "3 fully connected layers with size 100 increasing with a factor of 100
    (this includes the final output layer with only 10 outputs)"): conv widths grow by
    `width_growth` per layer (100, 200 | pool | 300 … 700 | pool) and the two hidden
    fully-connected layers grow likewise (100, 200), followed by the 10-way output layer.
    "Factor" is read as an increment, since ×100 per layer is impossible.

    Args:
        n_conv: conv layers, 1–7.
        n_fc: fully-connected layers including the output layer, 1–3.
        width: output channels of the first conv layer.
        width_growth: channels added by each further conv layer.
        fc_width: units of the first hidden fully-connected layer.
        fc_growth: units added by each further hidden fully-connected layer.
        activation: relu, sigmoid, tanh, leaky_relu or gelu, used after every hidden layer.
        batch_norm: BatchNorm2d after every conv (before the activation).
        pool_after: 1-based conv indices followed by a 2×2 max pool; None = after conv 2
            and after the last conv.
        num_classes: outputs of the last layer.
        image_size: side of the square input images.
        in_channels: channels of the input images.
        init: how the weights are first drawn, one of INITS.
        widths: every conv layer's output channels, in order (`n_conv` of them); when given
            it replaces `width` and `width_growth`.
    """

    def __init__(
        self,
        n_conv: int = 5,
        n_fc: int = 3,
        width: int = 16,
        width_growth: int = 16,
        fc_width: int = 128,
        fc_growth: int = 0,
        activation: str = "relu",
        batch_norm: bool = False,
        pool_after: tuple[int, ...] | None = None,
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        init: str = "default",
        widths: tuple[int, ...] | None = None,
    ):
        super().__init__()
        if widths is not None and len(widths) != n_conv:
            raise ValueError(f"widths must give one width per conv layer ({n_conv}), got {len(widths)}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if not 1 <= n_conv <= 7:
            raise ValueError(f"n_conv must be 1–7, got {n_conv}")
        if not 1 <= n_fc <= 3:
            raise ValueError(f"n_fc must be 1–3, got {n_fc}")
        pools = set(pool_after) if pool_after is not None else set(default_pool_after(n_conv))
        if not pools <= set(range(1, n_conv + 1)):
            raise ValueError(f"pool_after must name conv layers 1–{n_conv}, got {sorted(pools)}")
        if image_size % 2 ** len(pools):
            raise ValueError(f"image_size {image_size} cannot be halved {len(pools)} times")

        features: list[nn.Module] = []
        channels = in_channels
        side = image_size
        for index in range(1, n_conv + 1):
            out_channels = widths[index - 1] if widths else width + (index - 1) * width_growth
            features.append(ConvBlock(channels, out_channels, activation, batch_norm))
            channels = out_channels
            if index in pools:
                features.append(nn.MaxPool2d(2))
                side //= 2
        self.features = nn.Sequential(*features)
        self.flatten = nn.Flatten()

        dense: list[nn.Module] = []
        units = channels * side * side
        for index in range(n_fc - 1):
            hidden = fc_width + index * fc_growth
            dense.append(DenseBlock(units, hidden, activation))
            units = hidden
        dense.append(DenseBlock(units, num_classes, activation=None))
        self.classifier = nn.Sequential(*dense)
        if init == "he":
            self.apply(he_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # B, C_last, side, side
        x = self.flatten(x)  # B, C_last * side * side
        x = self.classifier(x)  # B, num_classes
        return x
