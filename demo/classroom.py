"""The classroom's training queue: thirty students who click Train within a minute each learn where
they stand, and the runs they ask for in common are trained once.

Our runs are deterministic, so identical requests (`training.cache.run_key`) need one training:
- a finished identical run is replayed from the `RunCache`, curves, verdict and models;
- an identical run queued or training is attached to: every reader receives the same stream;
- anything else becomes a `Job` in the queue, and one trainer thread trains the jobs in turn (on
  two cores two trainings at once help nobody). Each waiting reader is told its place in line
  and when its run should start, from the measured speed of the runs ahead.
A session holds at most one request: its next click replaces the last. A job nobody reads any
more is dropped from the queue, or stopped if it is training. Gradio is not imported here: the
tabs' handlers (`demo.panel.watch`) turn these updates into plots and messages.
"""

import atexit
import datetime
import itertools
import logging
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from models import model_arguments
from models.alexnet import WeightsUnavailableError, backbone_url
from training.cache import CachedRun, RunCache, run_key, shared_cache
from training.data import DatasetMissingError, data_activity, download_checkpoint, images_per_epoch, load_splits
from training.devices import device_name, resolve_device
from training.engine import Finished, Started, TrainConfig, model_overrides
from training.experiments import Experiment
from training.lessons import verdicts
from training.results import Recorder
from training.runner import ComparisonRun

log = logging.getLogger(__name__)

# Updates a training run publishes per second. Each one makes every reader re-send and re-draw its
# curves, which on a 2-core machine takes CPU from training, so stay at the low end of 1–10.
UPDATES_PER_SECOND = 2
# A waiting reader hears of its place in line when it changes, and at least this often.
WAITING_UPDATE_S = 5.0
# Runs waiting at once; one more is refused with a message. Each session holds at most one.
MAX_QUEUED = 64
# Errors whose message already tells the student what to do; any other is reported as a failure.
EXPLAINED = (DatasetMissingError, WeightsUnavailableError, ValueError)
REPLACED = "**Replaced** by your newer Train request, which is now the one this session waits for."


class QueueFull(RuntimeError):
    """Too many runs are waiting; the message says so."""


class TrainingFailed(RuntimeError):
    """The run raised while training; the message says what, and that the queue moved on."""


@dataclass
class Update:
    """What a reader is shown: the run so far, a status line, and whether the run is done."""

    recorder: Recorder
    status: str
    finished: bool = False
    progress: float | None = None  # share of the training steps done; None while waiting


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


class Job:
    """One comparison to train, and the latest update its readers are shown."""

    _numbers = itertools.count(1)

    def __init__(self, key: str | None, experiment: Experiment, configs: list[TrainConfig], preset: str, background: bool = False):
        self.key, self.experiment, self.configs, self.preset = key, experiment, configs, preset
        self.background = background  # a warm-up: queued after every student's run
        self.number = next(self._numbers)
        self.run = ComparisonRun(experiment, configs)
        self.images = sum(c.epochs * n for c, n in zip(configs, images_per_epoch(configs)))
        self.state = "queued"  # → running → done | failed | cancelled
        self.readers = 0
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
        share = self.run.steps_done / max(1, self.run.steps_planned)
        with self.changed:
            self.update = Update(self.run.recorder.snapshot(), status, finished, share)
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
        for activity in prepare_data(self.configs):
            self.publish(f"{activity}…")
            yield
        status, last = f"Training {arms} arm(s) on {where}…", 0.0
        for event in self.run:
            if isinstance(event, Started):
                status = f"Training {arms} arm(s) on {where} in {event.precision}…"
            if time.perf_counter() - last >= 1 / UPDATES_PER_SECOND or isinstance(event, Finished):
                last = time.perf_counter()
                self.publish(status)
            yield
        verdict = verdicts(self.experiment, self.results())
        self.publish("\n\n".join([f"Done on {where}.", *(f"**Verdict:** {line}" for line in verdict)]), finished=True)

    def results(self) -> dict:
        return self.run.results(self.preset, self.configs[0].device)


class Ticket:
    """One reader's request: the job it reads, or the finished run it replays."""

    def __init__(self, session: str | None, job: Job | None = None, replay: Update | None = None, inline: bool = False):
        self.session, self.job, self.replay, self.inline = session, job, replay, inline
        self.replaced = False
        self.left = False


def replay_status(experiment: Experiment, results: dict, finished_at: datetime.datetime) -> str:
    when = finished_at.astimezone(datetime.UTC).strftime("%H:%M")
    lines = [f"Done: **the same run finished at {when} UTC; replayed.** It trained on {results['device_name']}; runs are deterministic, so training it again would draw the same curves."]
    return "\n\n".join([*lines, *(f"**Verdict:** {line}" for line in verdicts(experiment, results))])


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


