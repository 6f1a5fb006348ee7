"""A disk cache of finished comparisons: our runs are deterministic, so a request identical to one
already run is answered with that run's curves and models instead of a second training.

A run is identical when the experiment, every arm's settings, the data it reads, the code, the
device kind and the precision all match (`run_key`). An entry is a folder under
CNNLAB_CACHE/runs/<key>: the results JSON, each arm's model as a `save_pretrained` folder, and a
manifest of every file's SHA-256, written last. Entries are written into a temporary folder and
renamed into place (a rename is atomic), so a reader sees a whole entry or none; one whose files
do not match their manifest (a truncated write, a flipped byte) is dropped and the run trained
again. The folder is bounded in size (CNNLAB_RUN_CACHE_MB): the entry read longest ago goes first.

The models are kept, not retrained on demand, so that a replayed run classifies photos and
downloads at once. The quick preset's models weigh at most 2 MB per arm; the largest, the
Transfer tab's two AlexNets, 460 MB for both.
"""

import datetime
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from models import model_class
from models.checkpoint import CheckpointError, load_pretrained
from training.datasets import data_source
from training.sources import cache_dir
from training.config import TrainConfig
from serving.lru import BoundedLRU
from training.devices import device_name, resolve_device, resolve_precision
from training.results import code_version
from training.runner import folder_name

log = logging.getLogger(__name__)

# The default bound of the cache folder, in MB: a few Transfer runs and hundreds of quick ones. 0
# turns reuse off: every request trains (the load test's baseline).
DEFAULT_MB = 2048
# Weights of the entries read back kept in memory, so that thirty replays of one run share one copy
# of its models: two Transfer runs (460 MB each), or hundreds of quick ones.
LOADED_BYTES = int(float(os.environ.get("CNNLAB_RUN_CACHE_LOADED_MB", 1024)) * 2**20)
# A write's temporary folder untouched this long was left by a writer that died: the largest entry
# (two AlexNets, 460 MB) is written in seconds.
UNFINISHED_AFTER_S = 600
FLOAT_SETTINGS = {f.name for f in fields(TrainConfig) if "float" in str(f.type)}


def max_bytes() -> int:
    return int(float(os.environ.get("CNNLAB_RUN_CACHE_MB", DEFAULT_MB)) * 2**20)


def device_kind(device: torch.device) -> str:
    """The device as far as it changes a run's numbers: an accelerator's model, or a CPU's instruction set."""
    if device.type == "cpu":
        return f"cpu:{torch.backends.cpu.get_cpu_capability()}"
    return f"{device.type}:{device_name(device)}"


def run_key(experiment: str, configs: list[TrainConfig]) -> str | None:
    """The key of the run these arms make, or None when it cannot be reused (a dataset held only in
    memory: a browser session's own photos are neither kept nor shared)."""
    sources = {c.dataset: data_source(c.dataset) for c in configs}
    if None in sources.values():
        return None
    device = resolve_device(configs[0].device)

    def settings(config: TrainConfig) -> dict:
        values = asdict(config)
        # An int where a float is meant (lr 1 for 1.0) is the same setting; the device is named by its kind.
        values |= {name: float(values[name]) for name in FLOAT_SETTINGS if isinstance(values[name], int)}
        return values | {"device": None, "precision": resolve_precision(config.precision, device)}

    payload = {"experiment": experiment, "arms": [settings(c) for c in configs], "data": sources, "code": code_version(), "device": device_kind(device)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class CachedRun:
    results: dict  # the results JSON (training.results)
    models: dict[str, nn.Module]  # by arm, on the CPU
    finished_at: datetime.datetime  # UTC

    @property
    def weight_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for model in self.models.values() for t in model.state_dict().values())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


