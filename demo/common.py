"""What every tab shares: bounded settings, the streaming comparison, plots and tables.

The tabs read the training core's plain data (events collected by `training.results.Recorder`)
and never the other way round. Every number a user or an API client sends is checked here, on
the server, before any work starts.
"""

import functools
import math
import threading
import time
from collections.abc import Iterator

import gradio as gr
import pandas as pd
import torch

from models import WeightsUnavailableError
from training.data import DatasetMissingError
from training.engine import Finished, Started, TrainConfig, TrainStep, compare, device_name, resolve_device
from training.experiments import Experiment, get_experiment
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
# Plot refreshes while training. Each one re-sends and re-draws the curves, which on a 2-core
# machine takes CPU from training (browser and server share it), so stay at the low end of 1–10.
UPDATES_PER_SECOND = 2

active_runs: set[int] = set()  # ids of comparisons streaming now; a cancelled one leaves
_active_lock = threading.Lock()

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


def check_preset(preset: str) -> str:
    if preset not in ("quick", "report"):
        raise gr.Error(f"preset must be 'quick' or 'report', got {preset!r}")
    return preset


def plan(experiment: Experiment, preset, epochs, n_train, lr, batch_size, seed) -> list[TrainConfig]:
    """The experiment's arms with the user's shared settings, bounded (`watch` checks the budget)."""
    return experiment.arms(
        check_preset(preset),
        seed=bounded("seed", seed),
        epochs=bounded("epochs", epochs),
        n_train=bounded("n_train", n_train),
        batch_size=bounded("batch_size", batch_size),
        lr=bounded("lr", lr, integer=False),
    )


def check_budget(configs: list[TrainConfig]) -> None:
    device = "cuda" if GPU_AVAILABLE else "cpu"
    images = sum(c.epochs * min(c.n_train or TRAIN_SIZES[c.dataset], TRAIN_SIZES[c.dataset]) for c in configs)
    if images > MAX_IMAGES[device]:
        hint = " This is a GPU job: choose the quick preset, or fewer epochs or images." if device == "cpu" else ""
        raise gr.Error(f"This run would train on {images:,} images, more than the {MAX_IMAGES[device]:,} this server allows per run.{hint}")


def preset_values(experiment_name: str, preset: str) -> tuple:
    """The shared controls' values for a preset: epochs, training images, lr, batch size."""
    base = get_experiment(experiment_name).base[check_preset(preset)]
    return base.epochs, base.n_train or TRAIN_SIZES[base.dataset], base.lr, base.batch_size


@functools.cache
def reference(experiment_name: str) -> dict | None:
    """The committed report-length reference run of an experiment (results/reference), if any."""
    try:
        return load_reference(experiment_name)
    except (OSError, ValueError) as error:
        print(f"ignoring the reference run of {experiment_name}: {error}")
        return None


def curves(recorder: Recorder) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training-loss and test-accuracy points of every arm, for the live plots.

    The reference run is not drawn here: Gradio's LinePlot colours only the arms present in the
    first data it draws, so arms added later would stay invisible (reference curves wait for a
    colour scale fixed up front)."""
    loss, accuracy = [], []
    for run in recorder.runs.values():
        for point in run["history"]:
            if point["type"] == "TrainStep":
                loss.append((point["epoch"], point["train_loss"], run["label"]))
            else:
                accuracy.append((point["epoch"], 100 * point["test_acc"], run["label"]))
    # Explicit float columns: an empty frame would otherwise be typed as categories, and the
    # plot would keep treating epochs and losses as labels once points arrive.
    return (
        pd.DataFrame(loss, columns=["epoch", "train loss", "arm"]).astype({"epoch": float, "train loss": float}),
        pd.DataFrame(accuracy, columns=["epoch", "test accuracy (%)", "arm"]).astype({"epoch": float, "test accuracy (%)": float}),
    )


def results_table(experiment: Experiment, recorder: Recorder | None) -> pd.DataFrame:
    """One row per arm: the report's number, the recorded reference run and this run."""
    report = {r.arm: r for r in experiment.report}
    recorded = reference(experiment.name)
    references = {run["label"]: run for run in recorded["runs"]} if recorded else {}
    live = recorder.runs if recorder else {}
    rows = []
    for label in list(dict.fromkeys([*references, *live])):
        theirs, ref, run = report.get(label), references.get(label), live.get(label, {})
        steps = [point for point in run.get("history", []) if point["type"] == "TrainStep"]
        latest = run if "test_acc" in run else (steps[-1] if steps else {})
        rows.append(
            {
                "arm": label,
                "report (Kaggle GPU)": f"{theirs.test_acc:.2%} in {theirs.train_time_s} s" if theirs and theirs.test_acc else (theirs.note if theirs else "—"),
                "reference run": f"{ref['test_acc']:.2%} in {ref['train_time_s']:.0f} s ({recorded['preset']}, {recorded['device_name']})"
                if ref
                else f"none recorded yet: python -m training reproduce --only {experiment.name}",
                "this run": f"{run['test_acc']:.2%}" if "test_acc" in run else ("training…" if run else "—"),
                "train time (s)": round(latest.get("train_time_s", latest.get("elapsed_s", 0.0)), 1) if latest else None,
                "images/s": round(latest.get("images_per_s", 0.0)) if latest else None,
            }
        )
    return pd.DataFrame(rows)


