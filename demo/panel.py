"""The pieces every training tab shares, built from a tab's declaration (demo.lesson): the settings
controls, Train and Stop, the status, plots and results table, the Train handler with its public
endpoint, the stream of a run's updates (on ZeroGPU from a priced GPU call, else from the
classroom's queue), Stop's report and the CPU fallback.
"""

import functools
import inspect
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace

import gradio as gr

from serving.class_record import class_record
from serving.class_view import Recorded, board, predicted, record_finished
from serving.classroom import QueueFull, TrainingFailed, Update, classroom
from demo.board import drawn_board
from demo.instruments import Drawing
from demo.links import space_link
from demo.gpu import HOST_DEVICE, ON_ZEROGPU, is_api_call, on_zerogpu_gpu, stop_on_gpu, updates_on_gpu, was_refused
from serving.model_store import HeldModels
from demo.settings import DEFAULT_PRESET, Settings, check_budget, checked_arms, preset_controls, preset_note, preset_values
from demo.views import explained, results_table, table_notes
from models import INITS, WeightsUnavailableError
from training.config import TrainConfig, limits
from training.datasets import data_source, load_splits
from training.sources import DatasetMissingError
from training.devices import resolve_device
from training.experiments import Experiment, get_experiment
from training.lessons import judged_prediction, predictions

log = logging.getLogger(__name__)
# Training requests streaming at once (Gradio queues any more): one per session, for a class or two.
MAX_STREAMS = 96
TABLE_MAX_HEIGHT = 800  # px: 15 rows and the header
TABLE_LABEL = "Results (the table scrolls sideways: the report and the reference run are to the right)"
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
# The shared settings' parameters of every Train endpoint, after the tab's own.
SHARED = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default) for f in Settings.__dataclass_fields__.values()]
GRADIO_PARAMETERS = [
    inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()),
    inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request),
]


def cannot_train(error: Exception) -> str:
    """The status of a run that cannot start for want of data or weights: the instructions."""
    return explained("Cannot train yet.", error)


def session_result(update: Update, recorded: Recorded) -> dict:
    """What a browser session keeps of a finished run: its results JSON, a handle on its trained
    models, which the bounded store holds on the CPU (they classify single photos), and its place
    in the class record."""
    return {"results": update.results, "models": HeldModels({label: model.cpu() for label, model in update.recorder.models.items()}), "recorded": recorded}


def in_memory_datasets(configs: list[TrainConfig]) -> dict:
    """The splits of the datasets the arms read that are held only in this process (a session's
    photos): a ZeroGPU call, in another process, is handed them."""
    return {c.dataset: load_splits(c.dataset) for c in configs if data_source(c.dataset) is None}


def run_updates(experiment: Experiment, configs: list[TrainConfig], preset: str, request: gr.Request | None, on_cpu: bool) -> Iterator[Update]:
    """A run's updates where it trains: a ZeroGPU call, or the classroom's queue on this host."""
    session = request.session_hash if request else None
    if on_zerogpu_gpu(on_cpu):
        check_budget(configs, "cuda")
        yield from updates_on_gpu(experiment.name, configs, preset, session, in_memory_datasets(configs), is_api_call(request))
        return
    # A ZeroGPU Space's own process trains on its CPU: it must never touch CUDA.
    configs = [replace(c, device="cpu" if on_cpu or ON_ZEROGPU else HOST_DEVICE) for c in configs]
    check_budget(configs, resolve_device(configs[0].device).type)
    yield from classroom.follow(classroom.request(experiment, configs, preset, session, client=client_address(request)))


def client_address(request: gr.Request | None) -> str | None:
    """The address a request came from (Gradio's reading of it: behind a Space's proxy, the
    visitor's), which bounds what one client may hold in the queue."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def training_updates(experiment: Experiment, configs: list[TrainConfig], preset: str, progress, request: gr.Request | None, on_cpu: bool = False) -> Iterator[tuple[Update, dict | object]]:
    """A comparison's (update, session result) a few times a second and at the end, where the
    status carries the verdict; the session result (gr.skip() until then) comes with the last.
    Closing it (a closed tab) leaves the run, which stops if nobody else reads it; Stop ends it
    on Stop's report. Refusals become messages: missing data or weights in the status, anything
    else as a gr.Error."""
    update = None
    try:
        for update in run_updates(experiment, configs, preset, request, on_cpu):
            if progress and not update.finished and not update.stopped:  # the verdict goes to the status only
                progress(update.progress, desc=update.status.split("\n")[0].replace("**", ""))
            if update.finished:  # wherever it trained, or replayed: the class's record has it
                update, recorded = record_finished(class_record(), experiment, update, request.session_hash if request else None, client_address(request))
                yield update, session_result(update, recorded)
            else:
                yield update, gr.skip()
    except (DatasetMissingError, WeightsUnavailableError) as error:  # refused before a step: no arm shows "training…"
        yield Update(None, cannot_train(error)), gr.skip()
    except gr.Error:  # already a message for the page (a GPU refused)
        raise
    except QueueFull as error:
        raise gr.Error(str(error), title="The queue is full") from None
    except (ValueError, TrainingFailed) as error:
        raise gr.Error(str(error)) from None


def bound_arguments(lesson, args: tuple, kwargs: dict) -> dict:
    """A call of a lesson's Train handler, by name, defaults filled in."""
    call = lesson.signature.bind(*args, **kwargs)
    call.apply_defaults()
    return call.arguments


