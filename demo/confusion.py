"""The confusion matrix as a picture that fits a phone: each cell shaded by the share of its true
class it holds, its count written in it, CIFAR-10's short class names on both axes, and the cell
being browsed outlined. A click on the picture names its cell: the axes sit at fixed fractions of
the figure, so a pixel maps to a cell by arithmetic."""

import weakref

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from demo.views import image_file

SIDE_PX = 400  # a phone's width: the whole matrix in view
# The axes' place in the figure, as fractions (left, bottom, width, height): room for the names.
AXES = (0.15, 0.04, 0.83, 0.80)


# Each model's pictures, drawn once and gone with it: the page draws the default model's at every
# load and a cell's at every click on it, 0.17 s of the weak host's CPU each time.
_drawn: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def matrix_picture(matrix: list[list[int]], names: tuple[str, ...], cell: tuple[int, int] | None, owner: object) -> str:
    """The shaded matrix as an image file (demo.views.image_file, kept by `owner`, a model), rows
    the true class and columns the predicted one, `cell` (true, predicted) outlined."""
    drawn = _drawn.setdefault(owner, {})
    key = (tuple(map(tuple, matrix)), names, cell)
    if key not in drawn:
        drawn[key] = _draw(matrix, names, cell, owner)
    return drawn[key]


def _draw(matrix: list[list[int]], names: tuple[str, ...], cell: tuple[int, int] | None, owner: object) -> str:
    counts = np.array(matrix)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(SIDE_PX / 100, SIDE_PX / 100), dpi=100)
    axes = figure.add_axes(AXES)
    # A square root lifts the few-percent mistakes out of the white without hiding the diagonal.
    axes.imshow(np.sqrt(share), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=6.5, color="white" if share[row, column] > 0.5 else "#222222")
    axes.set_xticks(range(len(names)), names, rotation=60, ha="left", rotation_mode="anchor", fontsize=7.5)
    axes.set_yticks(range(len(names)), names, fontsize=7.5)
    axes.xaxis.tick_top()
    axes.tick_params(length=0)
    figure.text(0.01, 0.97, "true ↓  predicted →", fontsize=7.5, va="top")
    if cell is not None:
        row, column = cell
        axes.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#e8590c", linewidth=2))
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return image_file(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]), owner=owner)


def cell_at(x: float, y: float, classes: int) -> tuple[int, int] | None:
    """The (true, predicted) cell under a click at pixel (x, y) of the picture, or None outside
    the matrix."""
    left, bottom, width, height = AXES
    column = (x / SIDE_PX - left) / width
    row = (y / SIDE_PX - (1 - bottom - height)) / height
    if not (0 <= column < 1 and 0 <= row < 1):
        return None
    return int(row * classes), int(column * classes)
