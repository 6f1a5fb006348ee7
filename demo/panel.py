"""The controls and outputs every comparison tab shares, and the comparison streamed into them:
Train runs the tab's handler, Stop cancels it and says how far it got.
"""

import functools
import html
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace

import gradio as gr
import pandas as pd

from demo.common import DEFAULT_PRESET, LIMITS, check_budget, preset_controls, preset_note, preset_values
from demo.gpu import training_device, was_refused
from demo.trained import HeldModels
from demo.views import curves, line_plots, plot_series, reference_caption, results_table, table_notes
from models import INITS, WeightsUnavailableError, model_arguments
from models.alexnet import backbone_url
from training.data import DatasetMissingError, data_activity, download_checkpoint, load_splits
from training.engine import Finished, Started, TrainConfig, device_name, model_overrides, resolve_device
from training.experiments import Experiment, get_experiment
from training.lessons import verdicts
from training.results import Recorder
from training.runner import ComparisonRun

# Plot refreshes while training. Each one re-sends and re-draws the curves, which on a 2-core
# machine takes CPU from training (browser and server share it), so stay at the low end of 1–10.
UPDATES_PER_SECOND = 2

active_runs: set[int] = set()  # ids of comparisons streaming now; a cancelled one leaves
_active_lock = threading.Lock()
# What the Stop button reports, per browser session: its comparison's table and status, read from
# the live run while it trains and frozen (without its models) once it ends. The oldest sessions
# are forgotten first.
REMEMBERED_SESSIONS = 256
_stop_reports: OrderedDict[str, tuple[Callable[[], tuple], bool]] = OrderedDict()  # session → (report, frozen)
# How long Stop waits for the cancelled run to end: an update it sends before it ends would
# otherwise land after Stop's own and put "training…" back.
STOP_WAIT_S = 5.0
# Every streaming run: token → [its generator, since when it has waited for Gradio to ask for its
# next update, or None while it computes]. Between two updates a run waits milliseconds; one that
# waits longer has lost its reader (a client gone mid-stream, or a cancel through the API, after
# which Gradio stops asking without closing the run) and would hold its models for good.
_runs: dict[object, list] = {}
ABANDONED_AFTER_S = 3.0


def stop_report(experiment: Experiment, recorder: Recorder, done: dict[str, int], planned: dict[str, int]) -> tuple[pd.DataFrame, str]:
    """The table and status of a stopped comparison: how far it got, arm by arm."""
    steps, total = sum(done.values()), sum(planned.values())
    share = f" ({steps / total:.0%})" if total else ""
    status = f"**Stopped** after {steps:,} of {total:,} training steps{share}. The table shows where each arm got to."
    return results_table(experiment, recorder, stopped=True), status


def remember_stop_report(session: str, report: Callable[[], tuple] | None, frozen: bool = False) -> None:
    with _active_lock:
        _stop_reports.pop(session, None)
        if report is not None:
            _stop_reports[session] = report, frozen
            while len(_stop_reports) > REMEMBERED_SESSIONS:
                _stop_reports.popitem(last=False)


def revealed() -> dict:
    """Train's second handler: show an output that stays hidden until there is something to draw."""
    return gr.update(visible=True)


def cpu_fallback_button() -> gr.Button:
    """The button a tab shows when ZeroGPU refused its run a GPU (hidden until then)."""
    return gr.Button("Use the CPU instead (quick preset)", visible=False)


def offer_cpu(request: gr.Request = None) -> dict:
    """After a failed training request: show the CPU button if ZeroGPU refused the run a GPU."""
    return gr.update(visible=was_refused(request))


def quick_preset(experiment_name: str) -> tuple:
    """The CPU button's first step: the quick preset and its settings in the controls."""
    return "quick", *preset_controls(experiment_name, "quick")


def stopped_run(request: gr.Request = None) -> tuple:
    """Stop's own handler: the table and status of this session's comparison as it stopped, once
    it has (or after STOP_WAIT_S, as far as it got)."""
    session = request.session_hash if request else None
    deadline = time.monotonic() + STOP_WAIT_S
    # A missing entry counts as frozen: nothing to wait for (and no lookup race with its removal).
    while not _stop_reports.get(session, (None, True))[1] and time.monotonic() < deadline:
        time.sleep(0.05)
    with _active_lock:
        report, _ = _stop_reports.pop(session, (None, None))
    return report() if report else (gr.skip(), gr.skip())


def close_abandoned_runs() -> None:
    """Forever, twice a second: close the runs that have waited over ABANDONED_AFTER_S for a reader."""
    while True:
        time.sleep(0.5)
        now = time.monotonic()
        with _active_lock:
            abandoned = [run for run, since in _runs.values() if since is not None and now - since > ABANDONED_AFTER_S]
        for run in abandoned:
            try:
                run.close()
            except ValueError:  # "generator already executing": it has a reader after all
                pass


@functools.cache
def start_closing_abandoned_runs() -> None:
    threading.Thread(target=close_abandoned_runs, name="close-abandoned-runs", daemon=True).start()


def watch(experiment: Experiment, configs: list[TrainConfig], preset: str, progress: gr.Progress, request: gr.Request | None = None) -> Iterator[tuple[Recorder, str, bool]]:
    """Run a comparison (see `updates`), registered so that a run nobody reads any more is closed."""
    token = object()
    run = updates(experiment, configs, preset, progress, request, token)
    with _active_lock:
        _runs[token] = [run, None]
    start_closing_abandoned_runs()
    return run


