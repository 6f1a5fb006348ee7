"""The embedded CIFAR-10 classifier's network: airbench's (Keller Jordan, "94% on CIFAR-10 in 3.29
seconds on a single GPU", 2024), which itself descends from hlb-CIFAR10 and Page's "How to train
your ResNet". It reaches 90%+ in about ten epochs, few enough for a 2-core CPU. Its parts, each
with the reason it trains fast:

- a first layer that is computed, not learned: 2×2 filters that whiten the training images'
  patches (the eigenvectors of their covariance, scaled to unit variance), each with its negative
  so that the activation after it passes both signs. Later layers start from decorrelated inputs;
- conv groups (conv → 2×2 max pool → batch norm → GELU → conv → batch norm → GELU): pooling
  right after the first conv runs the norm and the activation on a quarter of the positions;
- batch norm without a learned scale: a conv followed by a norm is scale-free already, so only
  the shift is learned (at a higher rate, TrainConfig.norm_lr_scale). Its running statistics
  follow the batches closely (momentum 0.4, PyTorch's sense), as airbench's do, and its eps is
  airbench's 1e-12;
- identity (dirac) first weights for as many of each conv's filters as it has input channels, so
  that every group starts out passing its input on;
- a global max pool and a linear layer whose logits are scaled down (1/9), which keeps them small
  under the very high learning rate the scale-free layers allow.
"""

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

# Added to each eigenvalue before scaling by its inverse square root, so that the directions of
# almost no variance are not blown up (airbench's value).
WHITENING_EPS = 5e-4
# airbench's batch norm: its running statistics weigh each new batch by 0.4 (PyTorch's default
# 0.1 lags behind weights that a rate this high moves fast), and an eps of 1e-12 instead of 1e-5.
NORM_MOMENTUM = 0.4
NORM_EPS = 1e-12


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 3×3 conv without bias (the batch norm after it has one), identity-initialised where it can."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_channels, out_channels)])
    return conv


def scale_free_norm(channels: int, eps: float, momentum: float) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    norm.weight.requires_grad_(False)  # stays 1: only the shift is learned
    return norm


class Whitening(nn.Module):
    """A frozen k×k conv whose filters whiten image patches (set by `fit`), with a learned bias;
    with `computed=False`, the same conv learned from PyTorch's random init (the ablation)."""

    def __init__(self, in_channels: int, kernel_size: int, computed: bool = True):
        super().__init__()
        # One filter per eigenvector of the C·k·k-dimensional patch covariance, and its negative.
        self.conv = nn.Conv2d(in_channels, 2 * in_channels * kernel_size**2, kernel_size, bias=True)
        self.conv.weight.requires_grad_(not computed)
        self.act = nn.GELU()

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Set the filters from normalised training images (N, C, H, W)."""
        weight = self.conv.weight  # 2·C·k·k, C, k, k
        k = self.conv.kernel_size[0]
        patches = nn.functional.unfold(images.float(), k)  # N, C·k·k, positions
        patches = patches.transpose(1, 2).flatten(0, 1)  # N·positions, C·k·k
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # columns are eigenvectors
        filters = eigenvectors.T / (eigenvalues[:, None] + WHITENING_EPS).sqrt()  # C·k·k, C·k·k
        filters = filters.view(-1, *weight.shape[1:])
        weight.copy_(torch.cat([filters, -filters]))
        self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # B, 2·C·k·k, H-k+1, W-k+1
        x = self.act(x)
        return x


class ConvGroup(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, norm_eps: float, norm_momentum: float):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = scale_free_norm(out_channels, norm_eps, norm_momentum)
        self.act1 = nn.GELU()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.norm2 = scale_free_norm(out_channels, norm_eps, norm_momentum)
        self.act2 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.pool(x)  # B, C_out, H/2, W/2
        x = self.norm1(x)
        x = self.act1(x)
        x = self.conv2(x)
        x = self.norm2(x)
        x = self.act2(x)
        return x


class AirbenchCNN(nn.Module, PyTorchModelHubMixin, tags=["cnn-lab", "image-classification", "airbench"]):
    """Whitening layer, three conv groups, global max pool, scaled linear layer.

    Args:
        widths: output channels of the three conv groups.
        whitening_kernel: side of the whitening filters.
        output_scale: factor applied to the logits.
        num_classes: outputs of the last layer.
        in_channels: channels of the input images.
        whitening: compute the first layer from the data (False: learn it, the ablation).
        norm_eps: the batch norms' eps.
        norm_momentum: how much each batch moves the batch norms' running statistics.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (64, 256, 256),
        whitening_kernel: int = 2,
        output_scale: float = 1 / 9,
        num_classes: int = 10,
        in_channels: int = 3,
        whitening: bool = True,
        norm_eps: float = NORM_EPS,
        norm_momentum: float = NORM_MOMENTUM,
    ):
        super().__init__()
        first = Whitening(in_channels, whitening_kernel, computed=whitening)
        channels = [first.conv.out_channels, *widths]
        groups = [ConvGroup(c_in, c_out, norm_eps, norm_momentum) for c_in, c_out in zip(channels, channels[1:])]
        self.features = nn.Sequential(first, *groups)
        self.whitening = whitening
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.output_scale = output_scale

    def fit_whitening(self, images: torch.Tensor) -> None:
        """Set the first layer from normalised training images (N, C, H, W); a learned first
        layer keeps its random init."""
        if self.whitening:
            self.features[0].fit(images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # B, widths[-1], 3, 3 for 32×32 inputs
        x = self.pool(x)  # B, widths[-1], 1, 1
        x = self.flatten(x)  # B, widths[-1]
        x = self.head(x)  # B, num_classes
        x = x * self.output_scale
        return x