def arms_requested(lesson, arguments: dict) -> list[TrainConfig]:
    """The arms a lesson's Train request makes, checked, or a gr.Error that says what is allowed."""
    try:
        settings = Settings.checked(**{p.name: arguments[p.name] for p in SHARED if p.name in arguments})
        return checked_arms(lesson.arms(settings, *[arguments[p.name] for p in lesson.own_parameters]))
    except ValueError as error:
        raise gr.Error(str(error)) from None


def lesson_arms(lesson, *args, **kwargs) -> list[TrainConfig]:
    """The arms a lesson's Train handler would train for these arguments (its own controls'
    values, then the shared settings, by position or name)."""
    return arms_requested(lesson, bound_arguments(lesson, args, kwargs))


def train_lesson(lesson, on_cpu: bool, *args, **kwargs) -> Iterator[tuple]:
    """A lesson's Train handler: its arms from the request, trained, drawn by the lesson, with
    its instrument after the lesson's own outputs."""
    arguments = bound_arguments(lesson, args, kwargs)
    configs = arms_requested(lesson, arguments)
    updates = training_updates(lesson.experiment, configs, arguments["preset"], arguments["progress"], arguments["request"], on_cpu)
    latest = []

    def remembered():
        for item in updates:
            latest[:] = item[:1]
            yield item

    source = remembered()
    frames, drawing = lesson.frames(source), Drawing(lesson.instrument)
    try:
        for frame in frames:
            yield *frame, *drawing.frame(latest[0])
    finally:  # a closed stream closes the run's, which leaves the run
        for stream in (frames, source, updates):
            stream.close()


def training_handler(lesson, on_cpu: bool = False):
    """The lesson's Train handler as Gradio reads a function: a generator whose signature names
    the tab's own controls, then the shared settings, then Gradio's progress and request."""

    def handler(*args, **kwargs):
        yield from train_lesson(lesson, on_cpu, *args, **kwargs)

    handler.__signature__ = lesson.signature
    handler.__annotations__ = {"request": gr.Request}
    handler.__name__ = handler.__qualname__ = lesson.api_name + ("_on_cpu" if on_cpu else "")
    handler.__doc__ = lesson.__doc__
    return handler


def stop_run(request: gr.Request = None) -> tuple:
    """Stop's own handler: leave this session's run (it stops unless another session reads it
    too, and its stream ends on the same report) and report how far it got: the table and status.
    A run on ZeroGPU's GPU is reported from what this process received of it."""
    session = request.session_hash if request else None
    stopped = classroom.stop(session) or stop_on_gpu(session)
    if stopped is None:
        return gr.skip(), gr.skip()
    experiment, update = stopped
    return results_table(experiment, update.recorder, stopped=True), update.status


def starting(blocks: int) -> tuple:
    """Train's first step, before its stream: show the `blocks` outputs hidden until there is
    something to draw, and enable Stop (the last output)."""
    return *(gr.update(visible=True) for _ in range(blocks)), gr.update(interactive=True)


def after_run(experiment: Experiment, words: str | None, session: dict | None) -> tuple:
    """After a run's verdict: whether the student's prediction came true (by the verdict their run
    was told), kept with their run in the class record; then the class's board at its settings."""
    if not session or not session.get("results"):
        return gr.skip(), gr.skip(), gr.skip()
    recorded = session.get("recorded")
    predicted(class_record(), experiment, words, recorded)
    note = judged_prediction(experiment, words, session["results"], recorded.class_runs if recorded else ())
    found = board(class_record(), experiment, session["results"], recorded.sigma) if recorded and recorded.run_id else None
    return note, *drawn_board(experiment, found)


def disable_stop() -> dict:
    return gr.update(interactive=False)


def offer_cpu(request: gr.Request = None) -> dict:
    """After a failed training request: show the CPU button if ZeroGPU refused the run a GPU."""
    return gr.update(visible=was_refused(request))


