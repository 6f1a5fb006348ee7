"""Datasets as uint8 tensors, decoded once per process, batched and augmented on the device.

After airbench: no per-sample `DataLoader` in the hot path. A dataset is decoded once (a thread
pool over the image files, or torchvision's pickled CIFAR-10 arrays) into one uint8 tensor and
cached; `BatchLoader` moves it to the training device once and cuts, flips, crops and
normalises whole batches there. Every random draw (subset, shuffle, crop, flip) comes from a
CPU generator seeded by the run's seed, so two loaders with the same seed yield the same
batches on any device.
"""

import hashlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.request import urlopen

import numpy as np
import torch
from PIL import Image, ImageOps

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
HYMENOPTERA_CLASSES = ("ants", "bees")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
HYMENOPTERA_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
# Ants/bees photos are stored at AlexNet's 224×224 (shorter side resized, centre cropped), so
# horizontal flips are their only augmentation: a frozen backbone then sees just two views of
# each photo, which feature extraction computes once (see FeatureLoader).
HYMENOPTERA_STORED_SIZE = 224


class DatasetMissingError(RuntimeError):
    """A dataset is absent or unreadable; the message says what to put where."""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything known about one dataset: its classes, how its images are stored and presented
    to a model, its splits and where it comes from. A model's output count and input size are
    read from here."""

    name: str  # what TrainConfig.dataset names
    title: str  # how the app and model cards name it
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stored_size: int  # images are kept as stored_size² uint8
    crop_size: int  # side of the model's input
    crop_padding: int  # training crops are taken from images padded by this much
    splits: tuple[str, str] = ("train", "test")  # the training split and the evaluation split
    train_size: int = 0  # images in the whole training split, known before loading it (budgets)
    source: str = ""  # where it is downloaded from, or the folder it is read from
    hub_id: str | None = None  # the Hugging Face Hub's copy, named in model cards


CIFAR10_DATASET = DatasetSpec(
    "cifar10", "CIFAR-10", CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, stored_size=32, crop_size=32, crop_padding=4,
    train_size=50_000, source=CIFAR10_URL, hub_id="uoft-cs/cifar10",
)
HYMENOPTERA_DATASET = DatasetSpec(
    "hymenoptera", "hymenoptera (ants vs bees, from the PyTorch transfer-learning tutorial)", HYMENOPTERA_CLASSES, IMAGENET_MEAN, IMAGENET_STD,
    stored_size=HYMENOPTERA_STORED_SIZE, crop_size=224, crop_padding=0, splits=("train", "val"), train_size=245, source=HYMENOPTERA_URL,
)


@dataclass
class ImageTensors:
    """A decoded dataset split."""

    images: torch.Tensor  # N, 3, stored_size, stored_size uint8
    labels: torch.Tensor  # N int64
    spec: DatasetSpec

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> "ImageTensors":
        return ImageTensors(self.images[indices], self.labels[indices], self.spec)


def data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR", "./data"))


def cache_dir() -> Path:
    """Where decoded datasets are kept between processes (CNNLAB_CACHE, else ~/.cache/cnnlab)."""
    return Path(os.environ.get("CNNLAB_CACHE", Path.home() / ".cache" / "cnnlab"))


def _cifar10_missing_message(root: Path, reason: str) -> str:
    return (
        f"CIFAR-10 was not found under {root} ({reason}). Put it there in either layout:\n"
        f"  1. torchvision's {root}/cifar-10-batches-py/ (the archive {CIFAR10_URL}, unpacked), or\n"
        f"  2. an image folder {root}/cifar10/{{train,test}}/<class>/*.png|jpg with the 10 class folders "
        f"{', '.join(CIFAR10_CLASSES)}.\n"
        "Set DATA_DIR to the folder that holds it."
    )


def _hymenoptera_missing_message(root: Path, reason: str) -> str:
    return (
        f"The ants vs bees data was not found under {root} ({reason}). Put it at "
        f"{root}/hymenoptera_data/{{train,val}}/{{ants,bees}}/*.jpg (the archive {HYMENOPTERA_URL}, unpacked). "
        "Set DATA_DIR to the folder that holds it."
    )


def square_rgb(image: Image.Image, size: int) -> np.ndarray:
    """An image as size×size×3 uint8: EXIF-rotated, RGB, shorter side resized, centre cropped."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


