"""Tab: batch normalization on and off, paired (Ioffe & Szegedy, 2015), and why the init decides
how much it helps: the signal's scale through the layers at initialisation, measured (after the
layer-by-layer variance argument of Glorot & Bengio, 2010, and He et al., 2015)."""

import functools

import gradio as gr
import torch

# Figure, not pyplot: no GUI backend to pick, no global figure list to close, and 0.3 s less
# of the app's cold start.
from matplotlib.figure import Figure

from demo.lesson import Lesson
from demo.views import PALETTE
from models import INITS, create_model
from models.cnn import ConvBlock, DenseBlock

EXPLANATION = r"""
Batch norm standardises every channel over the batch, then lets the network rescale it:

$$\hat{x} = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}, \qquad y = \gamma\,\hat{x} + \beta$$

Each layer then sees inputs of a steady scale however the layers before it change, so larger
learning rates stay stable and training converges in fewer steps. At test time $\mu$ and
$\sigma$ are running averages from training. Here a `BatchNorm2d` follows every conv layer of
one arm; the other arm is the same network, with the same initial conv weights, without it.

**How much it helps depends on the initial weights.** PyTorch's default init, which the report's
code used, draws weights with variance $1/(3\,n_\text{in})$; after a ReLU a layer's output then has
about $1/6$ of its input's variance, so five conv layers shrink the signal, and the gradient
flowing back, more than tenfold (the plot below measures twentyfold). The network without batch norm waits near
chance until its weights grow; batch norm restores the scale at every layer and trains at once.
The He init ($2/n_\text{in}$) keeps the scale by itself: choose **he** under *Initial weights* and
most of the gap goes (quick preset, fp32, seeds 0–2: +30.9, +26.6 and +27.5 points with the default
init; +2.4, +7.0 and +7.2 with He).
At the report's settings our reference run reproduces the report's gap with the default init
(50.45% without, 68.50% with batch norm after 2 epochs). The report saw the large gap without naming
the cause.
"""

SIGNAL_MODEL = "cnn-report"  # the report's 5-conv/3-fc network
# Each layer's std is taken over ~10⁴–10⁵ values per image, so 32 images give the same curve to
# three digits as 256, and the figure costs 0.35 s at start instead of 4 s (2 cores).
SIGNAL_IMAGES = 32


@functools.cache
def signal_scale_figure():
    """Standard deviation of every hidden layer's output at initialisation, for each init, with
    and without batch norm, on a batch of unit-variance noise (what normalised images look like
    to the first layer)."""
    x = torch.randn(SIGNAL_IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # 480 px wide, so that a phone shows it at 80% (382 px; the old 560 px figure was shown at 60%).
    figure = Figure(figsize=(4.8, 3.7), dpi=100)
    axes = figure.subplots()
    for colour, init in zip(PALETTE, INITS):
        for batch_norm, style in ((False, "o-"), (True, "s--")):
            torch.manual_seed(0)
            model = create_model(SIGNAL_MODEL, init=init, batch_norm=batch_norm).train()  # batch norm uses batch statistics, as in training
            scales, h = [], x
            with torch.no_grad():
                for layer in [*model.features, model.flatten, *model.classifier]:
                    h = layer(h)
                    if isinstance(layer, ConvBlock | DenseBlock):
                        scales.append(h.std().item())
            label = f"{init} init, {'with' if batch_norm else 'no'} batch norm"
            axes.semilogy(range(1, len(scales) + 1), scales, style, color=colour, markersize=4, label=label)
    axes.set_xlabel("layer (5 conv, then 3 fully connected;\nthe last gives the logits)", fontsize=9)
    axes.set_ylabel("spread of the outputs (std)", fontsize=9)
    axes.set_title("The signal's scale through the report's network\nat initialisation (measured)", fontsize=10)
    axes.tick_params(labelsize=9)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize=8.5, frameon=False)
    figure.tight_layout()
    return figure


class BatchNormalization(Lesson):
    """Train the same network with and without batch norm, paired; `init` None keeps the preset's."""


    def controls(self) -> list:
        gr.Plot(signal_scale_figure(), label="Signal scale at initialisation", format="png", show_label=False)
        return []


TAB = BatchNormalization(
    "Batch normalization", "batchnorm", "compare_batchnorm", EXPLANATION,
    question="Does rescaling every layer's outputs (batch norm) make the network learn faster?",
    idea=(
        "Batch norm rescales each channel of a layer's output over the batch, so every layer sees inputs of one scale. "
        "The picture shows why that matters here: with the report's initial weights, the network without it shrinks "
        "its signal at every layer."
    ),
)
