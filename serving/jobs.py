"""What the classroom's queue (serving.classroom) trains and hands out: a `Job` is one comparison to
train and the latest `Update` its readers are shown; a `Ticket` is one reader's request for it.
Plain objects and plain text: Gradio is not imported here.
"""

import datetime
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from training.config import TrainConfig
from training.datasets import images_per_epoch
from training.devices import device_name, resolve_device
from training.engine import Finished
from training.experiments import Experiment
from training.lessons import reference_disagreements, verdicts
from training.readings import instrument_of
from training.results import Recorder, committed_reference
from training.runner import ComparisonRun, fetch_data

# Updates a training run publishes per second. Each one makes every reader re-send and re-draw its
# curves, which on a 2-core machine takes CPU from training, so stay at the low end of 1–10.
UPDATES_PER_SECOND = 2
REPLACED = "**Replaced** by your newer Train request, which is now the one this session waits for."


@dataclass
class Update:
    """What a reader is shown: the run so far, a status line, and whether the run is done."""

    recorder: Recorder | None  # None: a run stopped before it trained
    status: str
    finished: bool = False
    progress: float | None = None  # share of the training steps done; None while waiting
    results: dict | None = None  # a finished run's results JSON, as made where it trained
    stopped: bool = False  # the run was stopped: its unfinished arms say where they got to
    steps: tuple[int, int] = (0, 0)  # training steps done and planned, over every arm
    headline: str = ""  # a finished run's first line, before its verdict (finished_status)


class Job:
    """One comparison to train, and the latest update its readers are shown."""

    _numbers = itertools.count(1)

    def __init__(self, key: str | None, experiment: Experiment, configs: list[TrainConfig], preset: str, background: bool = False, client: str | None = None):
        self.key, self.experiment, self.configs, self.preset = key, experiment, configs, preset
        self.background = background  # a warm-up: queued after every student's run
        self.client = client  # the address that asked for it first
        self.number = next(self._numbers)
        self.run = ComparisonRun(experiment, configs)
        self.images = sum(c.epochs * n for c, n in zip(configs, images_per_epoch(configs)))
        self.state = "queued"  # → running → done | failed | cancelled
        self.tickets: set[Ticket] = set()  # the readers it trains for
        self.cancelled = False
        self.error: BaseException | None = None
        self.started_at: float | None = None  # monotonic
        self.ended_at: datetime.datetime | None = None
        self.changed = threading.Condition()
        self.version = 0
        self.update = Update(self.run.recorder.snapshot(), "Queued…")

    @property
    def where(self) -> str:
        return device_name(resolve_device(self.configs[0].device))

    def publish(self, status: str, finished: bool = False) -> None:
        """Its readers' next update; a finished run's `status` is its headline, the verdict follows."""
        steps = self.run.steps_done, self.run.steps_planned
        results = self.results() if finished else None
        headline, status = (status, finished_status(status, self.experiment, results)) if finished else ("", status)
        with self.changed:
            self.update = Update(self.run.recorder.snapshot(), status, finished, steps[0] / max(1, steps[1]), results, steps=steps, headline=headline)
            self.version += 1
            self.changed.notify_all()

    def nudge(self) -> None:
        """Wake its readers while it waits in line: its place changed."""
        with self.changed:
            self.version += 1
            self.changed.notify_all()

    def end(self, state: str, error: BaseException | None = None) -> None:
        with self.changed:
            self.state, self.error = state, error
            self.ended_at = datetime.datetime.now(datetime.UTC)
            self.version += 1
            self.changed.notify_all()

    def steps(self) -> Iterator[None]:
        """Train, publishing a few updates a second and the verdict at the end; yields after every
        event, so that its driver can stop it between any two."""
        arms, where = len(self.configs), self.where
        # Its readers wait for news: they hear at once that the run left the line (building the
        # networks comes before their first step, seconds for AlexNet).
        self.publish("Starting: reading the data and building the networks…")
        for activity in fetch_data(self.configs, 1 / UPDATES_PER_SECOND):
            self.publish(f"{activity}…")
            yield
        status, last = f"Training {'both arms' if arms == 2 else f'all {arms} arms'} side by side on {where}…", 0.0
        for event in self.run:
            if time.perf_counter() - last >= 1 / UPDATES_PER_SECOND or isinstance(event, Finished):
                last = time.perf_counter()
                self.publish(status)
            yield
        self.publish(f"Done on {where}, in {self.run.recorder.precision}.", finished=True)

    def results(self) -> dict:
        return self.run.results(self.preset, self.configs[0].device)

    def stop_update(self) -> Update:
        """What a reader who stops this job is shown: how far it got, arm by arm."""
        if self.state == "queued":
            return Update(None, "**Stopped** while waiting in line: nothing was trained.", stopped=True)
        return stopped_at(Update(self.run.recorder.snapshot(), "", steps=(self.run.steps_done, self.run.steps_planned)))


