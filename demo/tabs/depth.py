"""Tab: depth — a grid of conv-layer × fully-connected-layer counts, like the report's figures 1 and 2.

Each cell trains alone (so its time is its own) and fills in the accuracy and time heatmaps as
soon as it finishes.
"""

from dataclasses import replace

import gradio as gr
import numpy as np
from matplotlib import patheffects

# Figure, not pyplot: no GUI backend to pick, no global figure list to close, and 0.3 s less
# of the app's cold start.
from matplotlib.figure import Figure

from demo.lesson import Lesson
from demo.settings import Settings
from demo.views import PLOT_MIN_WIDTH, reference, results_table
from training.experiments import DEPTH_GRID

EXPLANATION = r"""
More layers mean more parameters and more compute per image, so **training time** grows with
depth. **Accuracy** is a trade-off: conv layers build up features (edges → textures → parts),
while extra fully-connected layers add parameters without adding spatial features and overfit
sooner. Every cell shares the seed, data and batch order; cells with the same first layers start
from the same weights in those layers. Cells run one after another and are timed alone.

**Depth pays only once the deep networks get going.** In our report-length reference run, with the
report's own init and two epochs, accuracy peaked at 3 conv × 1 fc (62.95%); the 5-conv cells were
barely ahead of the 1-conv ones (+0.5 points on average) and fell with every fc layer added (58.79%,
54.90%, 50.45%); after one epoch 5 conv × 3 fc was at 37.55%, 1 conv × 1 fc at 51.74%. The
instruments show what slows the deep cells, at the report's settings over the first 500 steps (seed 0,
fp32, `benchmarks/inside.py`): the report's init shrinks the signal at every layer, and the gradient
flowing back with it, so the first conv layer got 1.96 (gradient norm) in the 1 × 1 cell, 0.58 with
3 conv, 0.040 with 5 and 0.0044 at 5 × 3, 440 times less, and its steps were 530 times smaller. The deep
cells' first layers barely move for hundreds of steps, and within two epochs they do not make it up. Under the He init, which the quick preset uses, the
5-conv cells lead (the verdict gives the measured seed spread). The report's peak at 5 × 3 we did not reproduce.
"""

CONV_CHOICES = list(range(1, 8))
FC_CHOICES = list(range(1, 4))


def heatmap(values: np.ndarray, conv_counts: list[int], fc_counts: list[int], title: str, fmt: str, cmap: str):
    figure = Figure(figsize=(3.6, 0.5 + 0.45 * len(conv_counts)), dpi=100)
    axes = figure.subplots()
    axes.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
    axes.set_xticks(range(len(fc_counts)), [str(f) for f in fc_counts])
    axes.set_yticks(range(len(conv_counts)), [str(c) for c in conv_counts])
    axes.set_xlabel("fully-connected layers"), axes.set_ylabel("conv layers")
    # A white outline keeps the numbers readable on the darkest and the lightest cells.
    outline = [patheffects.withStroke(linewidth=2, foreground="white")]
    for (row, column), value in np.ndenumerate(values):
        axes.text(column, row, "…" if np.isnan(value) else format(value, fmt), ha="center", va="center", fontsize=8, path_effects=outline)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def grid_figures(session_runs: dict, conv_counts: list[int], fc_counts: list[int], title: str = ""):
    accuracy = np.full((len(conv_counts), len(fc_counts)), np.nan)
    seconds = accuracy.copy()
    for run in session_runs.values():
        if "test_acc" in run:
            row, column = conv_counts.index(run["config"]["n_conv"]), fc_counts.index(run["config"]["n_fc"])
            accuracy[row, column] = 100 * run["test_acc"]
            seconds[row, column] = run["train_time_s"]
    return (
        heatmap(accuracy, conv_counts, fc_counts, f"{title}Test accuracy (%)", ".1f", "viridis"),
        heatmap(seconds, conv_counts, fc_counts, f"{title}Training time (s)", ".1f", "magma_r"),
    )