# What the data layer is fetching or decoding right now, one line per task ("Downloading
# CIFAR-10, 163 MB: 40%"): a plain record that the app shows while a first click waits for data.
_activity: dict[int, str] = {}
_activity_keys = itertools.count()  # one per task: an id() could be reused while a task runs


def data_activity() -> str:
    """What is being downloaded, unpacked or decoded now, or '' when nothing is."""
    return "; ".join(_activity.values())


@contextmanager
def _reporting():
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
    with _reporting() as report:
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
    with _reporting() as report:
        _fetch(url, path, title, report)
    prefix = torch.hub.HASH_REGEX.search(path.name)
    if prefix and not hashlib.sha256(path.read_bytes()).hexdigest().startswith(prefix.group(1)):
        path.unlink()
        raise OSError(f"the download of {url} is corrupt (its hash does not match); try again")


def _fetch(url: str, path: Path, title: str, report) -> None:
    """Stream `url` to `path` (whole or not at all), reporting the share done."""
    partial = path.with_name(path.name + ".part")
    with urlopen(url, timeout=30) as response, open(partial, "wb") as out:
        total, done = int(response.headers.get("Content-Length") or 0), 0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            report(f"Downloading {title}, {total / 1e6:.0f} MB: {done / total:.0%}" if total else f"Downloading {title}: {done / 1e6:.0f} MB")
    partial.replace(path)


def _decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        return square_rgb(image, size)


def model_input(image: Image.Image, spec: DatasetSpec) -> torch.Tensor:
    """One PIL image as the normalised 1×3×crop×crop batch a model of this dataset expects."""
    pixels = torch.from_numpy(square_rgb(image, spec.stored_size).copy()).permute(2, 0, 1)[None]
    return normalize(center_crop(pixels, spec.crop_size), spec.mean, spec.std)


