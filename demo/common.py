"""What every tab shares: bounded settings, the streaming comparison, plots and tables.

The tabs read the training core's plain data (events collected by `training.results.Recorder`)
and never the other way round. Every number a user or an API client sends is checked here, on
the server, before any work starts.
"""

import functools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

import gradio as gr
import numpy as np
import pandas as pd
import torch

from models import INITS, WeightsUnavailableError, model_arguments
from training.data import CIFAR10_INFO, HYMENOPTERA_INFO, DatasetMissingError
from training.engine import Finished, Started, TrainConfig, TrainStep, compare, device_name, resolve_device
from training.experiments import Experiment, get_experiment
from training.lessons import member, verdicts
from training.results import Recorder, load_reference

GPU_AVAILABLE = torch.cuda.is_available()
DEFAULT_PRESET = "report" if GPU_AVAILABLE else "quick"
# Server-side bounds of every numeric input (the sliders show the same ranges).
LIMITS = {
    "epochs": (1, 30),
    "n_train": (100, 50_000),
    "batch_size": (2, 512),
    "lr": (1e-5, 10.0),
    "momentum": (0.0, 0.99),
    "seed": (0, 2**31 - 1),
}
# Most training images one request may cost, all arms together: on a 2-core CPU about two
# minutes of the quick models at 1,500 images/s (the full quick depth grid is 108,000); on a GPU
# the report's longest comparison (three activations × 5 epochs × 50,000 images is 750,000).
MAX_IMAGES = {"cpu": 150_000, "cuda": 5_000_000}
TRAIN_SIZES = {"cifar10": 50_000, "hymenoptera": 245}  # training images in each full dataset
REFERENCE_TAG = " · reference"  # the plot series of an arm's reference curve
# One colour per arm (matplotlib's tab10); an arm's reference curve shares it, dashed.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
DASH_POINTS = 120  # a reference curve is drawn as 60 dashes, whatever its length
# What recording a reference run needs beyond this repo, the data and a CPU.
REFERENCE_NEEDS = {"final": " (a GPU job)", "transfer": " (needs AlexNet's ImageNet weights)"}
# Plot refreshes while training. Each one re-sends and re-draws the curves, which on a 2-core
# machine takes CPU from training (browser and server share it), so stay at the low end of 1–10.
UPDATES_PER_SECOND = 2
# Side-by-side plots narrower than this wrap onto rows of their own: on a phone each is drawn at
# full width instead of two shrinking to nothing.
PLOT_MIN_WIDTH = 360

active_runs: set[int] = set()  # ids of comparisons streaming now; a cancelled one leaves
_active_lock = threading.Lock()
# What the Stop button reports, per browser session: its comparison's table and status, read from
# the live run while it trains and frozen (without its models) once it ends. The oldest sessions
# are forgotten first.
REMEMBERED_SESSIONS = 256
_stop_reports: OrderedDict[str, Callable[[], tuple]] = OrderedDict()

try:  # On a ZeroGPU Space, training borrows a GPU for a bounded time; elsewhere a no-op.
    import spaces

    def gpu(duration: int):
        return spaces.GPU(duration=duration)

except ImportError:

    def gpu(duration: int):
        return lambda function: function


