import shutil

import pytest
import torch
from PIL import Image

from conftest import write_folder
from training.datasets import (
    CIFAR10_CLASSES,
    balanced_subset,
    data_source,
    folder_dataset,
    get_dataset,
    list_datasets,
    load_cifar10,
    load_folder_splits,
    load_hymenoptera,
    load_splits,
)
from training.images import load_image_folder
from training.loader import BatchLoader, random_crop_flip
from training.sources import DatasetMissingError


def test_cifar_image_folder_decodes_to_uint8_tensors(tiny_root):
    data = load_cifar10("train", tiny_root, download=False)
    assert data.images.dtype == torch.uint8 and data.images.shape == (160, 3, 32, 32)
    assert data.labels.bincount().tolist() == [16] * 10
    assert data.spec.classes == CIFAR10_CLASSES
    assert load_cifar10("train", tiny_root, download=False) is data  # decoded once per process


def test_decoded_folder_is_reused_from_disk_until_a_file_changes(tmp_path, decoded_cache):
    write_folder(tmp_path / "cifar10" / "test", CIFAR10_CLASSES, 2, 32, ".png", seed=9)
    first = load_image_folder(tmp_path / "cifar10" / "test", 32, CIFAR10_CLASSES)
    cached = list(decoded_cache.glob("test-32-*.pt"))
    assert len(cached) >= 1
    again = load_image_folder(tmp_path / "cifar10" / "test", 32, CIFAR10_CLASSES)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    # A changed image must be decoded afresh, not served stale from the cache.
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "cifar10" / "test" / "bird" / "0000.png")
    changed = load_image_folder(tmp_path / "cifar10" / "test", 32, CIFAR10_CLASSES)
    assert changed[0][4].float().mean(dim=(1, 2)).tolist() == [255.0, 0.0, 0.0]


def test_cifar_torchvision_layout_loads(cifar_batches_root, monkeypatch):
    # The fixture's pickles are ours, so torchvision's MD5 check of the official files is skipped.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)
    train = load_cifar10("train", cifar_batches_root, download=False)
    test = load_cifar10("test", cifar_batches_root, download=False)
    assert train.images.shape == (200, 3, 32, 32) and test.images.shape == (40, 3, 32, 32)
    assert train.labels.bincount().tolist() == [20] * 10


def test_missing_cifar_names_both_layouts_and_the_url(tmp_path):
    with pytest.raises(DatasetMissingError) as error:
        load_cifar10("train", tmp_path, download=False)
    message = str(error.value)
    assert "cifar-10-batches-py" in message
    assert "cifar10/{train,test}/<class>" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "DATA_DIR" in message


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("training.sources.urlopen", offline)
    with pytest.raises(DatasetMissingError) as error:
        load_hymenoptera("train", tmp_path, download=True)
    assert "network unreachable" in str(error.value)
    assert "hymenoptera_data/{train,val}/{ants,bees}" in str(error.value)


def test_wrong_class_folders_are_rejected(tmp_path):
    (tmp_path / "cifar10" / "train" / "cats").mkdir(parents=True)
    with pytest.raises(DatasetMissingError, match="airplane, automobile"):
        load_cifar10("train", tmp_path, download=False)


def test_unreadable_image_is_named(tmp_path):
    for name in CIFAR10_CLASSES:
        (tmp_path / "cifar10" / "test" / name).mkdir(parents=True)
    (tmp_path / "cifar10" / "test" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetMissingError, match="broken.png"):
        load_cifar10("test", tmp_path, download=False)


def test_photos_are_resized_and_centre_cropped(tiny_root):
    data = load_hymenoptera("val", tiny_root, download=False)
    assert data.images.shape == (8, 3, 224, 224) and data.spec.classes == ("ants", "bees")


