"""The class board under a finished run: the class's runs at the same settings as points on one
line of margins, beside this run's and the report's, and how the class predicted. It reads the
plain summary serving.class_view makes of the class record.
"""

import gradio as gr
# Figure, not pyplot: no GUI backend to pick and no global figure list to close.
from matplotlib.figure import Figure

from serving.class_view import Board
from training.experiments import Experiment

# Drawn at 100 dpi and shown 384 px wide on a 400-px phone, at three quarters: its 12-pt text is
# then about 12 px high.
WIDTH_IN, HEIGHT_IN = 5.0, 2.9
FONT = 12
CLASS_COLOUR, THIS_COLOUR, REPORT_COLOUR = "#1f77b4", "#d62728", "#555555"


def board_figure(found: Board) -> Figure:
    """The margins on one axis: each class training a dot (larger for more students), this run a
    ring, the report's a dashed line, no difference the zero line, and ±2σ of this run's verdict
    about zero shaded (a gap inside it is no clear winner)."""
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    margins = [m for _, m, _ in found.points]
    known = [m for m in (*margins, found.this_run, found.report, 0.0) if m is not None]
    low, high = min(known), max(known)
    pad = max(1.0, 0.15 * (high - low))
    if found.sigma:
        axes.axvspan(-2 * found.sigma, 2 * found.sigma, color="#dddddd", zorder=0, label="no clear winner (±2σ)")
    axes.axvline(0, color="black", linewidth=1)
    axes.scatter(margins, [0] * len(margins), s=[60 + 40 * min(students, 10) for *_, students in found.points], color=CLASS_COLOUR, alpha=0.7, zorder=2, label="your class")
    for place, (seed, m, students) in enumerate(sorted(found.points, key=lambda point: point[1])):  # neighbours' labels alternate heights
        axes.annotate(f"seed {seed}" + (f" ×{students}" if students > 1 else ""), (m, 0), xytext=(0, 12 + 16 * (place % 2)), textcoords="offset points", ha="center", fontsize=FONT)
    if found.this_run is not None:
        axes.scatter([found.this_run], [0], s=260, facecolors="none", edgecolors=THIS_COLOUR, linewidths=2.5, zorder=3, label="this run")
    if found.report is not None:
        axes.axvline(found.report, color=REPORT_COLOUR, linestyle="--", linewidth=2, label=f"the report, {found.report:+.1f}")
    axes.set_xlim(low - pad, high + pad)
    axes.set_ylim(-1, 2)
    axes.set_yticks([])
    axes.set_xlabel(f"gap, points: {found.lesson}", fontsize=FONT)
    axes.tick_params(axis="x", labelsize=FONT)
    figure.legend(loc="outside lower center", ncols=2, fontsize=FONT, frameon=False)
    for side in ("left", "right", "top"):
        axes.spines[side].set_visible(False)
    return figure


def board_words(experiment: Experiment, found: Board) -> str:
    """The board in words: how many runs and students, and how the class predicted."""
    students = sum(n for *_, n in found.points)
    runs = f"{found.runs} run{'s' if found.runs != 1 else ''}" + (f", finished by {students} students" if students > found.runs else "")
    spread = f" Their gaps: {min(m for _, m, _ in found.points):+.1f} to {max(m for _, m, _ in found.points):+.1f} points." if found.runs > 1 else " Give another group another seed to see how much the gap moves."
    said = ", ".join(f"{n} said {words}" for words, n in sorted(found.predicted.items(), key=lambda item: -item[1]))
    predictions = f" **Predictions:** {said}; {found.right} right, {found.wrong} not." if found.predicted else ""
    return f"**Your class at these settings:** {runs}.{spread}{predictions}"


def drawn_board(experiment: Experiment, found: Board | None) -> tuple:
    """The board's plot and words, hidden where there is no board (a run not in the record)."""
    if found is None:
        return gr.update(visible=False), ""
    return gr.update(value=board_figure(found), visible=True), board_words(experiment, found)
