"""The dataset registry: every dataset a run can name, as one `DatasetSpec` that says what its
images are, how a model sees them and where their files lie (`DatasetFiles`), and the splits of
each as uint8 tensors decoded once per process.

A built-in dataset is declared once, as a spec (`CIFAR10_DATASET`, `HYMENOPTERA_DATASET`); a
folder given by path becomes a spec of the same kind (`folder_dataset`), and a browser session's
photos are a spec without files, held in memory (`register_dataset`). Loading, the missing-data
messages and `data_source` (what the run cache keys the data by) read only the spec, so they
work alike for all three.

After airbench: a split is decoded once (a thread pool over the image files, or torchvision's
pickled CIFAR-10 arrays) into one uint8 tensor, kept in memory and on disk, and handed to
`training.loader`, which batches it on the device with no worker processes. Every random draw
here (a subset, a held-out split) comes from a CPU generator with a fixed seed.
"""

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from training.images import class_files, load_image_folder
from training.sources import DatasetMissingError, data_dir, download_archive

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Ants/bees photos are stored at AlexNet's 224×224 (shorter side resized, centre cropped), so
# horizontal flips are their only augmentation: a frozen backbone then sees just two views of
# each photo, which feature extraction computes once (see training.loader.FeatureLoader).
HYMENOPTERA_STORED_SIZE = 224
# Photos of a folder dataset are stored at AlexNet's input size, as ants vs bees are.
FOLDER_STORED_SIZE = HYMENOPTERA_STORED_SIZE
# Share of each class held out for validation when a folder has no split of its own, drawn once
# with a fixed seed, so that runs at every training seed are validated on the same photos.
VALIDATION_SHARE = 0.2
SPLIT_SEED = 0


@dataclass(frozen=True)
class TorchvisionLayout:
    """A dataset as torchvision's own dataset class reads and downloads it: CIFAR-10's pickled
    batches. That class's `tgz_md5` is the checksum of the archive it comes in."""

    folder: str  # under DATA_DIR
    dataset_class: str  # in torchvision.datasets; built with train=True for the training split


@dataclass(frozen=True)
class DatasetFiles:
    """Where a dataset's images lie on disk, and the archive that puts them there."""

    folder: str  # under DATA_DIR, or an absolute path (which `DATA_DIR / folder` keeps as it is)
    split_folders: bool = True  # folder/<split>/<class>/*; else folder/<class>/*, split by `hold_out`
    file_pattern: str = "*"  # the image files, as the missing-data message names them
    archive_url: str = ""  # unpacked into DATA_DIR when the images are missing; '' for none
    archive_md5: str | None = None  # checked after a download; None: unchecked (the archive of a
    # torchvision layout is checked against that dataset class's own `tgz_md5` instead)
    archive_title: str = ""  # how download progress names it: "Downloading CIFAR-10, 163 MB: 40%"
    missing_subject: str = ""  # how the missing-data message names it: "CIFAR-10 was not found …"
    torchvision_layout: TorchvisionLayout | None = None  # a second layout, the one the archive unpacks to


