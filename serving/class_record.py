"""The class record: every finished comparison a class runs on this server (trained here, on
ZeroGPU, or replayed), so that a tab can show the class's own spread at the same settings and a
teacher can see what the class found.

A row is one student's finished run: the experiment, its settings (a key without the seed, device
and precision, which repeat runs may change; the arms' JSON is kept once per key), the seed,
precision and device, each arm's test accuracy, the first lesson's margin, the verdict's outcome and the
student's prediction. No name, session or address is stored: students see the class's results,
never another student's session. It is an SQLite file in CNNLAB_CLASS_DIR (default: `class`
under the app's cache folder), kept to MAX_RUNS rows (the oldest go first); what one session or
one client address may add is bounded too, since a replay costs nothing to ask for. Anything it
cannot parse or write is refused with a line in the log: the page that finished the run never
fails for it.

On a Space, whose disk is wiped at each restart, CNNLAB_CLASS_REPO names a Hub dataset repo that
keeps it: a consistent copy of the file (SQLite's backup) is committed every CNNLAB_CLASS_SYNC_MIN
minutes by huggingface_hub's CommitScheduler, and read back at start when the disk has none.
"""

import datetime
import functools
import hashlib
import hmac
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitScheduler, hf_hub_download

from serving.lru import BoundedLRU
from training.experiments import get_experiment
from training.lessons import UNMEASURED_FIELDS, margin, with_new_settings
from training.sources import cache_dir

log = logging.getLogger(__name__)

