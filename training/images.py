"""Photos as square uint8 pixels, and folders of them as one uint8 tensor, decoded once.

`square_rgb` is the one way a photo becomes the size×size×3 array that datasets store and models
read, whether it is a file of a dataset folder (`load_image_folder`) or a photo uploaded to the
app (`training.loader.model_input`, the demo's photo sets), so a photo classified in the app is
seen exactly as the training photos were. This decoding is kept apart from the registry
(`training.datasets`), which says what a dataset is and where its files lie, and from the device
batches (`training.loader`), which both use it.

After airbench: a folder is decoded once into one uint8 tensor, in a thread pool, and the result
kept on disk, so no step and no later process decodes it again.
"""

import hashlib
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from training.sources import DatasetMissingError, activity_slot, cache_dir

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def square_rgb(image: Image.Image, size: int) -> np.ndarray:
    """An image as size×size×3 uint8: EXIF-rotated, RGB, shorter side resized, centre cropped."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


def _decode_file(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        return square_rgb(image, size)


def class_files(folder: Path) -> dict[str, list[Path]]:
    """Each sub-folder's image files, sorted, by sub-folder name."""
    return {
        entry.name: sorted(p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for entry in sorted(folder.iterdir())
        if entry.is_dir()
    }


def _decoded_cache_file(root: Path, size: int, files: list[Path]) -> Path:
    """Where a folder's decoded tensor is kept on disk: keyed by the folder, the size and every
    file's name, size and mtime, so that a changed photo is decoded afresh."""
    signature = hashlib.sha1(f"{root.resolve()}|{size}".encode())
    for path in files:
        stat = path.stat()
        signature.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return cache_dir() / f"{root.name}-{size}-{signature.hexdigest()[:20]}.pt"


def _decode_all(files: list[Path], size: int, title: str) -> np.ndarray:
    """The files as N,size,size,3 uint8, decoded in a thread pool when they are large.

    PIL releases the GIL while it decodes, so large photos decode in parallel. Tiny images are
    bound by Python's per-file overhead instead, where threads only fight over the GIL:
    CIFAR-10's 50,000 training JPEGs took 4.1 s in one thread and 6.6 s in two (2 cores).
    """
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    finished = itertools.count(1)  # shared by the threads: next() on it is atomic

    def decode_into(indices: range, report) -> None:
        for index in indices:
            try:
                images[index] = _decode_file(files[index], size)
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                raise DatasetMissingError(f"cannot read image {files[index]}: {error}") from None
            if (done := next(finished)) % 500 == 0:
                report(f"Decoding {len(files):,} images of {title}: {done:,}")

    workers = os.cpu_count() if size > 64 else 1
    with activity_slot() as report, ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(decode_into, [range(start, len(files), workers) for start in range(workers)], [report] * workers))
    return images


def load_image_folder(root: Path, size: int, classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode `root/<class>/*` into N,3,size,size uint8, and keep the result on disk, so that a new
    process (a CLI run, a restarted Space) loads it in a fraction of a second instead."""
    found = tuple(sorted(entry.name for entry in root.iterdir() if entry.is_dir()))
    if found != classes:
        raise DatasetMissingError(f"{root} must hold exactly the class folders {', '.join(classes)}; found {', '.join(found) or 'none'}")
    files, labels = [], []
    for label, name in enumerate(found):
        in_class = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += in_class
        labels += [label] * len(in_class)
    if not files:
        raise DatasetMissingError(f"{root} holds no images")
    cache_file = _decoded_cache_file(root, size, files)
    if cache_file.exists():
        try:
            return torch.load(cache_file)
        except (OSError, RuntimeError, EOFError):
            pass  # a torn or foreign file: decode again and overwrite it
    images = _decode_all(files, size, f"{root.parent.name}/{root.name}")
    decoded = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_suffix(f".{os.getpid()}.tmp")
        torch.save(decoded, partial)
        partial.replace(cache_file)  # atomic: a concurrent reader never sees half a file
    except OSError:
        # A read-only home, or (Windows) another process reading the file this would replace:
        # either costs only a later decode.
        partial.unlink(missing_ok=True)
    return decoded
