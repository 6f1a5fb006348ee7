"""The controls and outputs every comparison tab shares, and the comparison streamed into them:
Train runs the tab's handler, Stop cancels it and says how far it got.
"""

import functools
import html
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace

import gradio as gr
import pandas as pd

from demo.common import DEFAULT_PRESET, LIMITS, check_budget, preset_controls, preset_note, preset_values
from demo.classroom import QueueFull, Ticket, TrainingFailed, classroom
from demo.gpu import in_granted_call, training_device, was_refused
from demo.trained import HeldModels
from demo.views import curves, line_plots, plot_series, reference_caption, results_table, table_notes
from models import INITS, WeightsUnavailableError, model_arguments
from training.data import DatasetMissingError
from training.devices import device_name, resolve_device
from training.engine import TrainConfig
from training.experiments import Experiment, get_experiment
from training.results import Recorder

log = logging.getLogger(__name__)
_active_lock = threading.Lock()
# What the Stop button reports, per browser session: the ticket of its comparison while it streams
# (Stop leaves it, and reads how far the run got), or the report frozen (without its models) when
# its stream closed first. The oldest sessions are forgotten first.
REMEMBERED_SESSIONS = 256
_stop_reports: OrderedDict[str, tuple[Experiment, Ticket, tuple | None]] = OrderedDict()  # session → (experiment, ticket, frozen report)
# Every stream: token → [its generator, since when it has waited for Gradio to ask for its next
# update (or None while it computes), its browser session]. Between two updates a stream waits
# milliseconds, or a few seconds when thirty share two cores; one that waits longer has lost its reader (a client gone
# mid-stream, or a cancel through the API, after which Gradio stops asking without closing it)
# and would keep its run training for nobody.
_runs: dict[object, list] = {}
ABANDONED_AFTER_S = 10.0
# Training requests streaming at once (Gradio queues any more): one per session, for a class or two.
MAX_STREAMS = 96


# Each tab's Train handler with its controls' values as the page opens, for `warm_up`.
_tab_defaults: list[tuple[Callable, list]] = []


def warm_up() -> threading.Thread:
    """Train every tab's defaults in a background thread, one after another and each after any
    student's run (classroom.in_background), so that a class's first clicks find them finished
    and replayed; a click meanwhile attaches to the one training."""

    def train_all() -> None:
        with classroom.in_background():
            for handler, values in _tab_defaults:
                try:
                    for _ in handler(*values):
                        pass
                except gr.Error as error:  # no data, say: each tab's Train will say so itself
                    log.warning("warming up %s failed: %s", handler.__name__, error.message)
                    return

    thread = threading.Thread(target=train_all, name="warm-up", daemon=True)
    thread.start()
    return thread


def stop_report(experiment: Experiment, ticket: Ticket) -> tuple[pd.DataFrame, str]:
    """The table and status of a stopped comparison: how far it got, arm by arm."""
    if ticket.job is None or ticket.job.state == "queued":
        return results_table(experiment, None, stopped=True), "**Stopped** while waiting in line: nothing was trained."
    run = ticket.job.run
    steps, total = run.steps_done, run.steps_planned
    share = f" ({steps / total:.0%})" if total else ""
    status = f"**Stopped** after {steps:,} of {total:,} training steps{share}. The table shows where each arm got to."
    return results_table(experiment, run.recorder.snapshot(), stopped=True), status


def remember_stop_report(session: str, experiment: Experiment, ticket: Ticket) -> None:
    with _active_lock:
        _stop_reports.pop(session, None)
        _stop_reports[session] = experiment, ticket, None
        while len(_stop_reports) > REMEMBERED_SESSIONS:
            _stop_reports.popitem(last=False)


def freeze_stop_report(session: str, experiment: Experiment, ticket: Ticket) -> None:
    """Keep the report of a stream that closed before Stop answered, if Stop has not taken it."""
    report = stop_report(experiment, ticket)
    with _active_lock:
        if _stop_reports.get(session, (None, None))[1] is ticket:
            _stop_reports[session] = experiment, ticket, report


def forget_stop_report(session: str, ticket: Ticket) -> None:
    """Forget the session's report if it is still this ticket's (a newer request keeps its own)."""
    with _active_lock:
        if _stop_reports.get(session, (None, None))[1] is ticket:
            del _stop_reports[session]


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
    """Stop's own handler: leave this session's comparison (its run stops unless another session
    reads it too, and its stream ends) and report how far it got: the table and status."""
    with _active_lock:
        experiment, ticket, frozen = _stop_reports.pop(request.session_hash if request else None, (None, None, None))
    if frozen:
        return frozen
    if ticket is None:
        return gr.skip(), gr.skip()
    classroom.leave(ticket)
    return stop_report(experiment, ticket)