@dataclass(frozen=True)
class DatasetSpec:
    """Everything known about one dataset: its classes, how its images are stored and presented
    to a model, its splits and where its files lie. A model's output count and input size are
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
    files: DatasetFiles | None = None  # None: held only in memory (see register_dataset)
    hub_id: str | None = None  # the Hugging Face Hub's copy, named in model cards


CIFAR10_DATASET = DatasetSpec(
    "cifar10", "CIFAR-10", ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    CIFAR10_MEAN, CIFAR10_STD, stored_size=32, crop_size=32, crop_padding=4, train_size=50_000, hub_id="uoft-cs/cifar10",
    files=DatasetFiles(
        "cifar10", file_pattern="*.png|jpg", archive_url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        archive_title="CIFAR-10", missing_subject="CIFAR-10", torchvision_layout=TorchvisionLayout("cifar-10-batches-py", "CIFAR10"),
    ),
)
HYMENOPTERA_DATASET = DatasetSpec(
    "hymenoptera", "hymenoptera (ants vs bees, from the PyTorch transfer-learning tutorial)", ("ants", "bees"), IMAGENET_MEAN, IMAGENET_STD,
    stored_size=HYMENOPTERA_STORED_SIZE, crop_size=224, crop_padding=0, splits=("train", "val"), train_size=245,
    files=DatasetFiles(
        "hymenoptera_data", file_pattern="*.jpg", archive_url="https://download.pytorch.org/tutorial/hymenoptera_data.zip",
        archive_title="ants vs bees", missing_subject="The ants vs bees data",
    ),
)
CIFAR10_CLASSES = CIFAR10_DATASET.classes
BUILT_IN_DATASETS = {spec.name: spec for spec in (CIFAR10_DATASET, HYMENOPTERA_DATASET)}


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


def missing_message(spec: DatasetSpec, root: Path, reason: str) -> str:
    """What to put where, for a dataset whose files are not under DATA_DIR `root`."""
    files, layout = spec.files, spec.files.torchvision_layout
    folder = f"{root}/{files.folder}/{{{','.join(spec.splits)}}}"
    opening = f"{files.missing_subject} was not found under {root} ({reason})."
    if layout is None:
        return (
            f"{opening} Put it at {folder}/{{{','.join(spec.classes)}}}/{files.file_pattern} (the archive {files.archive_url}, unpacked). "
            "Set DATA_DIR to the folder that holds it."
        )
    return (
        f"{opening} Put it there in either layout:\n"
        f"  1. torchvision's {root}/{layout.folder}/ (the archive {files.archive_url}, unpacked), or\n"
        f"  2. an image folder {folder}/<class>/{files.file_pattern} with the {len(spec.classes)} class folders "
        f"{', '.join(spec.classes)}.\n\n"  # a paragraph of its own, not a line of item 2
        "Set DATA_DIR to the folder that holds it."
    )


# Decoded splits by (dataset, split, folder), for the life of the process.
_cache: dict[tuple, ImageTensors | tuple[ImageTensors, ImageTensors]] = {}
_cache_lock = threading.Lock()


def _cached(key: tuple, load):
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load()
        return _cache[key]


def _archive_md5(files: DatasetFiles) -> str | None:
    if files.torchvision_layout is None:
        return files.archive_md5
    import torchvision.datasets  # see training.sources.download_archive

    return getattr(torchvision.datasets, files.torchvision_layout.dataset_class).tgz_md5


def _read_torchvision_layout(spec: DatasetSpec, split: str, root: Path) -> ImageTensors:
    import torchvision.datasets  # see training.sources.download_archive

    dataset_class = getattr(torchvision.datasets, spec.files.torchvision_layout.dataset_class)
    dataset = dataset_class(str(root), train=split == spec.splits[0])
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(images, torch.tensor(dataset.targets), spec)


def _load_without_image_folder(spec: DatasetSpec, split: str, root: Path, download: bool) -> ImageTensors:
    """A split whose image folder is absent: read from the torchvision layout where there is one,
    after downloading the archive when the data is missing and downloading is allowed."""
    files, layout = spec.files, spec.files.torchvision_layout
    missing = layout is None or not (root / layout.folder).is_dir()
    if missing and not download:
        raise DatasetMissingError(missing_message(spec, root, "no such folder, and this request does not download it"))
    try:
        if missing:
            download_archive(files.archive_url, root, files.archive_title, _archive_md5(files))
        if layout is not None:
            return _read_torchvision_layout(spec, split, root)
    except (OSError, RuntimeError) as error:
        reason = "download failed" if missing else "unreadable"
        raise DatasetMissingError(missing_message(spec, root, f"{reason}: {error}")) from None
    return ImageTensors(*load_image_folder(root / files.folder / split, spec.stored_size, spec.classes), spec)


def load_split(spec: DatasetSpec, split: str, root: Path | None = None, download: bool = True) -> ImageTensors:
    """One split of a dataset in split folders, from DATA_DIR (or `root`) in either of its layouts,
    downloading it when allowed; decoded once per process."""
    root = Path(root or data_dir()).resolve()
    folder = root / spec.files.folder / split

    def load() -> ImageTensors:
        if folder.is_dir() or not spec.files.archive_url:
            return ImageTensors(*load_image_folder(folder, spec.stored_size, spec.classes), spec)
        return _load_without_image_folder(spec, split, root, download)

    return _cached((spec.name, split, folder), load)


def load_cifar10(split: str, root: Path | None = None, download: bool = True) -> ImageTensors:
    """CIFAR-10 `train` or `test` (see load_split)."""
    return load_split(CIFAR10_DATASET, split, root, download)


def load_hymenoptera(split: str, root: Path | None = None, download: bool = True) -> ImageTensors:
    """Ants vs bees `train` or `val` (see load_split)."""
    return load_split(HYMENOPTERA_DATASET, split, root, download)


def load_folder_splits(spec: DatasetSpec, download: bool = True) -> tuple[ImageTensors, ImageTensors]:
    """The training and evaluation splits of a dataset on disk: its split folders (`load_split`),
    or one folder of classes split by `hold_out` with SPLIT_SEED."""
    if spec.files.split_folders:
        return tuple(load_split(spec, split, download=download) for split in spec.splits)
    folder = data_dir().resolve() / spec.files.folder
    return _cached((spec.name, None, folder), lambda: hold_out(*load_image_folder(folder, spec.stored_size, spec.classes), spec, SPLIT_SEED))


# Datasets held in memory under a name, such as a browser session's uploaded photos (see
# `register_dataset`): split → tensors.
_registered: dict[str, dict[str, ImageTensors]] = {}


def list_datasets() -> list[str]:
    return sorted(BUILT_IN_DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """A dataset's spec by registry name, registered name, or path of an image folder (see
    `folder_dataset`)."""
    if name in BUILT_IN_DATASETS:
        return BUILT_IN_DATASETS[name]
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


def _folders_read(files: DatasetFiles, splits: tuple[str, ...], root: Path) -> list[Path]:
    """The folders a dataset's images are read from, as `load_folder_splits` picks them."""
    folder = root / files.folder
    if not files.split_folders:
        return [folder]
    layout = files.torchvision_layout
    chosen = [folder / split if (folder / split).is_dir() or layout is None else root / layout.folder for split in splits]
    return list(dict.fromkeys(chosen))


