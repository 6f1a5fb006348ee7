"""Tab: SGD with and without momentum — a paired CIFAR-10 run and a 2-D loss-surface view.

The surface view follows Goh's "Why Momentum Really Works" (Distill, 2017): on an
ill-conditioned quadratic, at a learning rate near the largest that plain gradient descent
survives, it zig-zags across the narrow valley and crawls along it, while momentum's running
average damps the zig-zag and keeps the progress along the floor. At small rates the roles
turn: plain descent glides, and momentum overshoots.
"""

from dataclasses import replace

import gradio as gr
import numpy as np

# Figure, not pyplot: no GUI backend to pick, no global figure list to close, and 0.3 s less
# of the app's cold start.
from matplotlib.figure import Figure

from demo.lesson import Lesson
from demo.settings import Settings
from training.config import limits, requested

EXPLANATION = r"""
Plain SGD steps against the gradient of the current batch: $w_{t+1} = w_t - \eta\, g_t$.
Momentum keeps a running direction $v$ and steps along it:

$$v_{t+1} = \beta\, v_t + g_t, \qquad w_{t+1} = w_t - \eta\, v_{t+1}$$

With $\beta = 0.9$ a gradient keeps acting for about $1/(1-\beta) = 10$ steps, so noise from
individual batches averages out, and directions that agree from step to step build up speed.
Both arms below share the seed, the initial weights and every batch; only $\beta$ differs.
"""

# The plots draw the momentum arm as one series whatever β is ("momentum 0.5" → "momentum").
SERIES = ("no momentum", "momentum")
BETA = 0.9
SURFACE_CURVATURE = (1.0, 100.0)  # the valley is 100 times steeper across than along
SURFACE_START = (-4.0, 0.6)
SURFACE_STEPS = 60
# Plain descent diverges across the valley above lr 2/100 = 0.02, zig-zags below it, and stops
# zig-zagging below 1/100. With β = 0.9 momentum's zig-zag shrinks by √β ≈ 0.95 a step, so it damps
# plain descent's zig-zag where that shrinks by less, above lr 1.95/100: the default sits there.
SURFACE_LR = 0.0198
SURFACE_LR_RANGE = (0.001, 0.03)
SURFACE_NOTE = (
    "Near lr 0.02, the largest rate plain SGD survives on this valley, plain SGD zig-zags across it for all 60 steps "
    "(its swing shrinks by a fifth every 10 steps) and crawls along the floor, ending 1.2 short of the middle. "
    "Momentum swings across too, for most of the 60 steps, but its swing shrinks by about a third every 10 steps "
    "(by √β ≈ 0.95 a step), to a tenth by the last 10, and its speed along the floor carries it past the middle once "
    "and back. Below 0.01 plain SGD no longer zig-zags, and momentum is the one that swings: its speed carries it past "
    "the floor and back (try 0.005). Above 0.02 plain SGD diverges."
)


def descent_paths(beta: float, lr: float, steps: int = SURFACE_STEPS) -> dict[str, np.ndarray]:
    """Iterates of gradient descent and heavy-ball momentum on f(w) = ½ Σ cᵢ wᵢ² from one start."""
    curvature = np.array(SURFACE_CURVATURE)
    paths = {}
    for label, b in (("no momentum", 0.0), (f"momentum {beta:g}", beta)):
        w, v = np.array(SURFACE_START), np.zeros(2)
        points = [w.copy()]
        for _ in range(steps):
            v = b * v + curvature * w
            w = w - lr * v
            # A diverging path leaves the picture; stop it at the edge instead of overflowing.
            if not np.all(np.abs(w) < 1e3):
                break
            points.append(w.copy())
        paths[label] = np.array(points)
    return paths


def loss_surface(beta: float = BETA, lr: float = SURFACE_LR):
    """The contour plot of the valley with both optimizers' paths."""
    try:
        beta = requested("momentum", beta)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    lr = min(max(float(lr), SURFACE_LR_RANGE[0]), SURFACE_LR_RANGE[1])
    x, y = np.meshgrid(np.linspace(-4.5, 4.5, 200), np.linspace(-0.8, 0.8, 120))
    loss = 0.5 * (SURFACE_CURVATURE[0] * x**2 + SURFACE_CURVATURE[1] * y**2)
    # 480 px wide, so that a phone shows it at 80% (382 px; the old 640 px figure was shown at 52%);
    # 320 px tall, so that Train stays in a phone's first screen and a half.
    figure = Figure(figsize=(4.8, 3.2), dpi=100)
    axes = figure.subplots()
    axes.contour(x, y, loss, levels=np.geomspace(0.01, 40, 12), colors="#bbbbbb", linewidths=0.8)
    for (label, path), color in zip(descent_paths(beta, lr).items(), ("#1f77b4", "#d62728")):
        final = 0.5 * (SURFACE_CURVATURE * path[-1] ** 2).sum()
        axes.plot(path[:, 0], path[:, 1], "o-", color=color, markersize=2.5, linewidth=1, label=f"{label} (loss after {len(path) - 1} steps: {final:.3g})")
    axes.plot(0, 0, "k*", markersize=10)
    axes.set_xlim(-4.5, 4.5), axes.set_ylim(-0.8, 0.8)
    axes.set_title(f"{SURFACE_STEPS} steps of lr {lr:g} on a valley\n100× steeper across than along", fontsize=10)
    axes.tick_params(labelsize=9)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=9, frameon=False)
    figure.tight_layout()
    return figure


class Momentum(Lesson):
    """Train the same network with plain SGD and with SGD + momentum β, paired."""


    def controls(self) -> list:
        beta = gr.Slider(*limits("momentum"), value=BETA, step=0.01, label="Momentum β")
        toy_lr = gr.Slider(*SURFACE_LR_RANGE, value=SURFACE_LR, step=0.0001, label="Learning rate on the valley (try 0.005, then 0.025)")
        surface = gr.Plot(value=loss_surface(BETA, SURFACE_LR), label="Loss surface", format="png", show_label=False)
        with gr.Accordion("What the valley shows", open=False):
            gr.Markdown(SURFACE_NOTE)
        for control in (beta, toy_lr):
            control.change(loss_surface, [beta, toy_lr], surface, api_visibility="private", trigger_mode="always_last")
        return [beta]

    def arms(self, settings: Settings, beta=BETA) -> list:
        """Plain SGD and SGD with momentum β."""
        beta = requested("momentum", beta)
        plain, with_momentum = settings.arms(self.experiment)
        return [plain, replace(with_momentum, label=f"momentum {beta:g}", momentum=beta)]


TAB = Momentum(
    "Momentum", "momentum", "compare_momentum", EXPLANATION, SERIES,
    question="Does momentum get further than plain SGD in the same number of steps?",
    idea=(
        "Plain SGD follows each batch's gradient, so its steps zig-zag. Momentum steps along a running average "
        "(β sets how long it remembers), so the directions that agree add up and the zig-zags cancel. The valley shows "
        "both; Train runs both on CIFAR-10."
    ),
)