def test_balanced_subset_depends_only_on_the_seed():
    labels = torch.arange(10).repeat_interleave(50)
    a, b, c = balanced_subset(labels, 43, 1), balanced_subset(labels, 43, 1), balanced_subset(labels, 43, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    counts = labels[a].bincount()
    assert counts.sum() == 43 and counts.max() - counts.min() <= 1
    assert len(a.unique()) == 43


def test_loaders_with_one_seed_yield_identical_batches(tiny_root):
    data = load_cifar10("train", tiny_root, download=False)
    first, second = (BatchLoader(data, 32, torch.device("cpu"), train=True, seed=5) for _ in range(2))
    other = BatchLoader(data, 32, torch.device("cpu"), train=True, seed=6)
    for epoch in range(2):
        batches = list(zip(first, second, other))
        assert len(batches) == 5
        for (x1, y1), (x2, y2), (x3, _) in batches:
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert not all(torch.equal(x1, x3) for (x1, _), _, (x3, _) in batches)


def test_evaluation_loader_keeps_every_image_in_order(tiny_root):
    data = load_cifar10("test", tiny_root, download=False)
    labels = torch.cat([y for _, y in BatchLoader(data, 7, torch.device("cpu"), train=False)])
    assert torch.equal(labels, data.labels)


def test_crop_flip_moves_pixels_but_keeps_their_values():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    generator = torch.Generator().manual_seed(0)
    out = random_crop_flip(images, 8, 0, generator)
    # Without padding a crop of full size is the identity, so only flips remain.
    for original, augmented in zip(images, out):
        assert torch.equal(augmented, original) or torch.equal(augmented, original.flip(-1))
    padded = random_crop_flip(images, 8, 2, torch.Generator().manual_seed(1))
    assert padded.shape == images.shape
    assert set(padded.unique().tolist()) <= set(images.unique().tolist()) | {0.0}


def test_reflect_padding_fills_a_shifted_crop_with_the_images_own_edge():
    images = 1 + torch.arange(64 * 3 * 8 * 8, dtype=torch.float32).view(64, 3, 8, 8)  # no pixel is 0
    zeros = random_crop_flip(images, 8, 2, torch.Generator().manual_seed(1), "zeros")
    reflected = random_crop_flip(images, 8, 2, torch.Generator().manual_seed(1), "reflect")
    assert (zeros == 0).any() and not (reflected == 0).any()
    # Where the zero-padded crop shows the image, the reflected one shows the same pixels.
    inside = zeros != 0
    assert torch.equal(reflected[inside], zeros[inside])
    # The padding mirrors the edge: a crop shifted 2 pixels right starts at columns 2, 1 of the image.
    row = images[0, 0, 3]
    mirrored = torch.nn.functional.pad(row.view(1, 1, 1, 8), (2, 2, 0, 0), mode="reflect").flatten()
    assert torch.equal(mirrored[:4], row[[2, 1, 0, 1]])


def test_alternating_flips_show_each_image_both_ways_round_every_two_epochs(tiny_root):
    data = load_cifar10("train", tiny_root, download=False)
    loader = BatchLoader(data, 32, torch.device("cpu"), train=True, seed=3, crop_padding=0, alternating_flip=True)

    def flipped_per_image() -> torch.Tensor:
        """Whether each training image came out mirrored this epoch (crops are the whole image)."""
        flipped = torch.zeros(len(data), dtype=torch.bool)
        for index in loader.batch_indices():
            images = random_crop_flip(data.images[index], 32, 0, loader.generator, flip=loader.flips(index))
            flipped[index] = (images != data.images[index]).flatten(1).any(dim=1)
        return flipped

    epochs = [flipped_per_image() for _ in range(4)]
    assert 0.3 < epochs[0].float().mean() < 0.7  # the first epoch flips a random half
    assert torch.equal(epochs[1], ~epochs[0]) and torch.equal(epochs[2], epochs[0]) and torch.equal(epochs[3], epochs[1])


def test_a_folder_without_a_split_is_split_per_class_the_same_way_every_time(tmp_path):
    write_folder(tmp_path / "shapes", ("circle", "square", "star"), 10, 40, ".png", seed=0)
    spec = get_dataset(str(tmp_path / "shapes"))
    assert spec.classes == ("circle", "square", "star") and spec.crop_size == 224 and spec.train_size == 24
    train, validation = load_splits(str(tmp_path / "shapes"))
    assert torch.bincount(train.labels).tolist() == [8, 8, 8] and torch.bincount(validation.labels).tolist() == [2, 2, 2]
    again = load_folder_splits(folder_dataset(tmp_path / "shapes"))[1]
    assert torch.equal(again.images, validation.images)
    assert not any(torch.equal(image, held) for image in train.images for held in validation.images)


def test_a_folder_with_its_own_split_keeps_it(tmp_path):
    write_folder(tmp_path / "mine" / "train", ("a", "b"), 6, 40, ".jpg", seed=0)
    write_folder(tmp_path / "mine" / "val", ("a", "b"), 3, 40, ".jpg", seed=1)
    train, validation = load_splits(str(tmp_path / "mine"))
    assert len(train) == 12 and len(validation) == 6 and train.spec.splits == ("train", "val")


@pytest.mark.parametrize("layout, message", [({"only": 3}, "at least two"), ({}, "at least two")])
def test_a_folder_needs_two_classes(tmp_path, layout, message):
    for name, count in layout.items():
        write_folder(tmp_path, (name,), count, 40, ".png", seed=0)
    with pytest.raises(DatasetMissingError, match=message):
        get_dataset(str(tmp_path))


@pytest.mark.parametrize("own_split", [False, True])
def test_a_folder_datasets_source_changes_when_a_photo_is_added_to_one_class(tmp_path, own_split):
    classes = tmp_path / "mine" / "train" if own_split else tmp_path / "mine"
    write_folder(classes, ("a", "b"), 6, 40, ".png", seed=0)
    if own_split:
        write_folder(tmp_path / "mine" / "val", ("a", "b"), 2, 40, ".png", seed=1)
    before = data_source(str(tmp_path / "mine"))
    Image.new("RGB", (40, 40), (255, 0, 0)).save(classes / "b" / "extra.png")
    assert before is not None and data_source(str(tmp_path / "mine")) != before


@pytest.mark.parametrize("dataset, class_folder", [("cifar10", "cifar10/test/cat"), ("hymenoptera", "hymenoptera_data/train/bees")])
def test_a_built_in_datasets_source_changes_when_a_photo_is_added_to_one_class(tiny_root, tmp_path, monkeypatch, dataset, class_folder):
    shutil.copytree(tiny_root, tmp_path / "data")  # the shared fixture stays as it is
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    before = data_source(dataset)
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "data" / class_folder / "extra.png")
    assert data_source(dataset) != before