def line_plots() -> tuple[gr.LinePlot, gr.LinePlot]:
    loss = gr.LinePlot(x="epoch", y="train loss", color="arm", title="Training loss (smoothed)", height=260)
    accuracy = gr.LinePlot(x="epoch", y="test accuracy (%)", color="arm", title="Test accuracy", height=260)
    return loss, accuracy


def watch(experiment: Experiment, configs: list[TrainConfig], progress: gr.Progress) -> Iterator[tuple[Recorder, str, bool]]:
    """Run a comparison and yield (recorder, status, finished) a few times a second and at the
    end. Closing the generator (Stop, a closed tab) stops training and frees the models."""
    check_budget(configs)
    recorder = Recorder(configs)
    planned: dict[str, int] = {}
    done: dict[str, int] = {}
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
    except (DatasetMissingError, WeightsUnavailableError, ValueError) as error:
        raise gr.Error(str(error)) from None
    finally:
        with _active_lock:
            active_runs.discard(run_id)
    yield recorder, f"Done on {where}.", True


def session_result(recorder: Recorder, experiment: Experiment, preset: str) -> dict:
    """What a browser session keeps of a finished run: its results JSON and trained models."""
    configs = next(iter(recorder.runs.values()))["config"]
    return {"results": recorder.to_json(experiment.name, preset, configs["seed"], device_name(resolve_device("auto"))), "models": recorder.models}


def stream_comparison(experiment: Experiment, configs: list[TrainConfig], preset: str, progress: gr.Progress) -> Iterator[tuple]:
    """The comparison as (loss curves, accuracy curves, table, status, session result) updates;
    the session result comes with the last one."""
    for recorder, status, finished in watch(experiment, configs, progress):
        session = session_result(recorder, experiment, preset) if finished else gr.skip()
        yield *plotted(curves(recorder)), results_table(experiment, recorder), status, session


def plotted(frames: tuple[pd.DataFrame, ...]) -> list:
    """Frames for the line plots, skipping empty ones: a plot first drawn empty keeps no colour
    scale for the arms and then draws no lines."""
    return [frame if len(frame) else gr.skip() for frame in frames]


LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


class ComparisonPanel:
    """The controls and outputs every comparison tab shares, laid out in the current Blocks.

    The tab adds its own controls to `panel.extra` (a column beside the explanation), then calls
    `wire` with its named handler.
    """

    def __init__(self, experiment_name: str, explanation: str, plots: bool = True):
        self.experiment = get_experiment(experiment_name)
        epochs, n_train, lr, batch_size = preset_values(experiment_name, DEFAULT_PRESET)
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
                with gr.Row():
                    self.train = gr.Button("Train", variant="primary")
                    self.stop = gr.Button("Stop", variant="stop")
        self.status = gr.Markdown()
        self.plots = gr.Row()  # the tab may put its own plots here instead (plots=False)
        with self.plots:
            if plots:
                self.loss_plot, self.accuracy_plot = line_plots()
        self.table = gr.Dataframe(results_table(self.experiment, None), label="Results", interactive=False)
        self.session = gr.State()

    @property
    def settings(self) -> list:
        return [self.preset, self.epochs, self.n_train, self.lr, self.batch_size, self.seed]

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
        self.stop.click(None, cancels=[training], api_visibility="private")
        self.preset.change(
            functools.partial(preset_values, self.experiment.name),
            self.preset,
            [self.epochs, self.n_train, self.lr, self.batch_size],
            api_visibility="private",
        )
