"""A student's own photos as a dataset: checked, decoded in memory, split, and registered for
one browser session only.

Photos arrive either as a `.zip` with one folder per class or as named classes of uploaded
photos. Every refusal is a `PhotoSetError` whose message says what to change; every photo is
read the way the classify boxes read one (`demo.uploads.read_photo`), and a photo that cannot be
used is skipped and named, with the reason. Nothing is written to disk: the zip is read in
memory and the upload deleted, and the decoded tensors live in the dataset registry under the
session's own name until the session ends (`forget`), or until more sessions than
`MAX_SESSIONS_HELD` have sent photos since.
"""

import io
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from demo.uploads import OverBudget, PhotoError, PixelBudget, consume, read_photo, read_upload
from serving.classroom import classroom
from serving.sessions import Session
from training.datasets import FOLDER_STORED_SIZE, DatasetSpec, forget_dataset, hold_out, photo_dataset, register_dataset
from training.images import IMAGE_SUFFIXES, square_rgb

MIN_CLASSES, MAX_CLASSES = 2, 10
MIN_PHOTOS_PER_CLASS = 5
MAX_FILES = 600  # photos in one upload, all classes together
MAX_TOTAL_BYTES = 100 * 2**20  # uncompressed, all files together
MAX_ZIP_BYTES = MAX_TOTAL_BYTES  # the zip itself, as sent (app.py: Gradio's limit on any upload)
# A zip whose members expand more than this many times their compressed size is refused as a
# zip bomb before anything is extracted (photos barely compress: JPEGs and PNGs stay near 1×).
MAX_COMPRESSION_RATIO = 50
# Pixels one upload may decode, all its photos together, at the size each is decoded at (a JPEG
# at an eighth of its sides where that still covers 512 pixels): 600 phone photos as JPEGs come to
# about 160; the same as 3-megapixel PNGs to 1,800, some 20 s of a 2-core server's time.
MAX_MEGAPIXELS = 300
# Sessions whose photos are held at once, each up to MAX_FILES photos at 256×256 (118 MB decoded):
# a classroom of 30 fits, and past that the session that sent its photos longest ago loses them
# first, so no number of sessions can fill the server's memory.
MAX_SESSIONS_HELD = 32


DATASET_PREFIX = "your-images-"
GONE = "That upload is no longer on the server (each upload is deleted once it is read): send it again."


class PhotoSetError(ValueError):
    """Why a set of photos cannot be trained on; the message says what to change."""


@dataclass
class PhotoSet:
    """Decoded photos of 2–10 classes, and the files that were left out with the reason."""

    classes: tuple[str, ...]
    images: torch.Tensor  # N, 3, 224, 224 uint8
    labels: torch.Tensor  # N int64, sorted by class
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    def summary(self) -> str:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        taken = ", ".join(f"{name} {count}" for name, count in zip(self.classes, counts))
        lines = [f"**Took {len(self.labels)} photos** in {len(self.classes)} classes ({taken})."]
        if self.skipped:
            lines.append(f"**Skipped {len(self.skipped)} file(s):** " + "; ".join(f"`{name}`: {why}" for name, why in self.skipped[:20]))
        return "\n\n".join(lines)


def check_class_names(names: list[str]) -> tuple[str, ...]:
    names = [name.strip() for name in names]
    if any(not name for name in names):
        raise PhotoSetError("Every class needs a name.")
    lowered = [name.lower() for name in names]
    duplicates = sorted({name for name in names if lowered.count(name.lower()) > 1})
    if duplicates:
        raise PhotoSetError(f"Two classes have the same name ({', '.join(duplicates)}): give every class its own name.")
    if not MIN_CLASSES <= len(names) <= MAX_CLASSES:
        raise PhotoSetError(f"Give {MIN_CLASSES} to {MAX_CLASSES} classes; this upload has {len(names)}: {', '.join(names) or 'none'}.")
    return tuple(names)


def decode(files: dict[str, list[tuple[str, bytes]]]) -> PhotoSet:
    """Class name → [(file name, bytes)] as a PhotoSet, with every photo squared to 224×224."""
    classes = check_class_names(list(files))
    if sum(len(members) for members in files.values()) > MAX_FILES:
        raise PhotoSetError(f"That is {sum(len(m) for m in files.values())} files; at most {MAX_FILES} in all, please.")
    images, labels, skipped = [], [], []
    budget = PixelBudget(MAX_MEGAPIXELS)
    for label, name in enumerate(classes):
        for file_name, data in files[name]:
            if PurePosixPath(file_name).suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((file_name, "not a photo (PNG, JPEG, BMP or WebP)"))
                continue
            try:
                images.append(square_rgb(read_photo(io.BytesIO(data), len(data), budget), FOLDER_STORED_SIZE))
                labels.append(label)
            except PhotoError as error:
                skipped.append((file_name, str(error)))
            except OverBudget as error:
                raise PhotoSetError(str(error)) from None
    counts = np.bincount(labels, minlength=len(classes))
    short = [f"{name} ({count})" for name, count in zip(classes, counts) if count < MIN_PHOTOS_PER_CLASS]
    if short:
        raise PhotoSetError(f"Every class needs at least {MIN_PHOTOS_PER_CLASS} readable photos; too few in: {', '.join(short)}.")
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return PhotoSet(classes, pixels, torch.tensor(labels), skipped)