def prepare_data(configs: list[TrainConfig]) -> Iterator[str]:
    """Load every arm's dataset, and fetch the pretrained weights any arm starts from, in a
    thread, yielding what is happening a few times a second: on a fresh host the first click
    downloads or decodes before anything trains."""
    failure: list[BaseException] = []

    def load() -> None:
        try:
            for name in dict.fromkeys(c.dataset for c in configs):
                load_splits(name)
        except Exception as error:  # raised again in the caller's thread
            failure.append(error)
            return
        weights = {model_arguments(c.model, **model_overrides(c)).get("backbone_weights") for c in configs} - {None}
        for name in weights:
            try:
                download_checkpoint(backbone_url(name), "AlexNet's ImageNet weights")
            except OSError:
                pass  # building the model tries again and says what to do (WeightsUnavailableError)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    while loader.is_alive():
        loader.join(1 / UPDATES_PER_SECOND)
        if loader.is_alive():
            yield data_activity() or "Loading the data"
    if failure:
        raise failure[0]


def cannot_train(error: Exception) -> str:
    """The status of a run that cannot start for want of data or weights: the instructions, which
    stay on screen beside the controls (not in a toast that vanishes), escaped, since an error's
    reason can read like HTML ("<urlopen error …>")."""
    return "**Cannot train yet.** " + "  \n".join(html.escape(line) for line in str(error).splitlines())


def updates(
    experiment: Experiment, configs: list[TrainConfig], preset: str, progress: gr.Progress, request: gr.Request | None, token: object
) -> Iterator[tuple[Recorder, str, bool]]:
    """Run a comparison and yield (recorder, status, finished) a few times a second and at the
    end, where the status carries the verdict. Closing the generator (Stop, a closed tab) stops
    training and frees the models; `request` names the browser session whose Stop button reports
    how far it got."""
    device = training_device()  # on ZeroGPU: the GPU inside a granted call, else the CPU
    configs = [replace(c, device=device) for c in configs]
    check_budget(configs)
    run = ComparisonRun(experiment, configs)
    recorder = run.recorder
    session = request.session_hash if request else None
    if session:
        remember_stop_report(session, lambda: stop_report(experiment, recorder, run.done, run.planned))
    completed = False
    where = device_name(resolve_device(device))
    status = f"Training {len(configs)} arm(s) on {where}…"
    last_update = 0.0
    run_id = id(recorder)
    with _active_lock:
        active_runs.add(run_id)
    try:
        for activity in prepare_data(configs):
            progress(None, desc=activity)
            yield recorder, f"{activity}…", False
        for event in run:
            if isinstance(event, Started):
                status = f"Training {len(configs)} arm(s) on {where} in {event.precision}…"
            if time.perf_counter() - last_update >= 1 / UPDATES_PER_SECOND or isinstance(event, Finished):
                last_update = time.perf_counter()
                progress(run.steps_done / max(1, run.steps_planned), desc=status)
                _runs[token][1] = time.monotonic()
                yield recorder, status, False
                _runs[token][1] = None
        completed = True
    except (DatasetMissingError, WeightsUnavailableError) as error:
        completed = True  # refused, not stopped: the error says why
        yield recorder, cannot_train(error), False
        return
    except ValueError as error:
        completed = True
        raise gr.Error(str(error)) from None
    finally:
        with _active_lock:
            active_runs.discard(run_id)
            _runs.pop(token, None)
        if session:
            # Stopped: keep the report, not the recorder and its models. Finished: nothing to report.
            frozen = None if completed else stop_report(experiment, recorder, run.done, run.planned)
            remember_stop_report(session, (lambda: frozen) if frozen else None, frozen=True)
    verdict = verdicts(experiment, run.results(preset, device))
    yield recorder, "\n\n".join([f"Done on {where}.", *(f"**Verdict:** {line}" for line in verdict)]), True


def session_result(recorder: Recorder, experiment: Experiment, preset: str) -> dict:
    """What a browser session keeps of a finished run: its results JSON and a handle on its
    trained models, which the bounded store holds on the CPU (they classify single photos, and a
    ZeroGPU call's GPU is gone once it returns)."""
    configs = next(iter(recorder.runs.values()))["config"]
    where = device_name(resolve_device(training_device()))
    return {"results": recorder.to_json(experiment.name, preset, configs["seed"], where), "models": HeldModels({label: model.cpu() for label, model in recorder.models.items()})}


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
                self.on_cpu = cpu_fallback_button()
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
        # Refused a ZeroGPU GPU: one click runs the quick preset on the CPU instead.
        training.failure(offer_cpu, None, self.on_cpu, api_visibility="private")
        controls = [self.preset, self.epochs, self.n_train, self.lr, self.batch_size, self.init, self.preset_note]
        on_cpu = self.on_cpu.click(functools.partial(quick_preset, self.experiment.name), None, controls, api_visibility="private").then(
            handler.on_cpu, [*extra_inputs, *self.settings], outputs or self.outputs, api_visibility="private", concurrency_id="training", concurrency_limit=1
        )
        for block in self.hidden_until_trained:
            self.train.click(revealed, None, block, api_visibility="private")
            self.on_cpu.click(revealed, None, block, api_visibility="private")
        self.stop.click(stopped_run, None, [self.table, self.status], cancels=[training, on_cpu], api_visibility="private")
        self.preset.change(
            functools.partial(preset_controls, self.experiment.name),
            self.preset,
            [self.epochs, self.n_train, self.lr, self.batch_size, self.init, self.preset_note],
            api_visibility="private",
        )