def close_abandoned_runs() -> None:
    """Forever, twice a second: close the streams that have waited over ABANDONED_AFTER_S for a reader."""
    while True:
        time.sleep(0.5)
        now = time.monotonic()
        with _active_lock:
            abandoned = [run for run, since, _ in _runs.values() if since is not None and now - since > ABANDONED_AFTER_S]
        for run in abandoned:
            try:
                run.close()
            except ValueError:  # "generator already executing": it has a reader after all
                pass


@functools.cache
def start_closing_abandoned_runs() -> None:
    threading.Thread(target=close_abandoned_runs, name="close-abandoned-runs", daemon=True).start()


def watch(experiment: Experiment, configs: list[TrainConfig], preset: str, progress: gr.Progress, request: gr.Request | None = None) -> Iterator[tuple[Recorder, str, bool]]:
    """Stream a comparison (see `updates`), registered so that a stream nobody reads any more is
    closed; closing this generator (a tab's handler closed by Stop) closes the stream at once."""
    token = object()
    stream = updates(experiment, configs, preset, progress, request, token)
    with _active_lock:
        _runs[token] = [stream, None, request.session_hash if request else None]
    start_closing_abandoned_runs()
    yield from stream


def cannot_train(error: Exception) -> str:
    """The status of a run that cannot start for want of data or weights: the instructions, which
    stay on screen beside the controls (not in a toast that vanishes), escaped, since an error's
    reason can read like HTML ("<urlopen error …>")."""
    return "**Cannot train yet.** " + "  \n".join(html.escape(line) for line in str(error).splitlines())


def updates(
    experiment: Experiment, configs: list[TrainConfig], preset: str, progress: gr.Progress, request: gr.Request | None, token: object
) -> Iterator[tuple[Recorder, str, bool]]:
    """A comparison's (recorder, status, finished) a few times a second and at the end, where the
    status carries the verdict: replayed, read beside identical requests, or trained after the
    runs ahead of it (demo.classroom). Closing the generator (Stop, a closed tab) leaves the run,
    which stops if nobody else reads it; `request` names the browser session, whose Stop button
    reports how far it got and whose next request replaces this one."""
    device = training_device()  # on ZeroGPU: the GPU inside a granted call, else the CPU
    configs = [replace(c, device=device) for c in configs]
    check_budget(configs)
    session = request.session_hash if request else None
    try:
        ticket = classroom.request(experiment, configs, preset, session, inline=in_granted_call())
    except QueueFull as error:
        raise gr.Error(str(error), title="The queue is full") from None
    except ValueError as error:
        raise gr.Error(str(error)) from None
    if session:
        remember_stop_report(session, experiment, ticket)
    completed = False
    update = None
    try:
        for update in classroom.follow(ticket):
            if not update.finished:  # the verdict goes to the status only, not the progress overlay too
                progress(update.progress, desc=update.status.split("\n")[0].replace("**", ""))
            _runs[token][1] = time.monotonic()
            yield update.recorder, update.status, update.finished
            _runs[token][1] = None
        completed = True
    except (DatasetMissingError, WeightsUnavailableError) as error:
        completed = True  # refused, not stopped: the error says why
        yield (update.recorder if update else Recorder(configs)), cannot_train(error), False
    except (ValueError, TrainingFailed) as error:
        completed = True
        raise gr.Error(str(error)) from None
    finally:
        with _active_lock:
            _runs.pop(token, None)
        if session and completed:  # finished, replaced, or ended by Stop: nothing more to report
            forget_stop_report(session, ticket)
        elif session:  # closed before Stop answered: keep the report, not the run and its models
            freeze_stop_report(session, experiment, ticket)


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
        _tab_defaults.append((handler.on_cpu, [component.value for component in [*extra_inputs, *self.settings]]))
        training = self.train.click(
            handler,
            [*extra_inputs, *self.settings],
            outputs or self.outputs,
            api_name=api_name,
            # Every request streams at once: the classroom's queue trains one at a time and tells
            # each where it stands, and replays and attached readers need no turn of their own.
            concurrency_id="training",
            concurrency_limit=MAX_STREAMS,
        )
        # Refused a ZeroGPU GPU: one click runs the quick preset on the CPU instead.
        training.failure(offer_cpu, None, self.on_cpu, api_visibility="private")
        controls = [self.preset, self.epochs, self.n_train, self.lr, self.batch_size, self.init, self.preset_note]
        on_cpu = self.on_cpu.click(functools.partial(quick_preset, self.experiment.name), None, controls, api_visibility="private").then(
            handler.on_cpu, [*extra_inputs, *self.settings], outputs or self.outputs, api_visibility="private", concurrency_id="training", concurrency_limit=MAX_STREAMS
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