def load_image_folder(root: Path, size: int, classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode `root/<class>/*` into N,3,size,size uint8.

    PIL releases the GIL while it decodes, so large photos decode in a thread pool. Tiny
    images are bound by Python's per-file overhead instead, where threads only fight over the
    GIL: CIFAR-10's 50,000 training JPEGs took 4.1 s in one thread and 6.6 s in two (2 cores).
    """
    found = tuple(sorted(entry.name for entry in root.iterdir() if entry.is_dir()))
    if found != classes:
        raise DatasetMissingError(f"{root} must hold exactly the class folders {', '.join(classes)}; found {', '.join(found) or 'none'}")
    files, labels = [], []
    for label, name in enumerate(found):
        class_files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += class_files
        labels += [label] * len(class_files)
    if not files:
        raise DatasetMissingError(f"{root} holds no images")
    # The decoded tensor is kept on disk too, keyed by the folder, the size and every file's
    # name, size and mtime, so a new process (a CLI run, a restarted Space) loads it in a
    # fraction of a second instead of decoding again.
    signature = hashlib.sha1(f"{root.resolve()}|{size}".encode())
    for path in files:
        stat = path.stat()
        signature.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    cache_file = cache_dir() / f"{root.name}-{size}-{signature.hexdigest()[:20]}.pt"
    if cache_file.exists():
        try:
            return torch.load(cache_file)
        except (OSError, RuntimeError, EOFError):
            pass  # a torn or foreign file: decode again and overwrite it
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    finished = itertools.count(1)  # shared by the threads: next() on it is atomic

    def decode_into(indices: range, report) -> None:
        for index in indices:
            try:
                images[index] = _decode(files[index], size)
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                raise DatasetMissingError(f"cannot read image {files[index]}: {error}") from None
            if (done := next(finished)) % 500 == 0:
                report(f"Decoding {len(files):,} images of {root.parent.name}/{root.name}: {done:,}")

    workers = os.cpu_count() if size > 64 else 1
    with _reporting() as report, ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(decode_into, [range(start, len(files), workers) for start in range(workers)], [report] * workers))
    decoded = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_suffix(f".{os.getpid()}.tmp")
        torch.save(decoded, partial)
        partial.replace(cache_file)  # atomic: a concurrent reader never sees half a file
    except OSError:
        pass  # a read-only home only costs the next process a decode
    return decoded


_cache: dict[tuple, ImageTensors] = {}
_cache_lock = threading.Lock()


def _cached(key: tuple, load) -> ImageTensors:
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load()
        return _cache[key]


def load_cifar10(split: str, root: Path | None = None, download: bool = True) -> ImageTensors:
    """CIFAR-10 `train` or `test` from DATA_DIR, in either layout, downloading when allowed."""
    root = Path(root or data_dir()).resolve()

    def load() -> ImageTensors:
        folder = root / "cifar10" / split
        if folder.is_dir():
            images, labels = load_image_folder(folder, CIFAR10_DATASET.stored_size, CIFAR10_DATASET.classes)
        else:
            from torchvision.datasets import CIFAR10  # see download_archive

            missing = not (root / "cifar-10-batches-py").is_dir()
            if missing and not download:
                raise DatasetMissingError(_cifar10_missing_message(root, "no such folder and downloading is off"))
            try:
                if missing:
                    download_archive(CIFAR10_URL, root, "CIFAR-10", CIFAR10.tgz_md5)
                dataset = CIFAR10(str(root), train=split == "train")
            except (OSError, RuntimeError) as error:
                reason = "download failed" if missing else "unreadable"
                raise DatasetMissingError(_cifar10_missing_message(root, f"{reason}: {error}")) from None
            images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
            labels = torch.tensor(dataset.targets)
        return ImageTensors(images, labels, CIFAR10_DATASET)

    return _cached(("cifar10", split, root), load)


def load_hymenoptera(split: str, root: Path | None = None, download: bool = True) -> ImageTensors:
    """Ants vs bees `train` or `val` from DATA_DIR/hymenoptera_data, downloading when allowed."""
    root = Path(root or data_dir()).resolve()

    def load() -> ImageTensors:
        folder = root / "hymenoptera_data" / split
        if not folder.is_dir():
            if not download:
                raise DatasetMissingError(_hymenoptera_missing_message(root, "no such folder and downloading is off"))
            try:
                download_archive(HYMENOPTERA_URL, root, "ants vs bees")
            except (OSError, RuntimeError) as error:
                raise DatasetMissingError(_hymenoptera_missing_message(root, f"download failed: {error}")) from None
        images, labels = load_image_folder(folder, HYMENOPTERA_DATASET.stored_size, HYMENOPTERA_DATASET.classes)
        return ImageTensors(images, labels, HYMENOPTERA_DATASET)

    return _cached(("hymenoptera", split, root), load)


# The dataset registry (after models/): built-in datasets by name, with their loaders.
_LOADERS = {"cifar10": load_cifar10, "hymenoptera": load_hymenoptera}
_SPECS = {spec.name: spec for spec in (CIFAR10_DATASET, HYMENOPTERA_DATASET)}
# Datasets held in memory under a name, such as a browser session's uploaded photos (see
# `register_dataset`): split → tensors.
_registered: dict[str, dict[str, ImageTensors]] = {}


def list_datasets() -> list[str]:
    return sorted(_SPECS)


def get_dataset(name: str) -> DatasetSpec:
    """A dataset's spec by registry name, registered name, or path of an image folder (see
    `folder_dataset`)."""
    if name in _SPECS:
        return _SPECS[name]
    if name in _registered:
        return next(iter(_registered[name].values())).spec
    if Path(name).is_dir():
        return folder_dataset(Path(name))
    raise ValueError(f"unknown dataset {name!r}: choose one of {list_datasets()}, or give a folder with one sub-folder of images per class")


def images_per_epoch(configs: list) -> list[int]:
    """The training images each run config draws per epoch: its `n_train`, at most its dataset's
    whole split (each dataset's size read once: a folder's is counted on disk)."""
    sizes = {c.dataset: get_dataset(c.dataset).train_size for c in configs}
    return [min(c.n_train or sizes[c.dataset], sizes[c.dataset]) for c in configs]


def data_source(name: str) -> str | None:
    """Which copy of a dataset a run reads, as a string that changes with it: the folders of an
    image-folder layout with their modification times (which change when a photo is added or
    removed), or CIFAR-10's official batches. None for a dataset held only in memory."""
    spec = get_dataset(name)
    if spec.name in _registered:
        return None
    root = data_dir().resolve()
    if spec.name == "cifar10":
        folders = [root / "cifar10" / split for split in spec.splits]
        if not folders[0].is_dir():
            return f"cifar10 batches in {root}"  # the official archive, downloaded if missing
    elif spec.name == "hymenoptera":
        folders = [root / "hymenoptera_data" / split for split in spec.splits]
    else:
        folders = [Path(spec.source).resolve()]
    stamps = [f"{folder}:{entry.name}:{entry.stat().st_mtime_ns}" for folder in folders if folder.is_dir() for entry in sorted(folder.iterdir()) if entry.is_dir()]
    return "|".join(stamps) or f"{spec.name} in {root}"


