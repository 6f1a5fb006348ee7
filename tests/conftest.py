"""Tiny datasets and a fake ImageNet checkpoint, made in temporary folders: no test downloads."""

import hashlib
import io
import pickle
import re
import socket
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import alexnet

from training.datasets import CIFAR10_CLASSES

# Each class is a distinct colour with noise, so a small network learns it in a few steps.
PALETTE = np.array([[(c * 37) % 256, (c * 91) % 256, (c * 151) % 256] for c in range(10)], dtype=np.float32)


def learnable_images(label: int, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 30, (count, size, size, 3))
    return np.clip(PALETTE[label] + noise, 0, 255).astype(np.uint8)


def write_folder(root, classes, per_class, size, suffix, seed):
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i, pixels in enumerate(learnable_images(label, per_class, size, rng)):
            Image.fromarray(pixels).save(root / name / f"{i:04d}{suffix}")


@pytest.fixture(autouse=True)
def decoded_cache(tmp_path_factory, monkeypatch):
    """Keep the decoded-dataset disk cache of every test out of the home folder, and reuse no
    finished run: a test trains what it asks for, unless it turns the run cache on
    (`run_cache`)."""
    folder = tmp_path_factory.getbasetemp() / "decoded-cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(folder))
    monkeypatch.setenv("CNNLAB_RUN_CACHE_MB", "0")
    return folder


@pytest.fixture(autouse=True)
def own_class_record(tmp_path_factory, monkeypatch):
    """Each test's class record in a folder of its own: runs a test finishes are counted by it alone."""
    from serving.class_record import class_record

    monkeypatch.setenv("CNNLAB_CLASS_DIR", str(tmp_path_factory.mktemp("class-record")))
    class_record.cache_clear()
    yield
    class_record.cache_clear()


@pytest.fixture
def run_cache(tmp_path, monkeypatch):
    """The run cache on, in a folder of this test's own."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_RUN_CACHE_MB", "512")
    return tmp_path / "cache" / "runs"


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """DATA_DIR with CIFAR-10 as an image folder (16+6 per class) and ants vs bees (8+4 per class)."""
    root = tmp_path_factory.mktemp("data")
    write_folder(root / "cifar10" / "train", CIFAR10_CLASSES, 16, 32, ".png", seed=1)
    write_folder(root / "cifar10" / "test", CIFAR10_CLASSES, 6, 32, ".jpg", seed=2)
    # Odd sizes: the loader must resize and centre-crop them to 256.
    write_folder(root / "hymenoptera_data" / "train", ("ants", "bees"), 8, 300, ".jpg", seed=3)
    write_folder(root / "hymenoptera_data" / "val", ("ants", "bees"), 4, 260, ".jpg", seed=4)
    return root


@pytest.fixture
def tiny_data(tiny_root, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tiny_root))
    return tiny_root


@pytest.fixture(scope="session")
def cifar_batches_root(tmp_path_factory):
    """CIFAR-10 in torchvision's pickled layout (cifar-10-batches-py), 4 images per class and batch."""
    root = tmp_path_factory.mktemp("cifar-batches")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(5)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        images = np.concatenate([learnable_images(c, 4, 32, rng) for c in range(10)])
        labels = [c for c in range(10) for _ in range(4)]
        batch = {"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1), "labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}))
    return root


@pytest.fixture
def slow_cifar_download(cifar_batches_root, monkeypatch):
    """CIFAR-10's download URL answered, slowly (20 chunks, 50 ms each), with an archive of the
    fixture's own batches, whose checksums stand in for the official ones."""
    import torchvision.datasets

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(cifar_batches_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    payload = archive.getvalue()
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)

    class SlowResponse(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

        def read(self, size=-1):
            time.sleep(0.05)
            return super().read(max(1, len(payload) // 20))

    monkeypatch.setattr("training.sources.urlopen", lambda url, timeout: SlowResponse(payload))


# The stand-in weights are not ImageNet's, whose hash their file name holds. Where no hash is read
# from file names, torch and the app (models.alexnet.check_cached) take a cached file as it is;
# the servers tests start do the same through tests/stand_in_weights/sitecustomize.py.
NO_HASH_IN_NAMES = re.compile(r"(?!)")
STAND_IN_WEIGHTS_PATH = str(Path(__file__).parent / "stand_in_weights")
TORCH_HASH_IN_NAMES = torch.hub.HASH_REGEX  # torch's own, read before any fixture replaces it


@pytest.fixture
def names_hold_hashes(monkeypatch):
    """torch's reading of a checkpoint's hash from its name, for the tests of that check: the
    in-process app (app_url) takes names as hashless for the rest of the session."""
    monkeypatch.setattr(torch.hub, "HASH_REGEX", TORCH_HASH_IN_NAMES)


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds an AlexNet checkpoint we wrote, under torchvision's file name."""
    home = tmp_path_factory.mktemp("torch-home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(7)
    torch.save(alexnet(weights=None).state_dict(), checkpoints / "alexnet-owt-7be5be79.pth")
    return home


@pytest.fixture
def imagenet_weights(torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "HASH_REGEX", NO_HASH_IN_NAMES)
    return torch.load(torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")


@pytest.fixture(scope="session")
def app_url(tiny_root, torch_home, tmp_path_factory):
    """The whole app, served in-process on a free port with the tiny datasets and an
    ants-vs-bees checkpoint of our own loaded the way a Space loads ANTS_BEES_MODEL."""
    import app as cnn_app
    from demo.tabs import transfer
    from demo.uploads import ConfiguredModel
    from models import AlexNetTransfer

    patch = pytest.MonkeyPatch()
    patch.setenv("DATA_DIR", str(tiny_root))
    patch.setenv("TORCH_HOME", str(torch_home))
    patch.setattr(torch.hub, "HASH_REGEX", NO_HASH_IN_NAMES)
    patch.setenv("CNNLAB_CACHE", str(tmp_path_factory.mktemp("app-cache")))
    folder = tmp_path_factory.mktemp("ants-bees-model")
    AlexNetTransfer(mode="feature_extraction").save_pretrained(folder)
    patch.setenv("ANTS_BEES_MODEL", str(folder))
    patch.setattr(transfer, "ants_bees_model", ConfiguredModel("ANTS_BEES_MODEL", AlexNetTransfer))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = cnn_app.build_app()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, max_file_size=cnn_app.MAX_TOTAL_BYTES)
    yield f"http://127.0.0.1:{port}/"
    app.close()
    patch.undo()


def dog_classifier(folder: Path, test_labels: torch.Tensor) -> Path:
    """A CIFAR-10 model folder whose recorded test predictions call every test image a dog, so
    that the confusion matrix's cat → dog cell holds every cat of the test set."""
    from safetensors.torch import save_file

    from models import create_model
    from training.results import TEST_PREDICTIONS

    create_model("cnn-tiny").save_pretrained(folder)
    predicted = torch.full_like(test_labels, CIFAR10_CLASSES.index("dog"))
    save_file({"label": test_labels.byte(), "predicted": predicted.byte(), "confidence": torch.full(test_labels.shape, 0.5).half()}, folder / TEST_PREDICTIONS)
    return folder
