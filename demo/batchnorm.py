"""Tab: batch normalization on and off, paired (Ioffe & Szegedy, 2015)."""

import gradio as gr

from demo.common import ComparisonPanel, gpu, plan, stream_comparison
from training.experiments import get_experiment

EXPLANATION = r"""
Batch norm standardises every channel over the batch, then lets the network rescale it:

$$\hat{x} = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}, \qquad y = \gamma\,\hat{x} + \beta$$

Each layer then sees inputs of a steady scale however the layers before it change, so larger
learning rates stay stable and training converges in fewer steps. At test time $\mu$ and
$\sigma$ are running averages from training. Here a `BatchNorm2d` follows every conv layer of
one arm; the other arm is the same network, with the same initial conv weights, without it.
"""


@gpu(duration=300)
def compare_batchnorm(preset="quick", epochs=3, n_train=10_000, lr=0.01, batch_size=64, seed=0, progress=gr.Progress()):
    """Train the same network with and without batch norm, paired."""
    experiment = get_experiment("batchnorm")
    configs = plan(experiment, preset, epochs, n_train, lr, batch_size, seed)
    yield from stream_comparison(experiment, configs, preset, progress)


def build() -> None:
    panel = ComparisonPanel("batchnorm", EXPLANATION)
    panel.wire(compare_batchnorm, [], api_name="compare_batchnorm")