def register_dataset(train: ImageTensors, evaluation: ImageTensors) -> None:
    """Hold two decoded splits in memory under their spec's name until `forget_dataset`."""
    spec = train.spec
    _registered[spec.name] = {spec.splits[0]: train, spec.splits[1]: evaluation}


def prefetch(names: list[str]) -> threading.Thread:
    """Load datasets in a background thread, so that a Space fetches CIFAR-10 as it boots rather
    than on its first visitor's click (which then waits on this load and shows its progress). A
    failure is left for that click to report, with its instructions."""

    def load() -> None:
        for name in names:
            try:
                load_splits(name)
            except DatasetMissingError:
                pass

    thread = threading.Thread(target=load, name="prefetch", daemon=True)
    thread.start()
    return thread


def forget_dataset(name: str) -> None:
    _registered.pop(name, None)


def load_splits(dataset: str, download: bool = True) -> tuple[ImageTensors, ImageTensors]:
    """The training and evaluation splits of a dataset (a name `get_dataset` knows)."""
    spec = get_dataset(dataset)
    if spec.name in _registered:
        return tuple(_registered[spec.name][split] for split in spec.splits)
    if spec.name in _LOADERS:
        load = _LOADERS[spec.name]
        return tuple(load(split, download=download) for split in spec.splits)
    return _cached(("folder", spec.name, spec.source), lambda: load_folder_splits(spec))


# Share of each class held out for validation when a folder has no split of its own, drawn once
# with a fixed seed, so that runs at every training seed are validated on the same photos.
VALIDATION_SHARE = 0.2
SPLIT_SEED = 0
# Photos of a folder dataset are stored at AlexNet's input size, as ants vs bees are.
FOLDER_STORED_SIZE = HYMENOPTERA_STORED_SIZE