class RunCache:
    """Finished runs by `run_key`, on disk under `folder` and, the last few read, in memory."""

    def __init__(self, folder: Path | None = None, limit_bytes: int | None = None):
        self.folder = Path(folder or cache_dir() / "runs")
        self.limit_bytes = max_bytes() if limit_bytes is None else limit_bytes
        self._loaded: BoundedLRU = BoundedLRU(too_full=lambda loaded: sum(run.weight_bytes for run in loaded.values()) > LOADED_BYTES)  # key → CachedRun
        self._key_locks: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # key → _KeyLock, while someone reads it
        self._key_locks_lock = threading.Lock()
        self._remove_unfinished_writes()

    @property
    def enabled(self) -> bool:
        return self.limit_bytes > 0

    def _remove_unfinished_writes(self) -> None:
        """Temporary folders of writes that never finished: their writer was killed. A writer
        touches its folder with every file it writes, so one untouched for UNFINISHED_AFTER_S is
        abandoned (asking the OS whether its process lives is not portable: on Windows,
        `os.kill(pid, 0)` terminates that process)."""
        for partial in self.folder.glob(".partial-*"):
            try:
                abandoned = time.time() - partial.stat().st_mtime > UNFINISHED_AFTER_S
            except OSError:
                continue  # renamed into place, or removed, meanwhile
            if abandoned:
                shutil.rmtree(partial, ignore_errors=True)

    def get(self, key: str) -> CachedRun | None:
        """The finished run, or None (never stored, evicted, or found corrupt and dropped). Readers
        of one key wait for each other: thirty replays after a restart share one read from disk."""
        held = self._key_lock(key)  # kept alive while this reader holds it
        with held.lock:
            loaded = self._loaded.get(key)
            if loaded:
                self._loaded.touch(key)
                _touch(self.folder / key)
                return loaded
            entry = self.folder / key
            if not entry.is_dir():
                return None
            try:
                run = self._read(entry)
            except (OSError, ValueError, KeyError, CheckpointError) as error:
                log.warning("dropping the corrupt run-cache entry %s: %s", entry, error)
                shutil.rmtree(entry, ignore_errors=True)
                return None
            _touch(entry)
            self._loaded[key] = run
            return run

    def _key_lock(self, key: str) -> "_KeyLock":
        with self._key_locks_lock:
            held = self._key_locks.get(key)
            if held is None:
                held = self._key_locks[key] = _KeyLock()
            return held

    def _read(self, entry: Path) -> CachedRun:
        manifest = json.loads((entry / "manifest.json").read_text())
        for name, digest in manifest["files"].items():
            if _sha256(entry / name) != digest:
                raise ValueError(f"{name} does not match its manifest")
        results = json.loads((entry / "results.json").read_text())
        models = {}
        for run in results["runs"]:
            if run["label"] in manifest["models"]:
                models[run["label"]] = load_pretrained(model_class(run["config"]["model"]), str(entry / manifest["models"][run["label"]]))
        return CachedRun(results, models, datetime.datetime.fromisoformat(manifest["finished_at"]))

    def put(self, key: str, results: dict, models: dict[str, nn.Module], pinned: bool = False) -> bool:
        """Store a finished run; False when it could not be written (the disk full, say), which
        costs only a later training: the run itself is already with its students. A `pinned` run
        (a tab's defaults, trained by the warm-up) goes only after every other run: runs nobody
        else asks for cannot push out what a class's first clicks replay."""
        # Not kept in memory here: the sessions that trained the run hold its models already, and
        # keeping every run as it is written would keep the models of the last runs written
        # alive after their sessions let them go, though most runs are never replayed. A replay
        # reads the run back once and keeps it, for the replays after it.
        run = CachedRun(results, {label: model.cpu() for label, model in models.items()}, datetime.datetime.now(datetime.UTC))
        if (self.folder / key).is_dir():
            return True
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.folder))
        try:
            folders = {label: folder_name(label) or "model" for label in run.models}
            for label, model in run.models.items():
                model.save_pretrained(partial / folders[label])
            (partial / "results.json").write_text(json.dumps(results))
            files = {p.relative_to(partial).as_posix(): _sha256(p) for p in sorted(partial.rglob("*")) if p.is_file()}
            size = sum((partial / name).stat().st_size for name in files)
            if size > self.limit_bytes:
                raise OSError(f"the run needs {size / 2**20:.0f} MB, more than the cache's {self.limit_bytes / 2**20:.0f} MB")
            manifest = {"files": files, "models": folders, "finished_at": run.finished_at.isoformat(), "bytes": size, "pinned": pinned}
            (partial / "manifest.json").write_text(json.dumps(manifest))
            _fsync_tree(partial)  # closes every file too: Windows renames no folder with one open
            partial.rename(self.folder / key)
        except OSError as error:
            log.warning("the run %s was not cached: %s", key, error)
            shutil.rmtree(partial, ignore_errors=True)
            return False
        self._evict()
        return True

    def _evict(self) -> None:
        """Delete the entries read longest ago until the folder fits its bound, and what writers
        that died left behind."""
        self._remove_unfinished_writes()
        entries = []
        for entry in self.folder.iterdir():
            try:
                manifest = json.loads((entry / "manifest.json").read_text())
                entries.append((manifest.get("pinned", False), entry.stat().st_mtime, manifest["bytes"], entry))
            except (OSError, ValueError, KeyError):
                continue  # a partial write, or a corrupt entry that `get` drops
        total = sum(size for _, _, size, _ in entries)
        for _, _, size, entry in sorted(entries):  # unpinned first, each kind read longest ago first
            if total <= self.limit_bytes:
                break
            shutil.rmtree(entry, ignore_errors=True)
            self._loaded.pop(entry.name, None)
            total -= size


class _KeyLock:
    """A lock for one key, gone once nobody holds it (a plain lock takes no weak reference)."""

    __slots__ = ("lock", "__weakref__")

    def __init__(self):
        self.lock = threading.Lock()


def _touch(entry: Path) -> None:
    try:
        os.utime(entry)  # its mtime orders the eviction: least recently read first
    except OSError:
        pass


def _fsync_tree(folder: Path) -> None:
    """Flush every file of the entry to disk before its rename makes it visible."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "r+b") as file:  # Windows flushes only a file open for writing
                os.fsync(file.fileno())


def shared_cache() -> RunCache:
    """The cache that CNNLAB_CACHE and CNNLAB_RUN_CACHE_MB name now (one object per pair)."""
    return _cache_at(cache_dir() / "runs", max_bytes())


@functools.cache
def _cache_at(folder: Path, limit_bytes: int) -> RunCache:
    return RunCache(folder, limit_bytes)