def bounded(name: str, value, integer: bool = True):
    """`value` checked against LIMITS[name], or a gr.Error that says the allowed range."""
    low, high = LIMITS[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number between {low} and {high}, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise gr.Error(f"{name} must be between {low} and {high}, got {value}")
    if integer and number != int(number):
        raise gr.Error(f"{name} must be a whole number, got {value}")
    return int(number) if integer else number


def check_init(init: str, base: TrainConfig) -> str:
    if init not in INITS:
        raise gr.Error(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if init != base.init and "init" not in model_arguments(base.model):
        raise gr.Error("This model starts from pretrained weights; its init cannot be changed")
    return init


def check_preset(preset: str) -> str:
    if preset not in ("quick", "report"):
        raise gr.Error(f"preset must be 'quick' or 'report', got {preset!r}")
    return preset


def plan(experiment: Experiment, preset, epochs=None, n_train=None, lr=None, batch_size=None, seed=0, init=None) -> list[TrainConfig]:
    """The experiment's arms with the user's shared settings, bounded (`watch` checks the budget).
    A setting left None keeps the preset's value."""
    base = experiment.base[check_preset(preset)]
    chosen = {
        "epochs": None if epochs is None else bounded("epochs", epochs),
        "n_train": None if n_train is None else bounded("n_train", n_train),
        "batch_size": None if batch_size is None else bounded("batch_size", batch_size),
        "lr": None if lr is None else bounded("lr", lr, integer=False),
        "init": None if init is None else check_init(init, base),
    }
    return experiment.arms(preset, seed=bounded("seed", seed), **{k: v for k, v in chosen.items() if v is not None})


def check_budget(configs: list[TrainConfig]) -> None:
    device = "cuda" if GPU_AVAILABLE else "cpu"
    images = sum(c.epochs * min(c.n_train or TRAIN_SIZES[c.dataset], TRAIN_SIZES[c.dataset]) for c in configs)
    if images > MAX_IMAGES[device]:
        hint = " This is a GPU job: choose the quick preset, or fewer epochs or images." if device == "cpu" else ""
        raise gr.Error(f"This run would train on {images:,} images, more than the {MAX_IMAGES[device]:,} this server allows per run.{hint}")


def preset_values(experiment_name: str, preset: str) -> tuple:
    """The shared controls' values for a preset: epochs, training images, lr, batch size, init."""
    base = get_experiment(experiment_name).base[check_preset(preset)]
    return base.epochs, base.n_train or TRAIN_SIZES[base.dataset], base.lr, base.batch_size, base.init


# The settings a preset note compares, in words.
SETTING_NAMES = {"n_train": "training images", "epochs": "epochs", "batch_size": "batch size", "optimizer": "optimizer", "lr": "learning rate", "lr_schedule": "learning-rate schedule", "momentum": "momentum", "init": "init", "model": "model", "model_overrides": "model changes"}


def preset_note(experiment: Experiment, preset: str) -> str:
    """What a preset changes from the report's settings, read off the two presets' arms."""
    if preset == "report" or "quick" not in experiment.base:
        return "The report's settings, as far as it states them (its code's defaults where it is silent)."
    quick, report = (experiment.arms(p)[0] for p in ("quick", "report"))

    def shown(value) -> str:
        if value is None:  # n_train: the whole split
            return "all"
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)

    changed = [
        f"{words} {shown(getattr(quick, name))} (report: {shown(getattr(report, name))})"
        for name, words in SETTING_NAMES.items()
        if getattr(quick, name) != getattr(report, name)
    ]
    why = f" {experiment.quick_note}" if experiment.quick_note else ""
    return f"**The quick preset changes** {'; '.join(changed) or 'nothing'}.{why}"


def preset_controls(experiment_name: str, preset: str) -> tuple:
    """The shared controls and the note for a newly chosen preset."""
    return *preset_values(experiment_name, preset), preset_note(get_experiment(experiment_name), preset)


@functools.cache
def reference(experiment_name: str) -> dict | None:
    """The committed report-length reference run of an experiment (results/reference), if any."""
    try:
        return load_reference(experiment_name)
    except (OSError, ValueError) as error:
        print(f"ignoring the reference run of {experiment_name}: {error}")
        return None


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


def reference_caption(experiment_name: str) -> str | None:
    """What the dashed curves are: the reference run's settings and device."""
    recorded = reference(experiment_name)
    if recorded is None:
        return None
    config = recorded["runs"][0]["config"]
    images = config.get("n_train") or TRAIN_SIZES[config.get("dataset", "cifar10")]
    quick = get_experiment(experiment_name).base["quick"]
    quick_images = quick.n_train or TRAIN_SIZES[quick.dataset]
    precision = recorded.get("precision") or recorded["runs"][0].get("precision")
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
    ceiling = loss_ceiling(experiment.base[DEFAULT_PRESET].dataset)
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


def results_table(experiment: Experiment, recorder: Recorder | None, stopped: bool = False) -> pd.DataFrame:
    """One row per arm: the report's number, the recorded reference run and this run (`stopped`:
    the run was stopped, so unfinished arms say where they got to)."""
    report = {r.arm: r for r in experiment.report}
    recorded = reference(experiment.name)
    references = {run["label"]: run for run in recorded["runs"]} if recorded else {}
    live = recorder.runs if recorder else {}
    rows = []
    # The report's arms come first, so that the table has their numbers before anyone trains.
    for label in list(dict.fromkeys([*experiment.arm_overrides["report"], *references, *live])):
        theirs, ref, run = report.get(label), references.get(label), live.get(label, {})
        steps = [point for point in run.get("history", []) if point["type"] == "TrainStep"]
        latest = run if "test_acc" in run else (steps[-1] if steps else {})
        rows.append(
            {
                "arm": label,
                "report (Kaggle GPU)": f"{theirs.test_acc:.2%} in {theirs.train_time_s} s" if theirs and theirs.test_acc else ("figure only" if theirs else "—"),
                "reference run": f"{ref['test_acc']:.2%} in {ref['train_time_s']:.0f} s" if ref else "—",
                "this run": this_run(run, stopped),
                "train time (s)": round(latest.get("train_time_s", latest.get("elapsed_s", 0.0)), 1) if latest else None,
                "images/s": round(latest.get("images_per_s", 0.0)) if latest else None,
            }
        )
    return pd.DataFrame(rows)


def table_notes(experiment: Experiment) -> str:
    """What the table's short cells stand for: the report's notes and where the reference run
    comes from (kept out of the cells, so that the columns that compare stay in view)."""
    notes = [f"*Report, {r.arm}:* {r.note}." for r in experiment.report if r.note]
    recorded = reference(experiment.name)
    if recorded:
        config = recorded["runs"][0]["config"]
        precision = recorded.get("precision") or recorded["runs"][0].get("precision")
        notes.append(
            f"*Reference run:* the {recorded['preset']} preset, {config.get('init', 'default')} init{f', {precision}' if precision else ''}, "
            f"seed {recorded.get('seed', 0)}, recorded on {recorded['device_name']}."
        )
    else:
        notes.append(f"*Reference run:* none recorded yet{REFERENCE_NEEDS.get(experiment.name, '')}; `python -m training reproduce --only {experiment.name}` records one.")
    return " ".join(notes)


# Tick labels with at most two decimals ("~" drops trailing zeros), however odd the data's values.
AXIS_FORMAT = ".2~f"


def loss_ceiling(dataset: str) -> float:
    """The top of the loss axis: 1.5 × the loss of a uniform guess, ln(classes). The first steps'
    losses can be several times higher, and an axis stretched to them flattens every later difference."""
    classes = {"cifar10": CIFAR10_INFO, "hymenoptera": HYMENOPTERA_INFO}[dataset].classes
    return round(1.5 * math.log(len(classes)), 1)


def line_plots(experiment: Experiment, series: tuple[str, ...]) -> tuple[gr.LinePlot, gr.LinePlot]:
    """The loss and accuracy plots, showing the reference run from the first page load."""
    loss, accuracy = curves(experiment, None, series)
    shared = {
        "x": "epoch", "color": "arm", "color_map": colour_map(series), "height": 260, "min_width": PLOT_MIN_WIDTH,
        "x_axis_format": AXIS_FORMAT, "y_axis_format": AXIS_FORMAT, "color_title": "arm (dashed: reference run)",
        "colors_in_legend": list(series),  # an arm's reference curve shares its colour: one legend entry each
    }
    ceiling = loss_ceiling(experiment.base[DEFAULT_PRESET].dataset)
    return (
        gr.LinePlot(loss, y="train loss", y_lim=[0, ceiling], title=f"Training loss (smoothed; axis cut at {ceiling:g})", **shared),
        gr.LinePlot(accuracy, y="test accuracy (%)", title="Test accuracy", **shared),
    )


def stop_report(experiment: Experiment, recorder: Recorder, done: dict[str, int], planned: dict[str, int]) -> tuple[pd.DataFrame, str]:
    """The table and status of a stopped comparison: how far it got, arm by arm."""
    steps, total = sum(done.values()), sum(planned.values())
    share = f" ({steps / total:.0%})" if total else ""
    status = f"**Stopped** after {steps:,} of {total:,} training steps{share}. The table shows where each arm got to."
    return results_table(experiment, recorder, stopped=True), status


def remember_stop_report(session: str, report: Callable[[], tuple] | None) -> None:
    with _active_lock:
        _stop_reports.pop(session, None)
        if report is not None:
            _stop_reports[session] = report
            while len(_stop_reports) > REMEMBERED_SESSIONS:
                _stop_reports.popitem(last=False)


def revealed() -> dict:
    """Train's second handler: show an output that stays hidden until there is something to draw."""
    return gr.update(visible=True)


def stopped_run(request: gr.Request = None) -> tuple:
    """Stop's own handler: the table and status of this session's comparison as it stopped."""
    with _active_lock:
        report = _stop_reports.pop(request.session_hash, None) if request else None
    return report() if report else (gr.skip(), gr.skip())


def watch(experiment: Experiment, configs: list[TrainConfig], preset: str, progress: gr.Progress, request: gr.Request | None = None) -> Iterator[tuple[Recorder, str, bool]]:
    """Run a comparison and yield (recorder, status, finished) a few times a second and at the
    end, where the status carries the verdict. Closing the generator (Stop, a closed tab) stops
    training and frees the models; `request` names the browser session whose Stop button reports
    how far it got."""
    check_budget(configs)
    recorder = Recorder(configs)
    planned: dict[str, int] = {}
    done: dict[str, int] = {}
    session = request.session_hash if request else None
    if session:
        remember_stop_report(session, lambda: stop_report(experiment, recorder, done, planned))
    completed = False
    where = device_name(resolve_device("auto"))
    status = f"Training {len(configs)} arm(s) on {where}…"
    last_update = 0.0
    run_id = id(recorder)
    with _active_lock:
        active_runs.add(run_id)
    try:
        for event in compare(configs, lockstep=experiment.lockstep):
            recorder.add(event)
            if isinstance(event, Started):
                planned[event.arm] = event.total_steps
                status = f"Training {len(configs)} arm(s) on {where} in {event.precision}…"
            elif isinstance(event, TrainStep):
                done[event.arm] = event.step
            elif isinstance(event, Finished):
                planned[event.arm] = done[event.arm] = event.steps
            if time.perf_counter() - last_update >= 1 / UPDATES_PER_SECOND or isinstance(event, Finished):
                last_update = time.perf_counter()
                progress(sum(done.values()) / max(1, sum(planned.values())), desc=status)
                yield recorder, status, False
        completed = True
    except (DatasetMissingError, WeightsUnavailableError, ValueError) as error:
        completed = True  # refused, not stopped: the error says why
        raise gr.Error(str(error)) from None
    finally:
        with _active_lock:
            active_runs.discard(run_id)
        if session:
            # Stopped: keep the report, not the recorder and its models. Finished: nothing to report.
            frozen = None if completed else stop_report(experiment, recorder, done, planned)
            remember_stop_report(session, (lambda: frozen) if frozen else None)
    verdict = verdicts(experiment, recorder.to_json(experiment.name, preset, configs[0].seed, where))
    yield recorder, "\n\n".join([f"Done on {where}.", *(f"**Verdict:** {line}" for line in verdict)]), True


def session_result(recorder: Recorder, experiment: Experiment, preset: str) -> dict:
    """What a browser session keeps of a finished run: its results JSON and trained models."""
    configs = next(iter(recorder.runs.values()))["config"]
    return {"results": recorder.to_json(experiment.name, preset, configs["seed"], device_name(resolve_device("auto"))), "models": recorder.models}


def stream_comparison(
    experiment: Experiment, configs: list[TrainConfig], preset: str, progress: gr.Progress, series: tuple[str, ...] | None = None, request: gr.Request | None = None
) -> Iterator[tuple]:
    """The comparison as (loss curves, accuracy curves, table, status, session result) updates;
    the session result comes with the last one. `series`: the tab's plot series (plot_series)."""
    series = series or plot_series(experiment)
    for recorder, status, finished in watch(experiment, configs, preset, progress, request):
        session = session_result(recorder, experiment, preset) if finished else gr.skip()
        yield *curves(experiment, recorder, series), results_table(experiment, recorder), status, session


LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


class ComparisonPanel:
    """The controls and outputs every comparison tab shares, laid out in the current Blocks.

    The tab adds its own controls to `panel.extra` (a column beside the explanation), then calls
    `wire` with its named handler.
    """

    def __init__(self, experiment_name: str, explanation: str, plots: bool = True, series: tuple[str, ...] | None = None):
        self.experiment = get_experiment(experiment_name)
        self.series = series or plot_series(self.experiment)
        epochs, n_train, lr, batch_size, init = preset_values(experiment_name, DEFAULT_PRESET)
        # Only models that draw their own first weights have an init to choose (not AlexNet).
        choose_init = "init" in model_arguments(self.experiment.base[DEFAULT_PRESET].model)
        with gr.Row():
            with gr.Column(scale=3):
                gr.Markdown(f"### {self.experiment.title}\n{explanation}\n\n**The report found:** {self.experiment.finding}", latex_delimiters=LATEX)
                self.extra = gr.Column()
            with gr.Column(scale=2):
                self.preset = gr.Radio(["quick", "report"], value=DEFAULT_PRESET, label="Preset", info="quick: about a minute on a 2-core CPU · report: the report's settings (a GPU job)")
                self.epochs = gr.Slider(*LIMITS["epochs"], value=epochs, step=1, label="Epochs")
                self.n_train = gr.Slider(*LIMITS["n_train"], value=n_train, step=100, label="Training images (class-balanced subset)")
                with gr.Row():
                    self.lr = gr.Number(value=lr, minimum=LIMITS["lr"][0], maximum=LIMITS["lr"][1], label="Learning rate")
                    self.batch_size = gr.Slider(*LIMITS["batch_size"], value=batch_size, step=1, label="Batch size")
                    self.seed = gr.Number(value=0, precision=0, minimum=0, label="Seed (shared by all arms)")
                self.init = gr.Radio(
                    list(INITS), value=init, label="Initial weights", visible=choose_init,
                    info="default: PyTorch's own, as in the report's code · he: He et al. (2015), scaled for ReLU",
                )
                self.preset_note = gr.Markdown(preset_note(self.experiment, DEFAULT_PRESET))
                with gr.Row():
                    self.train = gr.Button("Train", variant="primary")
                    self.stop = gr.Button("Stop", variant="stop")
        self.status = gr.Markdown()
        caption = reference_caption(experiment_name)
        # Without a reference run the line plots would open empty: they appear with the first Train.
        self.plots = gr.Row(visible=bool(caption) or not plots)  # the tab may put its own plots here instead (plots=False)
        self.hidden_until_trained = [] if self.plots.visible else [self.plots]
        with self.plots:
            if plots:
                self.loss_plot, self.accuracy_plot = line_plots(self.experiment, self.series)
        if plots and caption:
            gr.Markdown(caption)
        self.table = gr.Dataframe(results_table(self.experiment, None), label="Results", interactive=False)
        gr.Markdown(table_notes(self.experiment))
        self.session = gr.State()

    @property
    def settings(self) -> list:
        return [self.preset, self.epochs, self.n_train, self.lr, self.batch_size, self.seed, *([self.init] if self.init.visible else [])]

    @property
    def outputs(self) -> list:
        return [self.loss_plot, self.accuracy_plot, self.table, self.status, self.session]

    def wire(self, handler, extra_inputs: list, api_name: str, outputs: list | None = None) -> None:
        training = self.train.click(
            handler,
            [*extra_inputs, *self.settings],
            outputs or self.outputs,
            api_name=api_name,
            concurrency_id="training",  # one training at a time: on 2 cores two help nobody
            concurrency_limit=1,
        )
        for block in self.hidden_until_trained:
            self.train.click(revealed, None, block, api_visibility="private")
        self.stop.click(stopped_run, None, [self.table, self.status], cancels=[training], api_visibility="private")
        self.preset.change(
            functools.partial(preset_controls, self.experiment.name),
            self.preset,
            [self.epochs, self.n_train, self.lr, self.batch_size, self.init, self.preset_note],
            api_visibility="private",
        )