def test_cifar_batches_source_changes_when_a_batch_is_rewritten(cifar_batches_root, tmp_path, monkeypatch):
    shutil.copytree(cifar_batches_root, tmp_path / "data")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    before = data_source("cifar10")
    batch = tmp_path / "data" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:-1])
    assert data_source("cifar10") != before


def test_an_unknown_dataset_lists_the_registry():
    assert list_datasets() == ["cifar10", "hymenoptera"]
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*cifar10.*hymenoptera.*sub-folder"):
        get_dataset("mnist")


def test_a_download_reports_its_progress_then_unpacks_and_loads(slow_cifar_download, tmp_path, monkeypatch):
    """What a first click on a fresh host waits for: CIFAR-10 downloading, with its share done,
    then unpacking."""
    import time

    from training.datasets import prefetch
    from training.sources import data_activity

    root = tmp_path / "fresh-host"
    monkeypatch.setenv("DATA_DIR", str(root))
    loading = prefetch(["cifar10"])
    seen = set()
    while loading.is_alive():
        seen.add(data_activity())
        time.sleep(0.0005)  # unpacking the 1 MB archive can take under 10 ms
    assert any(text.startswith("Downloading CIFAR-10, ") and text.endswith("%") for text in seen), seen
    assert "Unpacking CIFAR-10…" in seen and data_activity() == ""
    assert len(load_cifar10("train", root)) == 200 and (root / "cifar-10-batches-py").is_dir()
