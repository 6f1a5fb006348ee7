"""What the tabs draw from a run: the loss and accuracy curves over the reference run's dashed
ones, the results table and the notes beside it.

They read plain data (a `training.results.Recorder`'s runs and the committed reference runs) and
never the other way round (trackio's rule).
"""

import functools
import hashlib
import html
import math
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from demo.settings import DEFAULT_PRESET
from demo.photo_sets import MAX_CLASSES
from demo.uploads import Refusal, open_upload
from serving.classroom import classroom
from training.datasets import get_dataset
from training.experiments import Experiment, get_experiment
from training.lessons import with_new_settings
from training.lessons import member
from training.results import Recorder, committed_reference

REFERENCE_TAG = " · reference"  # the plot series of an arm's reference curve
# One colour per arm (matplotlib's tab10); an arm's reference curve shares it, dashed.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
DASH_POINTS = 120  # a reference curve is drawn as 60 dashes, whatever its length
# What recording a reference run needs beyond this repo, the data and a CPU.
REFERENCE_NEEDS = {"final": " (a GPU job)", "transfer": " (needs AlexNet's ImageNet weights)"}
# Side-by-side plots narrower than this wrap onto rows of their own: on a phone each is drawn at
# full width instead of two shrinking to nothing.
PLOT_MIN_WIDTH = 360


# The committed report-length reference run of an experiment (results/reference), if any.
reference = committed_reference