class Classroom:
    """The queue, the trainer thread and the cache, shared by every session of the app."""

    def __init__(self, cache: RunCache | None = None):
        self._cache = cache
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: list[Job] = []
        self.running: Job | None = None
        self._by_key: dict[str, Job] = {}  # queued, training, or done and being written to the cache
        self._sessions: dict[str, Ticket] = {}
        self._seconds_per_image: dict[str, float] = {}  # by experiment, measured here
        self._trainer: threading.Thread | None = None
        self._closing = False
        self._background = threading.local()

    @property
    def cache(self) -> RunCache:
        return self._cache or shared_cache()

    @contextmanager
    def in_background(self):
        """Requests made inside are warm-ups: queued after every student's run."""
        self._background.on = True
        try:
            yield
        finally:
            self._background.on = False

    def request(self, experiment: Experiment, configs: list[TrainConfig], preset: str, session: str | None = None, inline: bool = False) -> Ticket:
        """A ticket for this run: a replay, a place beside identical readers, or a new job.
        `inline`: train in the caller's thread, outside the queue and the cache (a ZeroGPU call)."""
        if inline:
            job = Job(None, experiment, configs, preset)
            job.readers = 1
            return Ticket(session, job, inline=True)
        key = run_key(experiment.name, configs) if self.cache.enabled else None
        cached = self.cache.get(key) if key else None
        with self._lock:
            self._replace(session)
            job = self._by_key.get(key) if key else None
            if not cached and job and job.state == "done":  # its cache entry is being written
                cached = CachedRun(job.results(), job.run.recorder.models, job.ended_at)
            if cached:
                ticket = Ticket(session, replay=Update(Recorder.restored(cached.results, cached.models), replay_status(experiment, cached.results, cached.finished_at), True, 1.0))
            else:
                background = getattr(self._background, "on", False)
                if job is None:
                    if len(self._queue) >= MAX_QUEUED:
                        raise QueueFull(f"{MAX_QUEUED} runs are already waiting on this server. Try again in a few minutes, or choose settings someone has already run.")
                    job = Job(key, experiment, configs, preset, background)
                    self._enqueue(job)
                elif job.background and not background:  # a student wants this warm-up: it waits as theirs
                    job.background = False
                    if job.state == "queued":
                        self._queue.remove(job)
                        self._enqueue(job)
                job.readers += 1
                ticket = Ticket(session, job)
            if session:
                self._sessions[session] = ticket
        return ticket

    def _enqueue(self, job: Job) -> None:
        # Students' runs go before warm-ups, each kind in the order they came.
        place = len(self._queue) if job.background else next((i for i, j in enumerate(self._queue) if j.background), len(self._queue))
        self._queue.insert(place, job)
        if job.key:
            self._by_key[job.key] = job
        if self._trainer is None:
            self._trainer = threading.Thread(target=self._train_forever, name="classroom-trainer", daemon=True)
            self._trainer.start()
            atexit.register(self.stop_training)
        self._work.notify()

    def _replace(self, session: str | None) -> None:
        previous = self._sessions.pop(session, None) if session else None
        if previous and not previous.left:
            previous.replaced = True
            self._leave(previous)
            if previous.job:
                with previous.job.changed:
                    previous.job.changed.notify_all()

    def leave(self, ticket: Ticket) -> None:
        """The reader is gone (its stream closed, or Stop): a job nobody reads any more is dropped,
        and the reader's stream, if still open, ends."""
        with self._lock:
            if self._sessions.get(ticket.session) is ticket:
                del self._sessions[ticket.session]
            self._leave(ticket)
        if ticket.job:
            with ticket.job.changed:
                ticket.job.changed.notify_all()

    def _leave(self, ticket: Ticket) -> None:
        if ticket.left:
            return
        ticket.left = True
        job = ticket.job
        if job is None:
            return
        job.readers -= 1
        if job.readers > 0 or ticket.inline or job.state not in ("queued", "running"):
            return
        if job.key and self._by_key.get(job.key) is job:
            del self._by_key[job.key]  # a new identical request trains afresh
        if job.state == "queued":
            self._queue.remove(job)
            job.end("cancelled")
        else:
            job.cancelled = True  # the trainer stops it at its next event

    def follow(self, ticket: Ticket) -> Iterator[Update]:
        """The updates the ticket's reader is shown, to the run's end. Closing it leaves the job."""
        try:
            if ticket.replay:
                yield ticket.replay
            elif ticket.inline:
                yield from self._train_inline(ticket.job)
            else:
                yield from self._read(ticket)
        finally:
            self.leave(ticket)

    def _train_inline(self, job: Job) -> Iterator[Update]:
        seen = job.version
        steps = job.steps()
        try:
            for _ in itertools.chain(steps, [None]):  # the last look sees the verdict, published as the steps end
                if job.version != seen:
                    seen = job.version
                    yield job.update
        finally:
            steps.close()

    def _read(self, ticket: Ticket) -> Iterator[Update]:
        job, seen, waiting, told_at = ticket.job, -1, None, 0.0
        while True:
            with job.changed:
                if job.version == seen and job.state in ("queued", "running") and not ticket.left:
                    job.changed.wait(WAITING_UPDATE_S if job.state == "queued" else 1 / UPDATES_PER_SECOND)
                version, update, state = job.version, job.update, job.state
            if ticket.replaced:
                yield Update(update.recorder, REPLACED)
                return
            if ticket.left:  # stopped
                return
            if state == "failed":
                raise job.error if isinstance(job.error, EXPLAINED) else TrainingFailed(
                    f"This run failed on the server ({type(job.error).__name__}: {job.error}). The queue has moved on; press Train to try again."
                )
            if state == "cancelled":
                return
            if state == "queued":
                status = self.waiting_status(job)
                if status != waiting or time.monotonic() - told_at >= WAITING_UPDATE_S:
                    waiting, told_at = status, time.monotonic()
                    yield Update(update.recorder, status)
                continue
            if version != seen:
                seen = version
                yield update
                if update.finished:
                    return

    def waiting_status(self, job: Job) -> str:
        with self._lock:
            if job not in self._queue:
                return job.update.status
            ahead = [j for j in [self.running, *self._queue[: self._queue.index(job)]] if j is not None]
        place = f"**Waiting for the server:** your run is {ordinal(len(ahead) + 1)} in line ({len(ahead)} ahead of it; one trains at a time)."
        seconds = [self._remaining_s(j) for j in ahead]
        if None in seconds:
            return f"{place} Its start time is estimated once a run of each kind ahead has been timed here."
        wait = sum(seconds)
        start = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=wait)).strftime("%H:%M")
        return f"{place} It should start at about {start} UTC, in about {max(1, round(wait / 60))} min, from the measured speed of the runs ahead."

    def _remaining_s(self, job: Job) -> float | None:
        """Seconds the job has left: the running one from its own pace so far, a queued one from
        the pace measured here of its experiment (else of any run)."""
        if job.started_at is not None and job.run.steps_planned:
            done = job.run.steps_done / job.run.steps_planned
            if done >= 0.05:
                return (time.monotonic() - job.started_at) * (1 - done) / done
        rate = self._seconds_per_image.get(job.experiment.name)
        if rate is None and self._seconds_per_image:
            rate = statistics.median(self._seconds_per_image.values())
        if rate is None:
            return None
        elapsed = time.monotonic() - job.started_at if job.started_at is not None else 0.0
        return max(0.0, job.images * rate - elapsed)

    def stop_training(self, wait_s: float = 10.0) -> None:
        """At exit: stop the run training now and end the trainer thread, since the process aborts
        ("terminate called without an active exception") when the interpreter ends while a thread
        that ran torch's ops is still alive."""
        with self._lock:
            self._closing = True
            for waiting in self._queue:
                waiting.end("cancelled")
            self._queue.clear()
            if self.running:
                self.running.cancelled = True
            self._work.notify()
        if self._trainer:
            self._trainer.join(wait_s)

    def _train_forever(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._work.wait()
                if self._closing:
                    return
                job = self.running = self._queue.pop(0)
                job.state, job.started_at = "running", time.monotonic()
            self._train(job)
            with self._lock:
                self.running = None
                if job.key and self._by_key.get(job.key) is job:
                    del self._by_key[job.key]

    def _train(self, job: Job) -> None:
        steps = job.steps()
        try:
            for _ in steps:
                if job.cancelled:
                    steps.close()
                    job.end("cancelled")
                    return
        except Exception as error:  # the queue moves on; its readers are told what happened
            log.exception("run %d (%s) failed", job.number, job.experiment.name)
            job.end("failed", error)
            return
        with self._lock:
            self._seconds_per_image[job.experiment.name] = (time.monotonic() - job.started_at) / max(1, job.images)
        job.end("done")
        if job.key:
            # Identical requests meanwhile attach to the finished job (still under its key).
            self.cache.put(job.key, job.results(), job.run.recorder.models)


classroom = Classroom()
