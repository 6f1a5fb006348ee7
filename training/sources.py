"""Where data lies and how it is fetched: DATA_DIR, the decoded-data cache folder, downloads of
dataset archives and checkpoints, `data_activity` (the progress line the app shows while a first
click waits for them), and `DatasetMissingError` for data that is not there.

After airbench, which keeps a dataset as one tensor on the device and feeds no worker processes:
this module only brings the files; `training.images` decodes them once, `training.datasets` says
which files make which dataset, and `training.loader` batches them on the device. A download
streams to a `.part` file renamed into place when whole, so an interrupted one is never taken
for the file.
"""

import itertools
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator
from urllib.request import urlopen

import torch

from models.checkpoint import foreign_digest


class DatasetMissingError(RuntimeError):
    """A dataset is absent or unreadable; the message says what to put where."""


def data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR", "./data"))


def cache_dir() -> Path:
    """Where decoded datasets are kept between processes (CNNLAB_CACHE, else ~/.cache/cnnlab)."""
    return Path(os.environ.get("CNNLAB_CACHE", Path.home() / ".cache" / "cnnlab"))


# What the data layer is fetching or decoding right now, one line per task ("Downloading
# CIFAR-10, 163 MB: 40%"): a plain record that the app shows while a first click waits for data.
_activity: dict[int, str] = {}
_activity_keys = itertools.count()  # one per task: an id() could be reused while a task runs


def data_activity() -> str:
    """What is being downloaded, unpacked or decoded now, or '' when nothing is."""
    return "; ".join(_activity.values())


@contextmanager
def activity_slot() -> Iterator[Callable[[str], None]]:
    """A slot in `data_activity` for one task; set it by calling the yielded function."""
    key = next(_activity_keys)
    try:
        yield lambda text: _activity.__setitem__(key, text)
    finally:
        _activity.pop(key, None)


def download_archive(url: str, folder: Path, title: str, md5: str | None = None) -> None:
    """Fetch an archive into `folder` and unpack it there (torchvision checks and extracts it),
    saying how far it has got in `data_activity`."""
    # torchvision is imported where it is used: importing it imports torch._dynamo too, over a
    # second of an app's cold start on a 2-core host, for pages that do not need it.
    from torchvision.datasets.utils import check_integrity, extract_archive

    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / url.rsplit("/", 1)[1]
    with activity_slot() as report:
        if not check_integrity(str(archive), md5):
            _fetch(url, archive, title, report)
            if not check_integrity(str(archive), md5):
                raise OSError(f"the download of {url} is corrupt (its checksum does not match); try again")
        report(f"Unpacking {title}…")
        extract_archive(str(archive), str(folder))


def download_checkpoint(url: str, title: str) -> None:
    """Fetch a checkpoint into torch's hub cache, where torchvision's weights look for it, saying
    how far it has got in `data_activity`; its file name's hash prefix is checked, as torch does."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with activity_slot() as report:
        _fetch(url, path, title, report)
    if foreign_digest(path):
        path.unlink()
        raise OSError(f"the download of {url} is corrupt (its hash does not match); try again")


def _fetch(url: str, path: Path, title: str, report: Callable[[str], None]) -> None:
    """Stream `url` to `path` (whole or not at all), reporting the share done."""
    partial = path.with_name(path.name + ".part")
    with urlopen(url, timeout=30) as response, open(partial, "wb") as out:
        total, done = int(response.headers.get("Content-Length") or 0), 0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            report(f"Downloading {title}, {total / 1e6:.0f} MB: {done / total:.0%}" if total else f"Downloading {title}: {done / 1e6:.0f} MB")
    partial.replace(path)
