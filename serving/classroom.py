"""The classroom's training queue: thirty students who click Train within a minute each learn where
they stand, and the runs they ask for in common are trained once.

Our runs are deterministic, so identical requests (`serving.cache.run_key`) need one training:
- a finished identical run is replayed from the `RunCache`, curves, verdict and models;
- an identical run queued or training is attached to: every reader receives the same stream;
- anything else becomes a `Job` in the queue, and one trainer thread trains the jobs in turn (on
  two cores two trainings at once help nobody). Each waiting reader is told its place in line
  and when its run should start, from the measured speed of the runs ahead.
The classroom owns each browser session's state: a session holds at most one request (its next
click replaces the last), Stop ends it and reports how far it got, and a job nobody reads any
more (a reader that stopped asking for updates counts as gone) is dropped from the queue, or
stopped if it is training. Gradio is not imported here: the tabs' handlers (`demo.panel`) turn
these updates into plots and messages.
"""

import atexit
import datetime
import functools
import itertools
import logging
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from serving.jobs import REPLACED, UPDATES_PER_SECOND, Job, Ticket, Update, ordinal, replaced, replayed
from models.alexnet import WeightsUnavailableError
from serving.cache import RunCache, run_key, shared_cache
from training.config import TrainConfig
from training.sources import DatasetMissingError
from training.experiments import Experiment
from serving.lru import BoundedLRU
from serving.sessions import Sessions

log = logging.getLogger(__name__)

__all__ = ["REPLACED", "Classroom", "QueueFull", "TrainingFailed", "Update", "classroom"]

# A waiting reader hears of its place in line when it changes, and at least this often.
WAITING_UPDATE_S = 5.0
# Runs waiting at once; one more is refused with a message. Each session holds at most one.
MAX_QUEUED = 64
# What one client address may hold, since it can invent session ids: runs waiting (a class of
# thirty behind one school address fits, and a quarter of the places stay for everyone else), and
# new sessions a minute (a class arriving at once opens thirty).
MAX_QUEUED_PER_CLIENT = 48
MAX_NEW_SESSIONS_PER_MINUTE = 60
# A reader that has not asked for its next update this long after it was handed one is gone. A
# reader asks within milliseconds, or a few seconds when thirty streams share two cores.
ABANDONED_AFTER_S = 10.0
# How often the trainer looks for readers that are gone.
ABANDON_CHECK_S = 0.5
# Browser sessions this server remembers (their last request, Stop's report of it, their photos);
# the one seen longest ago goes first.
REMEMBERED_SESSIONS = 256
# Answers go ahead of training, and training keeps its share: while a photo is being classified,
# the trainer waits between two steps (its steps take the GIL and the cores the answer needs), but
# never for more than GIVE_WAY_SHARE of its own time: after a step of s seconds, at most
# s × share / (1 − share). So a class that classifies without a pause still trains at (1 − share)
# of its pace at least (benchmarks/priority.py measured the share chosen; a lower OS priority for
# the trainer did not help: the GIL it holds is not scheduled by priority).
GIVE_WAY_SHARE = 1 / 10
# Errors whose message already tells the student what to do; any other is reported as a failure.
EXPLAINED = (DatasetMissingError, WeightsUnavailableError, ValueError)


class QueueFull(RuntimeError):
    """Too many runs are waiting; the message says so."""


class TrainingFailed(RuntimeError):
    """The run raised while training; the message says what, and that the queue moved on."""