class Ticket:
    """One reader's request: the job it reads, or the finished run it replays. Its life is one
    `state`: waiting or training (as its job is) until it ends, as finished (its reader saw the
    run's last update), stopped (Stop, or its reader left), replaced (its session's next request)
    or failed. `suspended_since` is when its stream last handed its reader an update that the
    reader has not asked past yet: a reader gone mid-stream (a closed tab, a cancel through the
    API) stops asking without closing it."""

    def __init__(self, session: str | None, job: Job | None = None, replay: Update | None = None, inline: bool = False):
        self.session, self.job, self.replay, self.inline = session, job, replay, inline
        self.ended: str | None = None  # finished | stopped | replaced | failed
        self.report: Update | None = None  # how far its run got when it was stopped
        self.suspended_since: float | None = None  # monotonic

    @property
    def state(self) -> str:
        if self.ended:
            return self.ended
        return "waiting" if self.job is not None and self.job.state == "queued" else "training"

    def end(self, how: str) -> None:
        """Its first ending is the one it keeps."""
        self.ended = self.ended or how


def finished_status(headline: str, experiment: Experiment, results: dict, class_runs: list[dict] = ()) -> str:
    """A finished run's status: its headline, then its verdict (with the class's own runs at its
    settings, where they are given: training.lessons.verdicts)."""
    return "\n\n".join([headline, *verdict_lines(experiment, results, class_runs)])


def verdict_lines(experiment: Experiment, results: dict, class_runs: list[dict] = ()) -> list[str]:
    """A finished run's verdict as its status shows it: each lesson's in plain words, then why, from
    the run's own instrument (the readings that bear out what the literature expects), then how
    sure, in small type."""
    found = verdicts(experiment, results, class_runs)
    if not found:
        return []
    instrument = instrument_of(experiment.name)
    why = instrument.explaining(instrument.numbers({run["label"]: run.get("instruments", []) for run in results["runs"]}))
    return [
        *(f"**Verdict:** {verdict.said}" for verdict in found),
        *([f"**Why, inside the network:** {' '.join(why)}"] if why else []),
        *reference_disagreements(experiment, results, committed_reference(experiment.name)),
        *(f"<small>{verdict.details}</small>" for verdict in found),
    ]


def replay_headline(results: dict, finished_at: datetime.datetime) -> str:
    when = finished_at.astimezone(datetime.UTC).strftime("%H:%M")
    return f"Done: **the same run finished at {when} UTC; replayed.** It trained on {results['device_name']}; runs are deterministic, so training it again would draw the same curves."


def replayed(experiment: Experiment, results: dict, models: dict, finished_at: datetime.datetime) -> Update:
    """A finished run read back, as its readers are shown it."""
    headline = replay_headline(results, finished_at)
    return Update(Recorder.restored(results, models), finished_status(headline, experiment, results), True, 1.0, results, headline=headline)


def stopped_at(update: Update) -> Update:
    """Stop's report of a run whose latest update is `update`: how far it got, arm by arm."""
    steps, total = update.steps
    share = f" ({steps / total:.0%})" if total else ""
    status = f"**Stopped** after {steps:,} of {total:,} training steps{share}. The table shows where each arm got to."
    return replace(update, status=status, finished=False, stopped=True)


def replaced(update: Update) -> Update:
    return replace(update, status=REPLACED, finished=False)


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