def class_files(folder: Path) -> dict[str, list[Path]]:
    """Each sub-folder's image files, sorted, by sub-folder name."""
    return {
        entry.name: sorted(p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        for entry in sorted(folder.iterdir())
        if entry.is_dir()
    }


def split_by_class(counts: list[int], seed: int, share: float = VALIDATION_SHARE) -> list[torch.Tensor]:
    """For each class of `counts[c]` items, a boolean mask of those held out for validation: a
    `share` of them (at least one), drawn by the seed."""
    generator = torch.Generator().manual_seed(seed)
    masks = []
    for n in counts:
        held = torch.zeros(n, dtype=torch.bool)
        held[torch.randperm(n, generator=generator)[: max(1, round(share * n))]] = True
        masks.append(held)
    return masks


def photo_dataset(name: str, title: str, classes: tuple[str, ...], train_size: int = 0, source: str = "") -> DatasetSpec:
    """A dataset of someone's own photos, kept as AlexNet reads them (224×224, ImageNet's
    normalisation, flips only), with a training and a validation split."""
    return DatasetSpec(
        name, title, classes, IMAGENET_MEAN, IMAGENET_STD, stored_size=FOLDER_STORED_SIZE, crop_size=FOLDER_STORED_SIZE, crop_padding=0,
        splits=("train", "val"), train_size=train_size, source=source,
    )


def hold_out(images: torch.Tensor, labels: torch.Tensor, spec: DatasetSpec, seed: int) -> tuple[ImageTensors, ImageTensors]:
    """Decoded photos, sorted by class, as (training, validation) splits: `split_by_class` with
    `seed`; the spec's train_size is set to what is left for training."""
    held = torch.cat(split_by_class(torch.bincount(labels, minlength=len(spec.classes)).tolist(), seed))
    spec = replace(spec, train_size=int((~held).sum()))
    return ImageTensors(images[~held], labels[~held], spec), ImageTensors(images[held], labels[held], spec)


def has_own_split(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "val").is_dir()


def folder_dataset(root: Path) -> DatasetSpec:
    """An image folder as a dataset: `root/<class>/*` split into train and validation by class
    (SPLIT_SEED), or `root/train/<class>/*` and `root/val/<class>/*` where it has its own split."""
    root = Path(root).resolve()
    own_split = has_own_split(root)
    found = class_files(root / "train" if own_split else root)
    if len(found) < 2:
        raise DatasetMissingError(f"{root} must hold one sub-folder of images per class, at least two; found {len(found)}")
    train_size = sum(len(files) for files in found.values())
    if not own_split:
        train_size -= sum(int(mask.sum()) for mask in split_by_class([len(f) for f in found.values()], SPLIT_SEED))
    return photo_dataset(str(root), f"the images in {root.name}", tuple(found), train_size, source=str(root))


def load_folder_splits(spec: DatasetSpec) -> tuple[ImageTensors, ImageTensors]:
    root = Path(spec.source)
    if has_own_split(root):
        return tuple(ImageTensors(*load_image_folder(root / split, spec.stored_size, spec.classes), spec) for split in spec.splits)
    return hold_out(*load_image_folder(root, spec.stored_size, spec.classes), spec, SPLIT_SEED)


def balanced_subset(labels: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    """Indices of `n` examples, as equal a share per class as possible; depends only on the seed."""
    if n is None or n >= len(labels):
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    per_class = [torch.nonzero(labels == c).flatten() for c in classes]
    per_class = [idx[torch.randperm(len(idx), generator=generator)] for idx in per_class]
    quota = n // len(classes)
    chosen = [idx[:quota] for idx in per_class]
    leftovers = torch.cat([idx[quota:] for idx in per_class])
    extra = leftovers[torch.randperm(len(leftovers), generator=generator)[: n - quota * len(classes)]]
    return torch.cat(chosen + [extra]).sort().values


def normalize(images: torch.Tensor, mean, std, dtype=torch.float32) -> torch.Tensor:
    """uint8 B,C,H,W → normalised float, channels_last (the faster layout for convs on CPU and GPU)."""
    m = torch.tensor(mean, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=dtype).view(1, -1, 1, 1)
    x = images.to(dtype).div_(255).sub_(m).div_(s)
    return x.contiguous(memory_format=torch.channels_last)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    top = (images.shape[-2] - size) // 2
    left = (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def draw_crops(B: int, side: int, size: int, padding: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random crop offsets and flips for a batch, drawn on the CPU generator so that every device
    (and FeatureLoader) sees the same draws."""
    dy = torch.randint(0, side + 2 * padding - size + 1, (B,), generator=generator)
    dx = torch.randint(0, side + 2 * padding - size + 1, (B,), generator=generator)
    flip = torch.rand(B, generator=generator) < 0.5
    return dy, dx, flip


def random_crop_flip(images: torch.Tensor, size: int, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop (after zero padding) and horizontal flip of a whole batch, by gather."""
    B, C, H, W = images.shape
    if padding:
        images = torch.nn.functional.pad(images, (padding,) * 4)
    dy, dx, flip = (t.to(images.device) for t in draw_crops(B, H, size, padding, generator))
    steps = torch.arange(size, device=images.device)
    rows = (dy[:, None] + steps).view(B, 1, size, 1)
    cols = torch.where(flip[:, None], dx[:, None] + size - 1 - steps, dx[:, None] + steps).view(B, 1, 1, size)
    batch = torch.arange(B, device=images.device).view(B, 1, 1, 1)
    channel = torch.arange(C, device=images.device).view(1, C, 1, 1)
    return images[batch, channel, rows, cols]


class BatchLoader:
    """Epochs of (images, labels) batches from one `ImageTensors`, on `device`.

    Training loaders shuffle, augment and drop a last incomplete batch (it would make one step
    differ in size from all the others); evaluation loaders centre-crop in order.
    """

    def __init__(self, data: ImageTensors, batch_size: int, device: torch.device, train: bool, seed: int = 0, crop_padding: int | None = None):
        self.data = data
        self.crop_padding = data.spec.crop_padding if crop_padding is None else crop_padding
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = train
        self.generator = torch.Generator().manual_seed(seed)
        # The whole split moves to the device once, as uint8 (4× smaller than float).
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)

    def __len__(self) -> int:
        n = len(self.data)
        return max(1, n // self.batch_size) if self.train else -(-n // self.batch_size)

    def batch_indices(self):
        """One epoch's batches as index tensors: shuffled for training, in order for evaluation."""
        n = len(self.data)
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.train else torch.arange(n, device=self.device)
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]

    def __iter__(self):
        spec = self.data.spec
        for index in self.batch_indices():
            images = self.images[index]
            if self.train:
                images = random_crop_flip(images, spec.crop_size, self.crop_padding, self.generator)
            else:
                images = center_crop(images, spec.crop_size)
            yield normalize(images, spec.mean, spec.std), self.labels[index]


class FeatureLoader(BatchLoader):
    """Training batches of a frozen prefix's outputs instead of images, for feature extraction.

    A frozen backbone maps the same image to the same features, so they are computed once (at
    the first iteration, inside the arm's training clock), for each photo and its mirror image.
    Batches then make exactly BatchLoader's draws (order, offsets, flips) and look the features
    up, so training matches running the backbone every step. It applies where a training crop
    is the whole stored image, so that flips are the only augmentation.
    """

    def __init__(self, prefix: torch.nn.Module, data: ImageTensors, batch_size: int, device: torch.device, seed: int, autocast: bool):
        super().__init__(data, batch_size, device, train=True, seed=seed)
        self.prefix = prefix
        self.autocast = autocast
        self.features: torch.Tensor | None = None  # 2 (as stored, mirrored), N, D

    @staticmethod
    def supports(spec: DatasetSpec) -> bool:
        return spec.crop_size == spec.stored_size and spec.crop_padding == 0

    @torch.no_grad()
    def _compute_features(self) -> torch.Tensor:
        spec = self.data.spec
        views = []
        for mirrored in (False, True):
            chunks = []
            for start in range(0, len(self.data), 64):
                x = normalize(self.images[start : start + 64], spec.mean, spec.std)
                x = x.flip(-1) if mirrored else x
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    chunks.append(self.prefix(x).float())
            views.append(torch.cat(chunks))
        return torch.stack(views)

    def __iter__(self):
        if self.features is None:
            self.features = self._compute_features()
        spec = self.data.spec
        for index in self.batch_indices():
            _, _, flip = draw_crops(len(index), spec.stored_size, spec.crop_size, spec.crop_padding, self.generator)
            yield self.features[flip.long().to(self.device), index], self.labels[index]