class Classroom:
    """The queue, the trainer thread, the cache and each session's request, shared by every session
    of the app."""

    def __init__(self, cache: RunCache | None = None):
        self._cache = cache
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: list[Job] = []
        self.running: Job | None = None
        self._by_key: dict[str, Job] = {}  # queued, training, or done and being written to the cache
        self.sessions = Sessions(REMEMBERED_SESSIONS)  # each browser session's state, its latest Ticket among it
        self._new_sessions = BoundedLRU(REMEMBERED_SESSIONS)  # client address → when its last new sessions came (monotonic)
        self._seconds_per_image: dict[str, float] = {}  # by experiment, measured here
        self._trainer: threading.Thread | None = None
        self._closing = False
        self._background = threading.local()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="classroom-cache-writer")
        self._answers = 0  # photos being classified now
        self._no_answers = threading.Condition()

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

    @contextmanager
    def answering(self):
        """Inside, a photo is being classified: the trainer waits between two steps."""
        with self._no_answers:
            self._answers += 1
        try:
            yield
        finally:
            with self._no_answers:
                self._answers -= 1
                if not self._answers:
                    self._no_answers.notify_all()

    def _give_way(self, step_s: float) -> None:
        """Wait while photos are being classified, for at most the share of time the trainer
        gives way after a step of `step_s` seconds."""
        with self._no_answers:
            self._no_answers.wait_for(lambda: not self._answers, timeout=step_s * GIVE_WAY_SHARE / (1 - GIVE_WAY_SHARE))

    def request(self, experiment: Experiment, configs: list[TrainConfig], preset: str, session: str | None = None, inline: bool = False, client: str | None = None) -> Ticket:
        """A ticket for this run: a replay, a place beside identical readers, or a new job.
        `inline`: train in the caller's thread, outside the queue and the cache (a ZeroGPU call).
        `client`: the address it came from, which bounds what one client may hold."""
        if inline:
            ticket = Ticket(session, Job(None, experiment, configs, preset), inline=True)
            ticket.job.tickets.add(ticket)
            return self._remember(ticket)
        key = run_key(experiment.name, configs) if self.cache.enabled else None
        cached = self.cache.get(key) if key else None
        with self._lock:
            self._count_new_session(session, client)
            self._replace(session)
            job = self._by_key.get(key) if key else None
            if cached:
                ticket = Ticket(session, replay=replayed(experiment, cached.results, cached.models, cached.finished_at))
            elif job and job.state == "done":  # its cache entry is being written
                ticket = Ticket(session, replay=replayed(experiment, job.results(), job.run.recorder.models, job.ended_at))
            else:
                ticket = Ticket(session, self._job_for(key, job, experiment, configs, preset, client))
                ticket.job.tickets.add(ticket)
            return self._remember(ticket)

    def _count_new_session(self, session: str | None, client: str | None) -> None:
        """A QueueFull if this client address has opened too many sessions in the last minute."""
        if not session or not client or self.sessions.find(session):
            return
        now = time.monotonic()
        recent = [t for t in self._new_sessions.get(client, []) if now - t < 60]
        if len(recent) >= MAX_NEW_SESSIONS_PER_MINUTE:
            raise QueueFull(f"{MAX_NEW_SESSIONS_PER_MINUTE} new sessions came from your address in the last minute. Wait a minute and press Train again.")
        self._new_sessions[client] = [*recent, now]

    def _job_for(self, key: str | None, job: Job | None, experiment: Experiment, configs: list[TrainConfig], preset: str, client: str | None) -> Job:
        """The job an identical request already has, moved up if a student now wants a warm-up, or
        a new one in the queue."""
        background = getattr(self._background, "on", False)
        if job is None:
            if len(self._queue) >= MAX_QUEUED:
                raise QueueFull(f"{MAX_QUEUED} runs are already waiting on this server. Try again in a few minutes, or choose settings someone has already run.")
            if client and sum(1 for waiting in self._queue if waiting.client == client) >= MAX_QUEUED_PER_CLIENT:
                raise QueueFull(f"{MAX_QUEUED_PER_CLIENT} runs from your address are already waiting on this server. Try again once some have trained.")
            job = Job(key, experiment, configs, preset, background, client)
            self._enqueue(job)
        elif job.background and not background:  # a student wants this warm-up: it waits as theirs
            job.background = False
            if job.state == "queued":
                self._queue.remove(job)
                self._enqueue(job)
        return job

    def _remember(self, ticket: Ticket) -> Ticket:
        if ticket.session:
            self.sessions.get(ticket.session).ticket = ticket
        return ticket

    def _enqueue(self, job: Job) -> None:
        # Students' runs go before warm-ups, each kind in the order they came.
        place = len(self._queue) if job.background else next((i for i, j in enumerate(self._queue) if j.background), len(self._queue))
        self._queue.insert(place, job)
        self._queue_moved()
        if job.key:
            self._by_key[job.key] = job
        if self._trainer is None:
            self._trainer = threading.Thread(target=self._train_forever, name="classroom-trainer", daemon=True)
            self._trainer.start()
            atexit.register(self.stop_training)
        self._work.notify()

    def _take_ticket(self, session: str | None) -> Ticket | None:
        """The session's latest request, which it no longer holds."""
        holder = self.sessions.find(session)
        if holder is None:
            return None
        ticket, holder.ticket = holder.ticket, None
        return ticket

    def _queue_moved(self) -> None:
        """Wake the readers of every waiting run: their places in line changed."""
        for waiting in self._queue:
            waiting.nudge()

    def _replace(self, session: str | None) -> None:
        previous = self._take_ticket(session)
        if previous and previous.ended is None:
            self._leave(previous, "replaced")
            _wake(previous)

    def stop(self, session: str | None) -> tuple[Experiment, Update] | None:
        """Stop's report for this session's request, which it leaves (its run stops unless another
        session reads it too, and its stream ends on the same report): how far its run got. None
        where there is nothing to stop: no request, or one that finished or was replaced."""
        ticket = self._take_ticket(session)
        if ticket is None or ticket.job is None or ticket.ended in ("finished", "replaced", "failed"):
            return None
        with self._lock:
            if ticket.report is None:
                ticket.report = ticket.job.stop_update()
            self._leave(ticket, "stopped")
        _wake(ticket)
        return ticket.job.experiment, ticket.report

    def leave(self, ticket: Ticket) -> None:
        """The reader is gone (its stream closed, or it stopped asking): a job nobody reads any
        more is dropped, and the reader's stream, if still open, ends. An unfinished run's report
        is kept for the session's Stop, which may come after its stream closed."""
        with self._lock:
            holder = self.sessions.find(ticket.session)
            if ticket.ended == "finished" and holder and holder.ticket is ticket:
                holder.ticket = None
            if ticket.job and ticket.ended is None and ticket.report is None:
                ticket.report = ticket.job.stop_update()
            self._leave(ticket, "stopped")
        _wake(ticket)

    def _leave(self, ticket: Ticket, ending: str) -> None:
        """The ticket ends (unless it already has) and no longer holds its job."""
        ticket.end(ending)
        job = ticket.job
        if job is None or ticket not in job.tickets:
            return
        job.tickets.discard(ticket)
        if job.tickets or ticket.inline or job.state not in ("queued", "running"):
            return
        if job.key and self._by_key.get(job.key) is job:
            del self._by_key[job.key]  # a new identical request trains afresh
        if job.state == "queued":
            self._queue.remove(job)
            self._queue_moved()
            job.end("cancelled")
        else:
            job.cancelled = True  # the trainer stops it at its next event

    def follow(self, ticket: Ticket) -> Iterator[Update]:
        """The updates the ticket's reader is shown, to the run's end; a stopped run's last one is
        Stop's report. Closing it leaves the job."""
        if ticket.replay:
            source = iter([ticket.replay])
        elif ticket.inline:
            source = self._train_inline(ticket)
        else:
            source = self._read(ticket)
        try:
            for update in source:
                if update.finished:
                    ticket.end("finished")
                ticket.suspended_since = time.monotonic()
                yield update
                ticket.suspended_since = None
        except Exception:
            ticket.end("failed")  # on an error its reader is told: nothing left to stop
            raise
        finally:
            self.leave(ticket)

    def _train_inline(self, ticket: Ticket) -> Iterator[Update]:
        job = ticket.job
        seen = job.version
        steps = job.steps()
        try:
            for _ in itertools.chain(steps, [None]):  # the last look sees the verdict, published as the steps end
                if ticket.ended in ("stopped", "replaced"):
                    if ticket.report:
                        yield ticket.report
                    return
                if job.version != seen:
                    seen = job.version
                    yield job.update
        finally:
            steps.close()

    def _read(self, ticket: Ticket) -> Iterator[Update]:
        job, seen, waiting, told_at = ticket.job, -1, None, 0.0
        while True:
            with job.changed:
                if job.version == seen and job.state in ("queued", "running") and ticket.ended is None:
                    job.changed.wait(WAITING_UPDATE_S if job.state == "queued" else 1 / UPDATES_PER_SECOND)
                version, update, state = job.version, job.update, job.state
            if ticket.ended == "replaced":
                yield replaced(update)
                return
            if ticket.ended == "stopped":  # the stream ends on Stop's report
                if ticket.report:
                    yield ticket.report
                return
            if state == "failed":
                raise job.error if isinstance(job.error, EXPLAINED) else TrainingFailed(
                    f"This run failed on the server ({type(job.error).__name__}: {job.error}). The queue has moved on; press Train to try again."
                )
            if state == "cancelled":
                return
            if state == "queued":
                seen = version  # it waits for its place to change, or for the next tick
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
        self._writer.shutdown(wait=True)

    def _train_forever(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._work.wait()
                if self._closing:
                    return
                job = self.running = self._queue.pop(0)
                job.state, job.started_at = "running", time.monotonic()
                self._queue_moved()
            try:
                self._train(job)
            except Exception as error:  # anything at all: this job fails, and the queue goes on
                log.exception("run %d (%s) failed outside its training", job.number, job.experiment.name)
                if job.state == "running":
                    job.end("failed", error)
            finally:
                with self._lock:
                    self.running = None
                    if job.state != "done" or not job.key:
                        self._forget(job)
            if job.state == "done" and job.key:
                self._writer.submit(self._store, job)

    def _forget(self, job: Job) -> None:
        if job.key and self._by_key.get(job.key) is job:
            del self._by_key[job.key]  # a new identical request trains afresh, or reads the cache

    def _store(self, job: Job) -> None:
        """Write a finished run to the cache, beside the next run's training: identical requests
        meanwhile attach to the finished job, still under its key."""
        try:
            self.cache.put(job.key, job.results(), job.run.recorder.models, pinned=job.background)
        except Exception:  # the run is with its students already: only a later replay is lost
            log.exception("run %d (%s) was not cached", job.number, job.experiment.name)
        finally:
            with self._lock:
                self._forget(job)

    def _drop_abandoned(self, job: Job) -> None:
        """Leave the job's tickets whose readers have stopped asking for updates."""
        now = time.monotonic()
        for ticket in [t for t in list(job.tickets) if t.suspended_since is not None and now - t.suspended_since > ABANDONED_AFTER_S]:
            self.leave(ticket)

    def _train(self, job: Job) -> None:
        steps, checked = job.steps(), time.monotonic()
        try:
            self._drop_abandoned(job)  # it may have waited in line for readers long gone
            stepped = time.monotonic()
            for _ in steps:
                self._give_way(time.monotonic() - stepped)
                stepped = time.monotonic()
                if time.monotonic() - checked >= ABANDON_CHECK_S:
                    checked = time.monotonic()
                    self._drop_abandoned(job)
                if job.cancelled:
                    steps.close()
                    job.end("cancelled")
                    return
        except Exception as error:  # the queue moves on; its readers are told what happened
            if isinstance(error, EXPLAINED):  # its reader is told what to do: no traceback in the log
                log.warning("run %d (%s) refused: %s", job.number, job.experiment.name, str(error).splitlines()[0])
            else:
                log.exception("run %d (%s) failed", job.number, job.experiment.name)
            job.end("failed", error)
            return
        with self._lock:
            self._seconds_per_image[job.experiment.name] = (time.monotonic() - job.started_at) / max(1, job.images)
        job.end("done")


def answer_first(handler):
    """A classify handler whose answer goes ahead of training (Classroom.answering)."""

    @functools.wraps(handler)
    def answering(*args, **kwargs):
        with classroom.answering():
            return handler(*args, **kwargs)

    return answering


def _wake(ticket: Ticket) -> None:
    """Wake the ticket's reader, waiting for news of its job, to see what changed."""
    if ticket.job:
        with ticket.job.changed:
            ticket.job.changed.notify_all()


classroom = Classroom()