def reference_figures():
    """The recorded reference grid's two heatmaps, or None where none has been recorded."""
    recorded = reference("architecture")
    if recorded is None:
        return None
    runs = {run["label"]: run for run in recorded["runs"]}
    return grid_figures(runs, *grid_counts(runs), title=f"Reference ({recorded['preset']}, {recorded['device_name']})\n")


def grid_counts(runs: dict) -> tuple[list[int], list[int]]:
    """The conv and fully-connected layer counts of a grid's cells, from each cell's settings."""
    return sorted({run["config"]["n_conv"] for run in runs.values()}), sorted({run["config"]["n_fc"] for run in runs.values()})


def checked_counts(values, allowed: list[int], name: str) -> list[int]:
    try:
        counts = sorted({int(v) for v in values or []})
    except (TypeError, ValueError):
        counts = []
    if not counts or not set(counts) <= set(allowed):
        raise ValueError(f"Choose {name} layer counts from {allowed[0]} to {allowed[-1]}, got {values!r}")
    return counts


class Depth(Lesson):
    """Train one network per (conv, fc) cell, one after another; stream the two heatmaps."""

    opens_with_plots = True  # the reference grid, until the first Train

    def controls(self) -> list:
        conv_counts = gr.CheckboxGroup(CONV_CHOICES, value=list(DEPTH_GRID["quick"][0]), label="Conv layers")
        fc_counts = gr.CheckboxGroup(FC_CHOICES, value=list(DEPTH_GRID["quick"][1]), label="Fully-connected layers")
        return [conv_counts, fc_counts]

    def arms(self, settings: Settings, conv_counts=DEPTH_GRID["quick"][0], fc_counts=DEPTH_GRID["quick"][1]) -> list:
        """One network per (conv, fc) cell of the chosen counts."""
        conv_counts = checked_counts(conv_counts, CONV_CHOICES, "conv")
        fc_counts = checked_counts(fc_counts, FC_CHOICES, "fully-connected")
        template = settings.arms(self.experiment)[0]
        return [
            replace(template, label=f"conv{c}-fc{f}", model_overrides={**template.model_overrides, "n_conv": c, "n_fc": f})
            for c in conv_counts
            for f in fc_counts
        ]

    def caption(self) -> None:
        return None  # the heatmaps title themselves

    def plots(self, panel) -> list:
        recorded = reference_figures() or (None, None)
        # Until the first Train the top frames show the reference grid; then it moves below the live one.
        accuracy = gr.Plot(recorded[0], label="Test accuracy", format="png", show_label=False, min_width=PLOT_MIN_WIDTH)
        seconds = gr.Plot(recorded[1], label="Training time", format="png", show_label=False, min_width=PLOT_MIN_WIDTH)
        if recorded[0]:
            with gr.Row(visible=False) as reference_row:
                gr.Plot(recorded[0], label="Reference run: test accuracy", format="png", show_label=False, min_width=PLOT_MIN_WIDTH)
                gr.Plot(recorded[1], label="Reference run: training time", format="png", show_label=False, min_width=PLOT_MIN_WIDTH)
            panel.hidden_until_trained.append(reference_row)
        return [accuracy, seconds]

    def frames(self, updates):
        drawn = -1
        for update, session in updates:
            runs = update.recorder.runs if update.recorder else {}
            # The heatmaps change only when a cell finishes; drawing them costs the CPU that trains.
            cells = sum("test_acc" in run for run in runs.values())
            figures = grid_figures(runs, *grid_counts(runs)) if runs and (cells != drawn or update.finished) else (gr.skip(), gr.skip())
            drawn = cells
            yield *figures, results_table(self.experiment, update.recorder, stopped=update.stopped), update.status, session


TAB = Depth(
    "Depth", "architecture", "depth_grid", EXPLANATION,
    question="Do more layers make a better network, and what do they cost in time?",
    idea=(
        "Each cell of the grid is one network, with 1 to 5 conv layers and 1 to 3 fully-connected layers, all trained on "
        "the same images in the same order. The grids fill in as each cell finishes: test accuracy and training time."
    ),
)