def from_zip(path: str) -> PhotoSet:
    """A zip with one folder per class (optionally all inside one top folder), read in memory."""
    try:
        data = io.BytesIO(read_upload(path, MAX_ZIP_BYTES))
    except PhotoError as error:
        raise PhotoSetError(str(error)) from None
    except FileNotFoundError:
        raise PhotoSetError(GONE) from None
    if not zipfile.is_zipfile(data):
        raise PhotoSetError("That file is not a .zip archive.")
    with zipfile.ZipFile(data) as archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not PurePosixPath(m.filename).name.startswith(".")]
        members = [m for m in members if "__MACOSX" not in PurePosixPath(m.filename).parts]
        for member in members:
            parts = PurePosixPath(member.filename).parts
            if member.filename.startswith("/") or ".." in parts or "\\" in member.filename:
                raise PhotoSetError(f"The zip holds a path that leaves its folder ({member.filename!r}); it was refused unread.")
        if len(members) > MAX_FILES:
            raise PhotoSetError(f"The zip holds {len(members)} files; at most {MAX_FILES}, please.")
        if sum(m.file_size for m in members) > MAX_TOTAL_BYTES:
            raise PhotoSetError(f"The zip expands to more than {MAX_TOTAL_BYTES // 2**20} MB; send fewer or smaller photos.")
        if any(m.file_size > MAX_COMPRESSION_RATIO * max(m.compress_size, 1) for m in members):
            raise PhotoSetError("The zip expands far beyond its size (a zip bomb); it was refused unread.")
        paths = [PurePosixPath(m.filename) for m in members]
        # A zip of a folder wraps the class folders in one top folder: look inside it.
        top = {p.parts[0] for p in paths}
        strip = 1 if len(top) == 1 and all(len(p.parts) >= 3 for p in paths) else 0
        files: dict[str, list[tuple[str, bytes]]] = {}
        for member, path in zip(members, paths):
            parts = path.parts[strip:]
            if len(parts) != 2:
                where = "at the top level" if len(parts) < 2 else f"in a nested folder ({'/'.join(parts[:-1])})"
                raise PhotoSetError(f"Put every photo in a folder named after its class, one level deep; {path} is {where}.")
            data = archive.read(member)  # the sizes were checked above; a lying header fails the CRC check here
            files.setdefault(parts[0], []).append((str(path), data))
        folders = [PurePosixPath(m.filename).parts for m in archive.infolist() if m.is_dir()]
    empty = sorted({parts[strip] for parts in folders if len(parts) == strip + 1} - set(files))
    if empty:
        raise PhotoSetError(f"These class folders are empty: {', '.join(empty)}.")
    return decode(files)


def from_photos(named: list[tuple[str, list[str]]]) -> PhotoSet:
    """(class name, uploaded photo paths) pairs as a PhotoSet; empty rows are ignored."""
    named = [(name, paths or []) for name, paths in named if (name or "").strip() or paths]
    paths = [p for _, ps in named for p in ps]
    if len(paths) > MAX_FILES:
        raise PhotoSetError(f"That is {len(paths)} files; at most {MAX_FILES} in all, please.")
    if sum(os.path.getsize(p) for p in paths if os.path.exists(p)) > MAX_TOTAL_BYTES:  # one another's identical upload took is in memory
        raise PhotoSetError(f"These photos come to more than {MAX_TOTAL_BYTES // 2**20} MB; send fewer or smaller ones.")
    try:
        return decode({name.strip(): [(Path(p).name, read_upload(p, MAX_TOTAL_BYTES)) for p in ps] for name, ps in named})
    except FileNotFoundError:
        raise PhotoSetError(GONE) from None
    finally:
        for path in paths:
            consume(path)  # read into memory: no copy stays on disk


def register(photos: PhotoSet, session: str, seed: int) -> DatasetSpec:
    """Split the photos into train and validation by class with `seed` and register them under
    this session's name; returns the dataset's spec."""
    name = dataset_name(session)
    train, validation = hold_out(photos.images, photos.labels, photo_dataset(name, "your photos", photos.classes), seed)
    register_dataset(train, validation)
    holder = classroom.sessions.get(session)
    holder.photos, holder.photos_at = name, time.monotonic()
    for oldest in classroom.sessions.holding_photos()[:-MAX_SESSIONS_HELD]:
        forget(oldest.photos)
    return train.spec


def forget(name: str) -> None:
    """Drop a session's photos (a name from `dataset_name`); nothing happens if they are gone."""
    holder = classroom.sessions.find(name.removeprefix(DATASET_PREFIX))
    if holder and holder.photos == name:
        holder.photos = None
    forget_dataset(name)


def forget_held(session: Session) -> None:
    """A session ended: its photos go with it."""
    if session.photos:
        forget(session.photos)


classroom.sessions.on_end(forget_held)


def dataset_name(session: str) -> str:
    return f"{DATASET_PREFIX}{session}"