def data_source(name: str) -> str | None:
    """Which copy of a dataset a run reads, as a string that changes with it: each entry of the
    folders it is read from (class folders, or torchvision's batch files) with its modification
    time and its count of entries or its size, which change when a photo is added, removed or
    rewritten. None for a dataset held only in memory."""
    spec = get_dataset(name)
    if spec.name in _registered or spec.files is None:
        return None
    root = data_dir().resolve()
    stamps = []
    for folder in _folders_read(spec.files, spec.splits, root):
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            stat = entry.stat()
            extent = len(os.listdir(entry)) if entry.is_dir() else stat.st_size
            stamps.append(f"{folder}:{entry.name}:{stat.st_mtime_ns}:{extent}")
    return "|".join(stamps) or f"{spec.name} in {root}"


# Pillow's numbers for a JPEG's chroma subsampling (PIL.JpegImagePlugin.get_sampling).
JPEG_SAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def file_format(folder: Path) -> str:
    """The format of the first image of a split folder's first class: "PNG", or "JPEG 4:2:0"
    (a JPEG stores colour at half the resolution in each direction under 4:2:0)."""
    from PIL import Image, JpegImagePlugin

    first = next((files[0] for files in class_files(folder).values() if files), None)  # image files only
    if first is None:
        return "no images"
    with Image.open(first) as image:
        sampling = JPEG_SAMPLING.get(JpegImagePlugin.get_sampling(image), "") if image.format == "JPEG" else ""
        return f"{image.format} {sampling}".strip()


def data_description(name: str) -> str:
    """Which copy of a dataset a run reads, in words for provenance and model cards: torchvision's
    archive (the original pixels) or an image folder under DATA_DIR, with its files' format."""
    spec = get_dataset(name)
    if spec.name in _registered or spec.files is None:
        return f"{spec.title}, held in memory"
    root = data_dir().resolve()
    layout = spec.files.torchvision_layout
    described = []
    for folder in _folders_read(spec.files, spec.splits, root):
        if layout and folder == root / layout.folder:
            described.append(f"torchvision's {layout.folder} (the original pixels)")
        elif folder.is_dir():
            where = f"DATA_DIR/{folder.relative_to(root)}" if folder.is_relative_to(root) else str(folder)
            described.append(f"the image folder {where} ({file_format(folder)} files)")
    return f"{spec.title}: " + "; ".join(described) if described else f"{spec.title}: not found under DATA_DIR"


def register_dataset(train: ImageTensors, evaluation: ImageTensors) -> None:
    """Hold two decoded splits in memory under their spec's name until `forget_dataset`."""
    spec = train.spec
    _registered[spec.name] = {spec.splits[0]: train, spec.splits[1]: evaluation}


def forget_dataset(name: str) -> None:
    _registered.pop(name, None)


def load_splits(dataset: str, download: bool = True) -> tuple[ImageTensors, ImageTensors]:
    """The training and evaluation splits of a dataset (a name `get_dataset` knows)."""
    spec = get_dataset(dataset)
    if spec.name in _registered:
        return tuple(_registered[spec.name][split] for split in spec.splits)
    return load_folder_splits(spec, download)


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


def photo_dataset(name: str, title: str, classes: tuple[str, ...], train_size: int = 0, files: DatasetFiles | None = None) -> DatasetSpec:
    """A dataset of someone's own photos, kept as AlexNet reads them (224×224, ImageNet's
    normalisation, flips only), with a training and a validation split."""
    return DatasetSpec(
        name, title, classes, IMAGENET_MEAN, IMAGENET_STD, stored_size=FOLDER_STORED_SIZE, crop_size=FOLDER_STORED_SIZE, crop_padding=0,
        splits=("train", "val"), train_size=train_size, files=files,
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
    return photo_dataset(str(root), f"the images in {root.name}", tuple(found), train_size, DatasetFiles(str(root), split_folders=own_split))


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
