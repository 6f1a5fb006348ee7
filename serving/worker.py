"""Training in a process of its own: the classroom's runs train here, beside the server, never in it.

In the server's process a training step holds the GIL for most of its time, so every answer, every
page and every stream of curves waits behind it, and no OS priority can help (the GIL is not
scheduled by priority). A worker process holds its own GIL: the server only reads its events.

The server starts one worker (`WorkerProcess`) and asks it for one comparison at a time. The
server loads the data (it downloads, decodes and checks it, and says so on the page) and sends each
built-in dataset to the worker once, a student's photos with each run that uses them; the worker
trains and streams the engine's events back, the trained models among them, on the CPU. A run is
stopped by asking between two events, and by killing the worker where it does not answer in
time; a worker that dies fails its run alone, and the next run starts a new one. While the server
classifies a photo it says so, and the worker gives way between two steps for at most a share of
its time (`GiveWay`), since both processes want the same cores.

The two processes speak over the worker's standard input and output, in frames of one pickle each
(an 8-byte length first): a subprocess pipe works alike on Linux, macOS and Windows, and
`python -m serving.worker` imports nothing of the app (multiprocessing's spawn would re-run the
server's main module). Only this package's own server writes to the worker, so its pickles are
trusted as the server's own objects are.
"""

import itertools
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

__all__ = ["GiveWay", "WorkerDied", "WorkerProcess"]

# Seconds a stopped run has to end between two events before its worker is killed (and a new one
# started for the next run, which then loads its data again).
STOP_WAIT_S = 10.0
ROOT = Path(__file__).resolve().parent.parent
LENGTH = struct.Struct("<Q")


class WorkerDied(RuntimeError):
    """The training process ended in the middle of a run (killed, or out of memory)."""


class GiveWay:
    """Answers go ahead of training, and training keeps its share: while photos are being
    classified (`answers`), `after_step` waits, but never longer than `share` of the trainer's own
    time: after a step of s seconds, at most s × share / (1 − share)."""

    def __init__(self):
        self._answers = 0
        self._changed = threading.Condition()
        self.waited_s = 0.0  # in all, since it was made

    def answers(self, count: int) -> None:
        with self._changed:
            self._answers = count
            self._changed.notify_all()

    def after_step(self, step_s: float, share: float) -> None:
        with self._changed:
            if share <= 0 or not self._answers:
                return
            start = time.monotonic()
            self._changed.wait_for(lambda: not self._answers, timeout=step_s * share / (1 - share))
            self.waited_s += time.monotonic() - start


def write_frame(stream: BinaryIO, message: tuple) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(LENGTH.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: BinaryIO) -> tuple | None:
    """The next message, or None where the other side has closed its end."""
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    data = stream.read(LENGTH.unpack(head)[0])
    return pickle.loads(data)