def quick_preset(experiment_name: str) -> tuple:
    """The CPU button's first step: the quick preset and its settings in the controls."""
    return "quick", *preset_controls(experiment_name, "quick")


class RunButtons:
    """Train, Stop (secondary, and enabled only while a run streams) and the CPU fallback, which
    shows when ZeroGPU refused a run a GPU. Train brings the status it writes into view."""

    def __init__(self, status_id: str):
        with gr.Row():
            self.train = gr.Button("Train", variant="primary", scale=3, elem_id=f"train-{status_id.removeprefix('status-')}")
            self.stop = gr.Button("Stop", variant="secondary", size="sm", interactive=False, scale=1, min_width=80)
        self.on_cpu = gr.Button("Use the CPU instead (quick preset)", visible=False)
        self.status_id = status_id

    def wire(self, handler, cpu_handler, inputs: list, outputs: list, api_name: str, stop_outputs: list, hidden: list, before: tuple = (), before_cpu: tuple = ()) -> tuple:
        """Train streams `handler` into `outputs` as the endpoint `api_name`; a refusal offers the
        CPU, whose click streams `cpu_handler`. Either click first shows the `hidden` blocks,
        enables Stop and scrolls to the status; then `before` (fn, inputs, outputs) runs, or
        `before_cpu` instead of it on the CPU's. Stop reports into `stop_outputs`."""
        # Every request streams at once: the classroom's queue trains one at a time and tells each
        # where it stands, and replays and attached readers need no turn of their own.
        streams = dict(concurrency_id="training", concurrency_limit=MAX_STREAMS)
        # Chained before the stream: a listener of the click's own, added after the stream's, ran only
        # once the stream had ended (Transfer learning's plots showed only with the verdict).
        scroll = f"(...a) => {{ document.getElementById('{self.status_id}')?.scrollIntoView({{behavior: 'smooth', block: 'center'}}); return a; }}"

        def click(button, first: tuple):
            started = button.click(functools.partial(starting, len(hidden)), None, [*hidden, self.stop], js=scroll, api_visibility="private")
            return started.then(*first, api_visibility="private").then if first else started.then

        training = click(self.train, before)(handler, inputs, outputs, api_name=api_name, **streams)
        training.failure(offer_cpu, None, self.on_cpu, api_visibility="private")
        on_cpu = click(self.on_cpu, before_cpu or before)(cpu_handler, inputs, outputs, api_visibility="private", **streams)
        # No cancels: the stream ends by itself on Stop's report, so that it cannot draw over it.
        self.stop.click(stop_run, None, stop_outputs, api_visibility="private")
        for run in (training, on_cpu):
            run.then(disable_stop, None, self.stop, api_visibility="private")
        return training, on_cpu