FILE_NAME = "class.sqlite"
# Rows kept: a term of a class of thirty running twenty comparisons a lesson, in a few MB.
MAX_RUNS = int(os.environ.get("CNNLAB_CLASS_MAX_RUNS", 20_000))
# What one browser session may add (a lesson's worth of runs many times over), and one client
# address in an hour (a class of thirty behind one school address, each at that pace).
MAX_RUNS_PER_SESSION = 100
MAX_RUNS_PER_CLIENT_HOUR = 1_500
REMEMBERED = 1024  # sessions and addresses whose counts are kept
PREDICTIONS = ("ahead", "behind", "unclear")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    finished_at TEXT NOT NULL,   -- ISO 8601, UTC
    experiment TEXT NOT NULL,
    settings TEXT NOT NULL,      -- settings_key(): equal for repeat runs of the same settings
    seed INTEGER NOT NULL,
    precision TEXT NOT NULL,
    device TEXT NOT NULL,
    accuracies TEXT NOT NULL,    -- arm label → test accuracy (0–1), JSON
    margin REAL,                 -- the first lesson's margin, points
    outcome TEXT,                -- the verdict's: ahead, behind or unclear
    prediction TEXT              -- the student's, in the same words; NULL where none
);
CREATE INDEX IF NOT EXISTS runs_at_settings ON runs (settings);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    arms TEXT NOT NULL           -- the arms' settings, JSON
);
"""


@dataclass(frozen=True)
class ClassRun:
    """One finished run in the record."""

    finished_at: str
    experiment: str
    settings: str
    seed: int
    precision: str
    device: str
    accuracies: dict[str, float]
    margin: float | None
    outcome: str | None
    prediction: str | None

    @property
    def training(self) -> tuple:
        """What makes two rows the same training: students who ran (or replayed) it are one run."""
        return self.seed, self.precision, self.device


def settings_key(experiment_name: str, configs: list[dict]) -> str:
    """A digest of an experiment's arms without what repeat runs may change (seed, device,
    precision): equal for two runs at the same settings."""
    arms = sorted(({k: v for k, v in with_new_settings(c).items() if k not in UNMEASURED_FIELDS} | {"label": c["label"]} for c in configs), key=lambda arm: arm["label"])
    floats = [{k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in arm.items()} for arm in arms]  # lr 1 is lr 1.0
    return hashlib.sha256(json.dumps([experiment_name, floats], sort_keys=True).encode()).hexdigest()[:16]


def parsed(results: dict) -> dict:
    """A finished run's row, or a ValueError that says what does not parse."""
    try:
        experiment = get_experiment(results["experiment"])
        runs = [run for run in results["runs"] if "test_acc" in run]
        accuracies = {str(run["label"]): float(run["test_acc"]) for run in runs}
        configs = [dict(run["config"]) for run in runs]
        seed, precision, device = int(results["seed"]), str(results["precision"]), str(results["device_name"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a finished run's results ({type(error).__name__}: {error})") from None
    if not accuracies or not all(0 <= a <= 1 for a in accuracies.values()):
        raise ValueError("no arm with a test accuracy between 0 and 1")
    first = margin(experiment.lessons[0], accuracies) if experiment.lessons else None
    return {
        "experiment": experiment.name, "settings": settings_key(experiment.name, configs), "arms": json.dumps(configs), "seed": seed, "precision": precision, "device": device, "accuracies": json.dumps(accuracies), "margin": first,
    }


class ClassRecord:
    """The record in `folder` (made if missing), thread-safe: every session's thread writes to it."""

    def __init__(self, folder: Path, max_runs: int = MAX_RUNS):
        self.folder, self.max_runs = Path(folder), max_runs
        self.path = self.folder / FILE_NAME
        self._lock = threading.Lock()
        self._by_session = BoundedLRU(REMEMBERED)  # session → runs it added
        self._by_client = BoundedLRU(REMEMBERED)  # address → when its runs of the last hour came (monotonic)
        self.version = 0  # changes at every write: a copy for the Hub is made only when it did

    @contextmanager
    def _database(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction, under the lock; a file that is not a database is moved
        aside (kept for whoever wants to look) and a new one begun."""
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                connection = self._open()
            except sqlite3.DatabaseError:
                aside = self.path.with_suffix(f".unreadable-{int(time.time())}")
                log.error("the class record %s is not a database; moved to %s, and a new one begun", self.path, aside)
                self.path.rename(aside)
                connection = self._open()
            with closing(connection), connection:
                yield connection

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=10)
        connection.row_factory = sqlite3.Row
        connection.executescript(SCHEMA)
        return connection

    def add(self, results: dict, session: str | None = None, client: str | None = None) -> int | None:
        """Record a finished run; its row id, or None where it was refused (it does not parse, its
        session or address added too many, or the disk failed), which the log says."""
        try:
            row = parsed(results)
            self._count(session, client)
            arms = row.pop("arms")
            with self._database() as db:
                db.execute("INSERT OR IGNORE INTO settings (key, arms) VALUES (?, ?)", (row["settings"], arms))
                cursor = db.execute(
                    "INSERT INTO runs (finished_at, experiment, settings, seed, precision, device, accuracies, margin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), *row.values()),
                )
                if db.execute("DELETE FROM runs WHERE id <= ?", (cursor.lastrowid - self.max_runs,)).rowcount:
                    db.execute("DELETE FROM settings WHERE NOT EXISTS (SELECT 1 FROM runs WHERE runs.settings = settings.key)")
                self.version += 1
                return cursor.lastrowid
        except (ValueError, PermissionError, sqlite3.Error, OSError) as error:
            log.warning("a finished run was not added to the class record: %s", error)
            return None

    def _count(self, session: str | None, client: str | None) -> None:
        """A PermissionError where this session or address has added its share."""
        if session:
            added = self._by_session.get(session, 0)
            if added >= MAX_RUNS_PER_SESSION:
                raise PermissionError(f"session has added {added} runs")
            self._by_session[session] = added + 1
        if client:
            now = time.monotonic()
            recent = [t for t in self._by_client.get(client, []) if now - t < 3600]
            if len(recent) >= MAX_RUNS_PER_CLIENT_HOUR:
                raise PermissionError(f"{len(recent)} runs came from one address in the last hour")
            self._by_client[client] = [*recent, now]

    def settle(self, run_id: int | None, outcome: str | None = None, prediction: str | None = None) -> None:
        """Set a recorded run's verdict outcome, or the prediction its student made (once)."""
        if run_id is None or (outcome and outcome not in PREDICTIONS) or (prediction and prediction not in PREDICTIONS):
            return
        try:
            with self._database() as db:
                if outcome:
                    db.execute("UPDATE runs SET outcome = ? WHERE id = ?", (outcome, run_id))
                if prediction:
                    db.execute("UPDATE runs SET prediction = ? WHERE id = ? AND prediction IS NULL", (prediction, run_id))
                self.version += 1
        except (sqlite3.Error, OSError) as error:
            log.warning("the class record was not updated: %s", error)

    def runs(self, experiment_name: str | None = None, settings: str | None = None) -> list[ClassRun]:
        """The recorded runs, oldest first: all, an experiment's, or those at one setting of it."""
        where = " AND ".join(clause for clause, value in (("experiment = ?", experiment_name), ("settings = ?", settings)) if value)
        values = [value for value in (experiment_name, settings) if value]
        try:
            with self._database() as db:
                rows = db.execute(f"SELECT * FROM runs {'WHERE ' + where if where else ''} ORDER BY id", values).fetchall()
        except (sqlite3.Error, OSError) as error:
            log.warning("the class record could not be read: %s", error)
            return []
        return [class_run(row) for row in rows]

    def arms(self, settings: str) -> list[dict]:
        """The arms' settings recorded under a settings key ([] where none are)."""
        try:
            with self._database() as db:
                found = db.execute("SELECT arms FROM settings WHERE key = ?", (settings,)).fetchone()
        except (sqlite3.Error, OSError) as error:
            log.warning("the class record could not be read: %s", error)
            return []
        return json.loads(found["arms"]) if found else []

    def clear(self) -> int:
        """Delete every run; how many there were."""
        with self._database() as db:
            deleted = db.execute("DELETE FROM runs").rowcount
            db.execute("DELETE FROM settings")
            self.version += 1
        self._by_session.clear()
        self._by_client.clear()
        return deleted

    def copy_to(self, destination: Path) -> None:
        """A consistent copy of the record, made while others write (SQLite's online backup)."""
        with self._database() as db, closing(sqlite3.connect(destination)) as copy:
            db.backup(copy)


def class_run(row: sqlite3.Row) -> ClassRun:
    values = dict(row)
    return ClassRun(
        values["finished_at"], values["experiment"], values["settings"], values["seed"], values["precision"], values["device"], json.loads(values["accuracies"]), values["margin"], values["outcome"], values["prediction"],
    )


def distinct_trainings(runs: list[ClassRun]) -> list[ClassRun]:
    """One row per training (seed, precision, device), the latest: runs are deterministic, so a
    replay adds a student, not a sample of the seed's spread."""
    return list({run.training: run for run in runs}.values())


class HubCopy(CommitScheduler):
    """Commits a consistent copy of the record to a Hub dataset repo every few minutes, only when
    the record changed (CommitScheduler uploads the files of a folder whose times changed)."""

    def __init__(self, record: ClassRecord, **scheduler):
        self.record, self.copied = record, None
        super().__init__(folder_path=record.folder / "hub", repo_type="dataset", private=True, allow_patterns=[FILE_NAME], **scheduler)

    def push_to_hub(self):
        version = self.record.version
        if version != self.copied:
            with self.lock:
                self.record.copy_to(self.folder_path / FILE_NAME)
            self.copied = version
        return super().push_to_hub()


def restore_from_hub(record: ClassRecord, repo_id: str, token: str | None = None) -> bool:
    """At start, where the disk has no record: the Hub's copy, if the repo has one."""
    if record.path.exists():
        return False
    try:
        copy = hf_hub_download(repo_id, FILE_NAME, repo_type="dataset", token=token)
    except Exception as error:  # no copy yet, no network, no access: start empty, and say why
        log.warning("the class record was not read from %s: %s", repo_id, error)
        return False
    record.folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(copy, record.path)
    return True


@functools.cache
def class_record() -> ClassRecord:
    """This server's record, kept on the Hub too where CNNLAB_CLASS_REPO names a dataset repo."""
    record = ClassRecord(Path(os.environ.get("CNNLAB_CLASS_DIR", cache_dir() / "class")))
    repo_id = os.environ.get("CNNLAB_CLASS_REPO")
    if repo_id:
        restore_from_hub(record, repo_id)
        try:
            HubCopy(record, repo_id=repo_id, every=float(os.environ.get("CNNLAB_CLASS_SYNC_MIN", 5)))
        except Exception as error:  # the record still works on this disk
            log.error("the class record will not be kept on the Hub (%s): %s", repo_id, error)
    return record


def teacher_key_set() -> bool:
    return bool(os.environ.get("CNNLAB_TEACHER_KEY"))


def clear_with_key(record: ClassRecord, given: str) -> int:
    """Clear the record for whoever gives the teacher key (CNNLAB_TEACHER_KEY, a Space secret): how
    many runs went. A PermissionError where no key is set or this one is not it."""
    key = os.environ.get("CNNLAB_TEACHER_KEY", "")
    if not key:
        raise PermissionError("No teacher key is set on this server, so nobody can clear the record.")
    if not hmac.compare_digest((given or "").encode(), key.encode()):
        raise PermissionError("That is not this server's teacher key: nothing was cleared.")
    return record.clear()