class WorkerProcess:
    """The server's side of one training worker: `events` trains a comparison there and yields its
    events; `answers` tells it how many photos are being classified."""

    def __init__(self):
        self._process: subprocess.Popen | None = None
        self._inbox: queue.Queue = queue.Queue()  # (run id, kind, payload) from the worker
        self._write_lock = threading.Lock()
        self._environment: dict[str, str] = {}
        self._held: dict[str, tuple] = {}  # dataset name → the splits the worker holds
        self._runs = itertools.count(1)
        self.gave_way_s = 0.0  # how long the worker gave way to answers during its last run

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    def events(self, configs: list, lockstep: bool, share: float) -> Iterator:
        """Train the comparison in the worker, yielding the engine's events as they come; closing
        the iterator stops the run."""
        from training.devices import resolve_device, resolve_precision

        # The server decides the precision: what it reads of the host is what its runs are keyed by.
        configs = [replace(c, precision=resolve_precision(c.precision, resolve_device(c.device))) for c in configs]
        run = next(self._runs)
        self.start()
        datasets = self._datasets_to_send(configs)
        self._send(("train", run, configs, lockstep, datasets, share))
        ended = False
        try:
            while True:
                number, kind, payload = self._inbox.get()
                if kind == "died":
                    ended = True
                    raise WorkerDied(f"The training process ended in the middle of the run (exit code {payload}); the next run starts a new one.")
                if number != run:
                    continue  # the end of a run stopped earlier
                if kind == "event":
                    yield payload
                    continue
                ended = True
                if kind == "error":
                    raise payload
                self.gave_way_s = payload
                return
        finally:
            if not ended:
                self._stop(run)

    def _datasets_to_send(self, configs: list) -> dict:
        """The splits of the run's datasets the worker does not hold yet (the server's own loaded
        copies: the run's data fetch loaded them); it keeps the built-in ones."""
        from training.datasets import list_datasets, load_splits

        sending = {}
        for name in dict.fromkeys(c.dataset for c in configs):
            splits = load_splits(name)
            if any(a is not b for a, b in zip(splits, self._held.get(name, (None, None)))):
                sending[name] = splits
                if name in list_datasets():
                    self._held[name] = splits
        return sending

    def answers(self, count: int) -> None:
        """Tell the worker how many photos are being classified now."""
        if self.pid is not None:
            try:
                self._send(("answers", count))
            except OSError:
                pass  # it has just died: its run reports that

    def close(self, wait_s: float = STOP_WAIT_S) -> None:
        """End the worker: closing its input ends it between two events; else it is killed."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.stdin.close()
            process.wait(wait_s)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    def start(self) -> None:
        """A worker running in the server's present environment: a new one where that changed."""
        environment = dict(os.environ)
        if self.pid is not None and environment == self._environment:
            return
        self.close()
        self._environment = environment
        path = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
        process = subprocess.Popen([sys.executable, "-m", "serving.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**environment, "PYTHONPATH": path})
        self._process, self._inbox, self._held = process, queue.Queue(), {}
        threading.Thread(target=self._listen, args=(process, self._inbox), name="worker-listener", daemon=True).start()

    def _listen(self, process: subprocess.Popen, inbox: queue.Queue) -> None:
        try:
            while (message := read_frame(process.stdout)) is not None:
                inbox.put(message)
        except (OSError, EOFError, pickle.UnpicklingError):
            log.exception("the training worker's output could not be read")
        inbox.put((None, "died", process.wait()))

    def _send(self, message: tuple) -> None:
        with self._write_lock:
            write_frame(self._process.stdin, message)

    def _stop(self, run: int) -> None:
        """Ask the run to stop and wait for its end; a worker that does not answer is killed."""
        try:
            self._send(("stop", run))
        except OSError:
            return
        deadline = time.monotonic() + STOP_WAIT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                number, kind, _ = self._inbox.get(timeout=left)
            except queue.Empty:
                break
            if kind == "died" or (number == run and kind != "event"):
                return
        log.warning("the training worker did not stop its run within %.0f s: killed", STOP_WAIT_S)
        self.close(wait_s=0)


def serve(commands: BinaryIO, replies: BinaryIO) -> None:
    """The worker's loop: train each comparison asked for, one at a time, replying with its events."""
    from training.datasets import forget_dataset, list_datasets, register_dataset
    from training.engine import Finished, compare

    runs: queue.Queue = queue.Queue()
    stopped: set[int] = set()
    closing = threading.Event()
    give_way = GiveWay()
    reply_lock = threading.Lock()

    def reply(message: tuple) -> None:
        with reply_lock:
            write_frame(replies, message)

    def listen() -> None:  # the server's messages, read as they come, beside the training
        while (message := read_frame(commands)) is not None:
            if message[0] == "train":
                runs.put(message[1:])
            elif message[0] == "stop":
                stopped.add(message[1])
            elif message[0] == "answers":
                give_way.answers(message[1])
        closing.set()  # the server closed our input: end, between two events
        runs.put(None)

    threading.Thread(target=listen, name="worker-commands", daemon=True).start()
    while (request := runs.get()) is not None:
        run, configs, lockstep, datasets, share = request
        for train, evaluation in datasets.values():
            register_dataset(train, evaluation)
        waited, stepped = give_way.waited_s, time.monotonic()
        events = compare(configs, lockstep=lockstep)
        try:
            for event in events:
                if isinstance(event, Finished):
                    event = replace(event, model=event.model.cpu())  # the server answers on its CPU
                reply((run, "event", event))
                if run in stopped or closing.is_set():
                    break
                give_way.after_step(time.monotonic() - stepped, share)
                stepped = time.monotonic()
            reply((run, "finished", give_way.waited_s - waited))
        except Exception as error:
            error.add_note("In the training worker:\n" + "".join(traceback.format_exception(error)))  # for the server's log
            reply((run, "error", sendable(error)))
        finally:
            events.close()
            stopped.discard(run)
            for name in set(datasets) - set(list_datasets()):  # a student's photos: for this run only
                forget_dataset(name)


def sendable(error: Exception) -> Exception:
    """The error itself where it survives the pipe, else a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def main() -> None:
    """Our standard output carries the replies alone: anything printed goes to standard error."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    if sys.platform == "win32":  # no newline translation in the frames
        import msvcrt

        msvcrt.setmode(replies.fileno(), os.O_BINARY)
        msvcrt.setmode(sys.stdin.fileno(), os.O_BINARY)
    logging.basicConfig(level=logging.WARNING)
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