class ComparisonPanel:
    """A lesson tab laid out in the current Blocks: the explanation with the tab's own controls,
    the shared settings, Train and Stop, the status, the plots and the results table."""

    def __init__(self, lesson):
        self.lesson = lesson
        experiment = lesson.experiment
        epochs, n_train, lr, batch_size, init = preset_values(experiment.name, DEFAULT_PRESET)
        status_id = f"status-{lesson.api_name}"
        with gr.Row():
            with gr.Column(scale=3):
                # The question, the idea and its picture, the factor under study: then Train.
                gr.Markdown(f"### {experiment.title}\n**{lesson.question}**\n\n{lesson.idea}", latex_delimiters=LATEX)
                self.own = lesson.controls()
                if len(self.own) != len(lesson.own_parameters):
                    raise TypeError(f"{type(lesson).__name__}.controls() lays out {len(self.own)} inputs for the {len(lesson.own_parameters)} parameters its arms() takes after the settings")
            with gr.Column(scale=2):
                # Predict, then run: optional, one click, kept by nobody but this page.
                self.prediction = gr.Radio(list(predictions(experiment).values()) if experiment.lessons else [], value=None, label="Your prediction: which comes out ahead? (optional)", visible=bool(experiment.lessons))
                self.buttons = RunButtons(status_id)
                # Folded under Train: a student changes one thing, a setting only when asked to.
                with gr.Accordion("Settings: preset, epochs, images, learning rate, seed", open=False):
                    self.preset = gr.Radio(["quick", "report"], value=DEFAULT_PRESET, label="Preset", info="quick: about a minute on a laptop · report: the report's own settings")
                    self.epochs = gr.Slider(*limits("epochs"), value=epochs, step=1, label="Epochs")
                    self.n_train = gr.Slider(*limits("n_train"), value=n_train, step=100, label="Training images (class-balanced subset)")
                    with gr.Row():
                        self.lr = gr.Number(value=lr, minimum=limits("lr")[0], maximum=limits("lr")[1], label="Learning rate")
                        self.batch_size = gr.Slider(*limits("batch_size"), value=batch_size, step=1, label="Batch size")
                        self.seed = gr.Number(value=0, precision=0, minimum=0, label="Seed (shared by all arms)")
                    self.init = gr.Radio(list(INITS), value=init, label="Initial weights", visible=lesson.chooses_init, info="default: PyTorch's own, as in the report's code · he: scaled for ReLU")
                with gr.Accordion("Link to these settings", open=False) as self.link_fold:
                    self.link = gr.Textbox(show_label=False, buttons=["copy"], info="Opens this tab with these settings; add &run=1 to press Train too.")
        self.status = gr.Markdown(elem_id=status_id)
        self.prediction_note = gr.Markdown()
        # The class's own runs at these settings, drawn after each run that the record took.
        self.board_words = gr.Markdown()
        self.board = gr.Plot(label="Your class's runs at these settings", show_label=False, format="png", visible=False, elem_classes="class-board")
        # Without a reference run the line plots would open empty: they appear with the first Train.
        self.plots = gr.Row(visible=lesson.opens_with_plots)
        self.hidden_until_trained = [] if self.plots.visible else [self.plots]
        with self.plots:
            self.figures = lesson.plots(self)
        if lesson.caption():
            gr.Markdown(lesson.caption())
        instrument_column, *self.instrument_outputs = lesson.instrument.build()
        self.hidden_until_trained.append(instrument_column)
        # Tall enough for every row (the depth grid's 15 cells) without a scroll inside the page.
        self.table = gr.Dataframe(results_table(experiment, None), label=TABLE_LABEL, interactive=False, max_height=TABLE_MAX_HEIGHT)
        gr.Markdown(table_notes(experiment))
        self.session = gr.State()

    def fold_details(self) -> None:
        """The reading one click away, after everything a run draws: the maths and the report's
        story, and what the quick preset changes."""
        experiment = self.lesson.experiment
        with gr.Accordion("Why: the maths, and what the report found", open=False):
            gr.Markdown(f"{self.lesson.explanation}\n\n**The report found:** {experiment.finding}", latex_delimiters=LATEX)
        with gr.Accordion("What the quick preset changes, and why", open=False):
            self.preset_note = gr.Markdown(preset_note(experiment, DEFAULT_PRESET))

    @property
    def settings(self) -> list:
        return [self.preset, self.epochs, self.n_train, self.lr, self.batch_size, self.seed, *([self.init] if self.lesson.chooses_init else [])]

    def wire(self, extra_outputs: tuple = ()) -> None:
        """The folded details, laid out last (after a tab's own outputs); then Train, its endpoint,
        the CPU fallback, Stop and the preset's controls."""
        self.fold_details()
        lesson = self.lesson
        controls = [self.preset, self.epochs, self.n_train, self.lr, self.batch_size, self.init, self.preset_note]
        outputs = [*self.figures, self.table, self.status, self.session, *extra_outputs, *self.instrument_outputs]
        quick = (functools.partial(quick_preset, lesson.experiment.name), None, controls)
        runs = self.buttons.wire(lesson.handler, lesson.cpu_handler, [*self.own, *self.settings], outputs, lesson.api_name, [self.table, self.status], self.hidden_until_trained, before_cpu=quick)
        for run in runs:  # after the verdict: was the prediction right, and what did the class find?
            run.then(functools.partial(after_run, lesson.experiment), [self.prediction, self.session], [self.prediction_note, self.board, self.board_words], api_visibility="private")
        self.preset.change(functools.partial(preset_controls, lesson.experiment.name), self.preset, controls[1:], api_visibility="private")
        # The link for what is on screen: a query goes after the page's own address, in the browser.
        self.link_fold.expand(functools.partial(space_link, lesson), [*self.own, *self.settings], self.link, api_visibility="private").then(
            None, self.link, self.link, js="(link) => link.startsWith('?') ? window.location.origin + window.location.pathname + link : link"
        )


def warm_up(tabs) -> threading.Thread:
    """Train every tab's defaults in a background thread, one after another and each after any
    student's run (classroom.in_background), so that a class's first clicks find them finished
    and replayed; a click meanwhile attaches to the one training."""

    def train_all() -> None:
        with classroom.in_background():
            for tab in tabs:
                configs = tab.warm_up_arms()
                try:
                    for _ in classroom.follow(classroom.request(get_experiment(tab.experiment_name), configs, DEFAULT_PRESET)) if configs else ():
                        pass
                except (DatasetMissingError, WeightsUnavailableError, ValueError, TrainingFailed, QueueFull) as error:
                    log.warning("warming up %s failed: %s", tab.title, error)

    thread = threading.Thread(target=train_all, name="warm-up", daemon=True)
    thread.start()
    return thread