def plot_series(experiment: Experiment, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The arms a tab's plots can show, fixed when the tab is built: the experiment's own arms
    and any the tab adds."""
    return (*experiment.arm_overrides["report"], *extra)


def series_of(label: str, series: tuple[str, ...]) -> str:
    """The plot series of an arm: its own label, or the series it is a variant of
    ("momentum 0.5" is drawn as "momentum")."""
    if label in series:
        return label
    return next((name for name in series if member(label, name)), label)


def colour_map(series: tuple[str, ...]) -> dict[str, str]:
    """One colour per arm, shared by its live curve and its reference curve."""
    colours = {}
    for name, colour in zip(series, PALETTE, strict=False):
        colours[name] = colours[name + REFERENCE_TAG] = colour
    return colours


def dashed(points: list[tuple[float, float]], name: str) -> list[tuple]:
    """A curve resampled to DASH_POINTS points with every other segment left out: the plot
    breaks a line at a missing value, and LinePlot has no dash style of its own."""
    if not points:
        return []
    x, y = np.array(points).T
    grid = np.linspace(x[0], x[-1], DASH_POINTS)
    rows = []
    for i, (a, b) in enumerate(zip(grid, np.interp(grid, x, y))):
        rows.append((a, b, name))
        if i % 2:
            rows.append((a, math.nan, name))
    return rows


def points(run: dict) -> tuple[list, list]:
    """(epoch, train loss) and (epoch, test accuracy %) points of one run's history."""
    loss = [(p["epoch"], p["train_loss"]) for p in run["history"] if p["type"] == "TrainStep"]
    accuracy = [(p["epoch"], 100 * p["test_acc"]) for p in run["history"] if p["type"] == "Evaluation"]
    return loss, accuracy


@functools.cache
def reference_curves(experiment_name: str, series: tuple[str, ...]) -> tuple[list, list]:
    """Loss and accuracy rows of the recorded reference run, dashed, one series per arm."""
    recorded = reference(experiment_name)
    loss, accuracy = [], []
    for run in recorded["runs"] if recorded else []:
        name = series_of(run["label"], series) + REFERENCE_TAG
        run_loss, run_accuracy = points(run)
        loss += dashed(run_loss, name)
        accuracy += dashed(run_accuracy, name)
    return loss, accuracy


def reference_precision(recorded: dict) -> str | None:
    """The number format a reference run trained in (older recordings say it per run only)."""
    return recorded.get("precision") or recorded["runs"][0].get("precision")


def reference_caption(experiment_name: str) -> str | None:
    """What the dashed curves are: the reference run's settings and device."""
    recorded = reference(experiment_name)
    if recorded is None:
        return None
    config = recorded["runs"][0]["config"]
    images = config.get("n_train") or get_dataset(config.get("dataset", "cifar10")).train_size
    quick = get_experiment(experiment_name).base["quick"]
    quick_images = quick.n_train or get_dataset(quick.dataset).train_size
    precision = reference_precision(recorded)
    return (
        f"Dashed: the reference run ({recorded['preset']} preset: {config['epochs']} epochs over {images:,} training images, "
        f"batch {config['batch_size']}, {config.get('init', 'default')} init{f', {precision}' if precision else ''}), "
        f"recorded on {recorded['device_name']}. **The x axis counts epochs, each run over its own training images:** "
        f"a reference epoch is {images:,} images and a quick-preset epoch {quick_images:,}, so at the same x the dashed curve "
        f"has seen {images / quick_images:.0f} times as many."
    )


def curves(experiment: Experiment, recorder: Recorder | None, series: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training-loss and test-accuracy rows for the live plots: the reference run's dashed
    curves, then every live arm's.

    Every series of the tab is present from the first frame on, as an empty row where it has
    no points yet: Gradio's LinePlot fixes its colour scale to the series in the first data it
    draws, and a series added later would be drawn without a colour."""
    reference_loss, reference_accuracy = reference_curves(experiment.name, series)
    loss, accuracy = list(reference_loss), list(reference_accuracy)
    for name in series:
        loss.append((0.0, math.nan, name))
        accuracy.append((0.0, math.nan, name))
    for run in recorder.runs.values() if recorder else []:
        name = series_of(run["label"], series)
        run_loss, run_accuracy = points(run)
        loss += [(x, y, name) for x, y in run_loss]
        accuracy += [(x, y, name) for x, y in run_accuracy]
    loss_frame = pd.DataFrame(loss, columns=["epoch", "train loss", "arm"]).astype({"epoch": float, "train loss": float})
    # Above the loss axis's top a point is left out, not drawn over the title: the plot does not clip.
    ceiling = loss_ceiling(experiment)
    loss_frame.loc[loss_frame["train loss"] > ceiling, "train loss"] = math.nan
    return (
        loss_frame,
        pd.DataFrame(accuracy, columns=["epoch", "test accuracy (%)", "arm"]).astype({"epoch": float, "test accuracy (%)": float}),
    )


def this_run(run: dict, stopped: bool) -> str:
    """The "this run" cell of an arm: its accuracy, or how far it got."""
    if "test_acc" in run:
        return f"{run['test_acc']:.2%}"
    if not run:
        return "—"
    if not stopped:
        return "training…"
    steps = [point["step"] for point in run["history"] if point["type"] == "TrainStep"]
    tests = [point["test_acc"] for point in run["history"] if point["type"] == "Evaluation"]
    where = f"stopped at step {steps[-1]:,}" if steps else "stopped before its first step"
    return where + (f" ({tests[-1]:.2%} at its last test)" if tests else "")


def images_seen(config: dict) -> str:
    """How many training images a run's config draws over all its epochs, short ("250k"): a 37%
    after 12k images is not a failure beside 57% after 250k. "up to" where it may stop early."""
    config = with_new_settings(config)  # a recording older than a setting ran at its default
    size = get_dataset(config["dataset"]).train_size
    seen = config["epochs"] * min(config.get("n_train") or size, size)
    short = f"{seen / 1e6:.3g}M" if seen >= 1e6 else f"{seen / 1000:.0f}k" if seen >= 10_000 else f"{seen:,}"
    return ("up to " if config.get("loss_threshold") else "") + f"{short} images"


@functools.cache
def recorded_cells(experiment_name: str) -> dict[str, tuple[str, str]]:
    """Each arm's report and reference-run cells, by label, the report's arms first: no run changes
    them, so they are worked out once, not at every frame of a stream."""
    experiment = get_experiment(experiment_name)
    report = {r.arm: r for r in experiment.report}
    configs = {c.label: asdict(c) for c in experiment.arms("report")} if "report" in experiment.base else {}
    recorded = reference(experiment_name)
    references = {run["label"]: run for run in recorded["runs"]} if recorded else {}
    cells = {}
    for label in dict.fromkeys([*experiment.arm_overrides["report"], *references]):
        theirs, ref = report.get(label), references.get(label)
        if theirs and theirs.test_acc:
            ours = f"{theirs.test_acc:.2%} in {theirs.train_time_s} s" + (f", {images_seen(configs[label])}" if label in configs else "")
        else:
            ours = "figure only" if theirs else "—"
        cells[label] = (ours, f"{ref['test_acc']:.2%} in {ref['train_time_s']:.0f} s, {images_seen(ref['config'])}" if ref else "—")
    return cells


def results_table(experiment: Experiment, recorder: Recorder | None, stopped: bool = False) -> pd.DataFrame:
    """One row per arm: the report's number, the recorded reference run and this run (`stopped`:
    the run was stopped, so unfinished arms say where they got to). An experiment on the
    student's own photos has neither a report figure nor a reference run to set beside it."""
    recorded = recorded_cells(experiment.name)
    live = recorder.runs if recorder else {}
    rows = []
    # The report's arms come first, so that the table has their numbers before anyone trains.
    for label in list(dict.fromkeys([*recorded, *live])):
        (theirs, ref), run = recorded.get(label, ("—", "—")), live.get(label, {})
        steps = [point for point in run.get("history", []) if point["type"] == "TrainStep"]
        latest = run if "test_acc" in run else (steps[-1] if steps else {})
        rows.append(
            {
                # The student's own result first after the arm: on a phone it is in view unscrolled.
                "arm": label,
                "this run": this_run(run, stopped) + (f", {images_seen(run['config'])}" if "test_acc" in run else ""),
                "report (Kaggle GPU)": theirs,
                "reference run": ref,
                "train time (s)": round(latest.get("train_time_s", latest.get("elapsed_s", 0.0)), 1) if latest else None,
                "images/s": round(latest.get("images_per_s", 0.0)) if latest else None,
            }
        )
    table = pd.DataFrame(rows)
    return table.drop(columns=["report (Kaggle GPU)", "reference run"]) if experiment.own_data else table


def table_notes(experiment: Experiment) -> str:
    """What the table's short cells stand for: the report's notes, where the reference run comes
    from, and the experiment's own notes (kept out of the cells, so that the columns that compare
    stay in view)."""
    notes = [f"*Report, {r.arm}:* {r.note}." for r in experiment.report if r.note]
    recorded = reference(experiment.name)
    if recorded:
        config = recorded["runs"][0]["config"]
        precision = reference_precision(recorded)
        notes.append(
            f"*Reference run:* the {recorded['preset']} preset, {config.get('init', 'default')} init{f', {precision}' if precision else ''}, "
            f"seed {recorded.get('seed', 0)}, recorded on {recorded['device_name']}."
        )
    else:
        # How to record one is the deployer's business (docs/deploying.md), not the student's.
        notes.append(f"*Reference run:* none recorded yet{REFERENCE_NEEDS.get(experiment.name, '')}.")
    return " ".join([*notes, *([experiment.notes] if experiment.notes else [])])


# Tick labels with at most two decimals ("~" drops trailing zeros), however odd the data's values.
AXIS_FORMAT = ".2~f"


def loss_ceiling(experiment: Experiment) -> float:
    """The top of the loss axis: 1.5 × the loss of a uniform guess, ln(classes), for the most
    classes the experiment trains on. The first steps' losses can be several times higher, and an
    axis stretched to them flattens every later difference."""
    classes = MAX_CLASSES if experiment.own_data else len(get_dataset(experiment.base[DEFAULT_PRESET].dataset).classes)
    return round(1.5 * math.log(classes), 1)


def line_plots(experiment: Experiment, series: tuple[str, ...]) -> tuple[gr.LinePlot, gr.LinePlot]:
    """The loss and accuracy plots, showing the reference run from the first page load."""
    loss, accuracy = curves(experiment, None, series)
    legend = "arm (dashed: reference run)" if reference(experiment.name) else "arm"
    shared = {
        "x": "epoch", "color": "arm", "color_map": colour_map(series), "height": 260, "min_width": PLOT_MIN_WIDTH,
        "x_axis_format": AXIS_FORMAT, "y_axis_format": AXIS_FORMAT, "color_title": legend,
        "colors_in_legend": list(series),  # an arm's reference curve shares its colour: one legend entry each
    }
    ceiling = loss_ceiling(experiment)
    return (
        # Titles fit a phone's 300 px of plot: the loss axis says how it is drawn.
        # A y title longer than the plot is tall pushes the plot's title past its top edge.
        gr.LinePlot(loss, y="train loss", y_title="loss (smoothed)", y_lim=[0, ceiling], title="Training loss", **shared),
        gr.LinePlot(accuracy, y="test accuracy (%)", title="Test accuracy", **shared),
    )


def explained(heading: str, error: Exception) -> str:
    """Markdown for a refusal that stays on the page beside what it refuses (not in a toast that
    vanishes): a bold heading, then the reason line by line, escaped, since a reason can read like
    HTML ("<urlopen error …>")."""
    return f"**{heading}** " + "  \n".join(html.escape(line) for line in str(error).splitlines())


# Images shown in answers (classify_cifar10, browse_cell, the transfer tabs' photos), each written
# once and kept as long as what shows it: a model's pictures (its first-layer filters, its test
# images) as long as the model, an answer's (the student's photo, what the network made of it) as
# long as the session lasts (serving.sessions ends it) and for its last ANSWER_FILES files. Gradio
# copies each file it hands out into its own cache, which app.py's delete_cache empties.
SHOWN_DIR = Path(tempfile.gettempdir()) / "cnnlab-shown"
ANSWER_FILES = 12  # per session: the pictures of its last few answers
_owners: dict[Path, set] = {}  # file → who shows it
_session_files: dict[str, list[Path]] = {}  # session → its answers' files, oldest first
_models_shown: set[tuple] = set()  # the models whose pictures go with them (each has its finalizer)
_shown_lock = threading.RLock()


def image_file(pixels: np.ndarray | Image.Image, photo: bool = False, owner: object = None) -> str:
    """The image as a file named by its pixels, written once and atomically: a PNG at the fastest
    compression (enlarged pixels and tiles compress well at any level), or with `photo` a JPEG,
    which encodes a photo several times faster than a PNG does. `owner` keeps it: a model (the
    file lives as long as it), a session's name (see above), or None (the app's, for good).

    Returned as an array, Gradio would write it into its cache again on every answer, in place
    (`gradio.processing_utils.save_pil_to_cache`), so a student downloading it while another is
    shown the same image (a model's first-layer filters; an example photo) would get half a file.
    A file is copied into Gradio's cache once, under a temporary name and renamed."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()[:32]
    path = SHOWN_DIR / f"{digest}.{'jpg' if photo else 'png'}"
    with _shown_lock:
        if not path.exists():
            SHOWN_DIR.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{threading.get_ident()}.tmp")
            image.save(partial, format="JPEG", quality=90) if photo else image.save(partial, format="PNG", compress_level=1)
            os.replace(partial, path)
        _own(path, owner)
    return str(path)


def _own(path: Path, owner: object) -> None:
    if owner is None:
        owner = "app"
    elif isinstance(owner, str):
        _session_answer(path, owner)
    else:  # a model: its pictures go with it
        model, owner = owner, ("model", id(owner))
        if owner not in _models_shown:
            _models_shown.add(owner)
            weakref.finalize(model, release, owner)
    _owners.setdefault(path, set()).add(owner)


def _session_answer(path: Path, session: str) -> None:
    classroom.sessions.get(session)  # seen now: the sessions idle too long end, and their pictures go
    files = _session_files.setdefault(session, [])
    if path in files:
        files.remove(path)
    files.append(path)
    while len(files) > ANSWER_FILES:
        _disown(files.pop(0), session)


def release(owner: object) -> None:
    """`owner` shows nothing any more (a model let go, a session ended): delete each file nobody
    else shows. A file being served (Windows refuses to delete it) goes with the temp folder."""
    with _shown_lock:
        if isinstance(owner, str):
            files = _session_files.pop(owner, [])
        else:
            _models_shown.discard(owner)
            files = [path for path, owners in _owners.items() if owner in owners]
        for path in files:
            _disown(path, owner)


classroom.sessions.on_end(lambda session: release(session.id))  # a session's answers go with it


def _disown(path: Path, owner: object) -> None:
    owners = _owners.get(path, set())
    owners.discard(owner)
    if not owners:
        _owners.pop(path, None)
        try:
            path.unlink(missing_ok=True)
        except PermissionError:
            pass


def photo_file(image: Image.Image, session: str | None) -> str:
    """A photo as shown beside its answer: at most 512 px a side, as a JPEG, kept for the session."""
    shown = image.copy()
    shown.thumbnail((512, 512))
    return image_file(shown, photo=True, owner=session or "anonymous")


# Downloads (a trained model as a zip): each written into a folder of its own under one folder,
# bounded in size. Gradio hands out its own copy, from its cache (emptied by app.py's
# delete_cache), so ours go, oldest first, once the folder holds more than DOWNLOADS_MAX_BYTES,
# but never in the minute after they were written, while Gradio may still be copying them.
DOWNLOADS_DIR = Path(tempfile.gettempdir()) / "cnnlab-downloads"
DOWNLOADS_MAX_BYTES = 1 << 30  # two Your images zips (460 MB each)
DOWNLOAD_COPY_S = 60


def download_folder(prefix: str) -> Path:
    """A new, empty folder for one download, made after the oldest downloads beyond the bound went."""
    DOWNLOADS_DIR.mkdir(parents=True, exist_ok=True)
    with _shown_lock:
        folders = sorted((entry.stat().st_mtime, entry) for entry in DOWNLOADS_DIR.iterdir() if entry.is_dir())
        sizes = {folder: sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) for _, folder in folders}
        total = sum(sizes.values())
        for written, folder in folders:
            if total <= DOWNLOADS_MAX_BYTES or time.time() - written < DOWNLOAD_COPY_S:
                break
            shutil.rmtree(folder, ignore_errors=True)
            total -= sizes[folder]
        return Path(tempfile.mkdtemp(prefix=prefix, dir=DOWNLOADS_DIR))


def answered_on_page(image_path, request, answer: Callable[[Image.Image], dict]) -> tuple:
    """A classify box's own call from the page: the prediction `answer` gives, a note, and the
    photo itself to show beside it. A refusal (not a photo, no model yet) is the note, on the page
    beside the photo, where a toast would vanish."""
    try:
        image = open_upload(image_path)
    except Refusal as error:
        return None, f"**Cannot classify this file.** {error.message}", None
    shown = photo_file(image, request.session_hash if request else None)
    try:
        return answer(image), "", shown
    except Refusal as error:
        return None, f"**Cannot classify yet.** {error.message}", shown
