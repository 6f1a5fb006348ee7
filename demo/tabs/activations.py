"""Tab: ReLU vs sigmoid vs tanh — the functions, their derivatives and a paired CIFAR-10 run.

The derivative plot is the whole story of the report's finding: sigmoid's slope never exceeds
¼ and tanh's fades away from 0, so gradients shrink layer after layer (Glorot & Bengio, 2010);
ReLU passes a slope of 1 for every positive input.
"""

from dataclasses import replace

import gradio as gr
import pandas as pd
import torch

from demo.lesson import Lesson
from demo.settings import Settings
from demo.views import AXIS_FORMAT, PLOT_MIN_WIDTH, colour_map
from models import ACTIVATIONS
from models.cnn import make_activation

EXPLANATION = r"""
An activation $f$ bends each layer's output; backpropagation multiplies the gradient by $f'$ at
every layer it passes.

| | $f(x)$ | $f'(x)$ | largest slope |
| --- | --- | --- | --- |
| ReLU | $\max(0, x)$ | $1$ if $x>0$, else $0$ | 1 |
| sigmoid | $1/(1+e^{-x})$ | $f(x)\,(1-f(x))$ | ¼ |
| tanh | $(e^{x}-e^{-x})/(e^{x}+e^{-x})$ | $1-f(x)^2$ | 1, only at 0 |

Through five conv layers sigmoid multiplies the gradient by at most $(1/4)^5 \approx 0.001$, so the
first layers barely learn. The arms below share everything but the activation.

**ReLU's head start depends on the initial weights.** In our report-length reference run, with the
report's own init (PyTorch's default), tanh led ReLU after every one of the five epochs: by 10.2 points
after the first, by 2.4 after the last (68.16% vs 65.76%), and sigmoid never left chance. The
instruments show why, at the report's settings over the first 500 steps (seed 0, fp32,
`benchmarks/inside.py`). That init shrinks every layer's output, and ReLU, which zeroes the negative
half, shrinks it more than tanh, which passes small inputs almost unchanged: over the five conv layers
ReLU's output scale fell 23-fold, tanh's 3.5-fold. The gradient flowing back shrinks alike, so ReLU's
first conv layer got 1/31 of tanh's gradient and took steps 1/64 of tanh's size, and 40–44% of its
fully-connected units were dead. After 500 steps the ReLU network was still at chance (loss 2.30)
while tanh's was learning (2.05). Under the He init, made for ReLU, ReLU leads: the quick preset uses
it (the verdict gives its measured seed spread). The report saw ReLU ahead; its network's widths are
not given, and ours are a guess.
"""


# Every activation a user can choose is a series of the plots, in one colour across all of them.
SERIES = tuple(ACTIVATIONS)
DEFAULT_ACTIVATIONS = ("relu", "sigmoid", "tanh")


def activation_curves(names: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """f(x) and f'(x) on [-5, 5] for each activation, by autograd."""
    rows, slopes = [], []
    for name in names or list(ACTIVATIONS):
        x = torch.linspace(-5, 5, 201, requires_grad=True)
        y = make_activation(name)(x)
        (slope,) = torch.autograd.grad(y.sum(), x)
        rows += [(a, b, name) for a, b in zip(x.tolist(), y.tolist())]
        slopes += [(a, b, name) for a, b in zip(x.tolist(), slope.tolist())]
    return pd.DataFrame(rows, columns=["x", "f(x)", "activation"]), pd.DataFrame(slopes, columns=["x", "slope", "activation"])


class Activations(Lesson):
    """Train the same network with each chosen activation, paired."""


    def controls(self) -> list:
        values, slopes = activation_curves()
        chosen = gr.CheckboxGroup(list(ACTIVATIONS), value=list(DEFAULT_ACTIVATIONS), label="Activations to compare")
        shared = dict(x="x", color="activation", color_map=colour_map(SERIES), height=180, min_width=PLOT_MIN_WIDTH, x_axis_format=AXIS_FORMAT, y_axis_format=AXIS_FORMAT)
        with gr.Row():
            gr.LinePlot(values, y="f(x)", title="The activation, f(x)", **shared)
            gr.LinePlot(slopes, y="slope", title="Its slope, f′(x): the gradient's factor", **shared)
        return [chosen]

    def arms(self, settings: Settings, activations=DEFAULT_ACTIVATIONS) -> list:
        """One arm per chosen activation, the rest shared."""
        chosen = list(dict.fromkeys(activations or []))
        unknown = [a for a in chosen if a not in ACTIVATIONS]
        if not chosen or unknown or len(chosen) > len(ACTIVATIONS):
            raise ValueError(f"Choose one or more activations from {', '.join(ACTIVATIONS)}" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        template = settings.arms(self.experiment)[0]
        return [replace(template, label=a, model_overrides={**template.model_overrides, "activation": a}) for a in chosen]


TAB = Activations(
    "Activations", "activations", "compare_activations", EXPLANATION, SERIES,
    question="Which activation lets a deep network learn fastest: ReLU, sigmoid or tanh?",
    idea=(
        "Learning sends the error back through every layer, multiplied at each by the activation's slope. Sigmoid's "
        "slope is at most ¼ and tanh's fades away from 0, so little reaches the first layers; ReLU's is 1 wherever it is "
        "active. The second plot shows the slopes."
    ),
)
