"""The CIFAR-10 classifiers that answer in the Final CNN tab: which one, how good, where it errs.

The default is CIFAR10_MODEL (a Hub repo or a `save_pretrained` folder) when it is set, else
the classifier embedded in the repository, `pretrained/classifier` (a `--save-dir` folder that
`python -m training reproduce --only classifier` records), so a fresh checkout classifies with
no training and no network. A model trained in the browser session is the other choice. Each
comes with the numbers recorded beside it (test accuracy, confusion matrix). Its predictions on
the test set are read from the file recorded beside an embedded model (instant, even without the
dataset) or else computed once per model, when someone first browses a cell of that matrix.
"""

import functools
import json
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from safetensors.torch import load_file
from torch import nn

from demo.uploads import ConfiguredModel
from models import AirbenchCNN, TeachingCNN
from training.datasets import CIFAR10_CLASSES, load_cifar10
from training.evaluation import confusion_matrix, predict
from training.results import PRETRAINED_DIR, TEST_PREDICTIONS
from training.sources import DatasetMissingError

EMBEDDED_FOLDER = Path(__file__).resolve().parent.parent / PRETRAINED_DIR / "classifier"
EMBEDDED_ARM = "cifar10"
GALLERY_SIZE = 24  # test images shown per confusion cell, most confident first

# A published final CNN (quick preset), the embedded classifier and its published copy are AirbenchCNNs; a report-preset final CNN is a TeachingCNN.
cifar10_model = ConfiguredModel("CIFAR10_MODEL", (AirbenchCNN, TeachingCNN), default=str(EMBEDDED_FOLDER / EMBEDDED_ARM))


@dataclass
class Classifier:
    """A model and what is known about it."""

    model: nn.Module
    name: str  # how the tab names it
    test_acc: float | None  # 0–1, on CIFAR-10's 10,000 test images
    confusion: list[list[int]] | None  # rows: true class, columns: predicted class
    test_time_flip: bool  # whether its accuracy averaged each test image with its mirror
    test_time_shift: bool  # whether it also averaged in each test image shifted by a pixel (training.evaluation)
    trained_on: str  # the device it was trained on, or "" where unknown
    predictions_file: Path | None = None  # its recorded test predictions (see training.reproduce)

    def summary(self) -> str:
        accuracy = f"{self.test_acc:.2%} on CIFAR-10's test set" if self.test_acc is not None else "test accuracy not recorded"
        where = f", trained on {self.trained_on}" if self.trained_on else ""
        return f"**Answering: {self.name}** ({accuracy}{where})."


def recorded_results(source: str) -> dict | None:
    """The results.json saved with a model: in its folder or the folder above (a `--save-dir`),
    or in its Hub repo (read through the Hub cache, so offline it needs a cached copy)."""
    folder = Path(source)
    if folder.is_dir():
        path = next((p for p in (folder / "results.json", folder.parent / "results.json") if p.is_file()), None)
    else:
        try:
            path = Path(hf_hub_download(source, "results.json"))
        except (LocalEntryNotFoundError, HfHubHTTPError, HFValidationError, OSError):
            return None
    try:
        return json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return None


def recorded_numbers(results: dict | None, arm: str | None) -> tuple[float | None, list | None, bool, bool, str]:
    """(test accuracy, confusion, test-time flip, test-time shift, device) of one arm of a results JSON."""
    runs = {run["label"]: run for run in (results or {}).get("runs", [])}
    run = runs.get(arm) if arm else next(iter(runs.values()), None) if len(runs) == 1 else None
    if not run:
        return None, None, False, False, ""
    views = [bool(run["config"].get(name)) for name in ("test_time_flip", "test_time_shift")]
    return run.get("test_acc"), run.get("confusion"), *views, results.get("device_name", "")


def default_classifier() -> Classifier | None:
    """CIFAR10_MODEL's model, else the embedded one; None where neither loads (cifar10_model.message says why)."""
    return classifier_of(cifar10_model)


@functools.cache
def classifier_of(loader: ConfiguredModel) -> Classifier | None:
    """`loader`'s model and what is recorded with it, read once: every page load asks for it."""
    model = loader.get()
    if model is None:
        return None
    source = loader.source
    embedded = Path(source).resolve() == (EMBEDDED_FOLDER / EMBEDDED_ARM).resolve()
    arm = EMBEDDED_ARM if embedded else Path(source).name if Path(source).is_dir() else None
    name = "the embedded classifier (pretrained/classifier in this repository)" if embedded else f"the classifier this app was set up with ({source})"
    predictions = Path(source) / TEST_PREDICTIONS
    classifier = Classifier(model, name, *recorded_numbers(recorded_results(source), arm), predictions_file=predictions if predictions.is_file() else None)
    if classifier.predictions_file:  # the accuracy of exactly the predictions the matrix shows
        labels, predicted, _ = test_predictions(classifier)
        classifier.test_acc = (labels == predicted).float().mean().item()
        classifier.confusion = confusion(classifier)
    return classifier


def session_classifier(session: dict | None) -> Classifier | None:
    """The final CNN trained in this browser session, if there is one."""
    if not session or "final" not in session.get("models", {}):
        return None
    results = session["results"]
    return Classifier(session["models"]["final"], f"the final CNN trained in this session ({results['preset']} preset)", *recorded_numbers(results, "final"))


_predictions: "weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]" = weakref.WeakKeyDictionary()
_predictions_lock = threading.Lock()


def test_predictions(classifier: Classifier, download: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(true class, predicted class, confidence) of every CIFAR-10 test image, read from the
    recorded file or computed once per model in fp32 (the precision every host has), with the
    test-time flip its accuracy was measured with; `download`: fetch the test set if missing."""
    with _predictions_lock:
        if classifier.model not in _predictions:
            if classifier.predictions_file:
                recorded = load_file(classifier.predictions_file)
                _predictions[classifier.model] = recorded["label"].long(), recorded["predicted"].long(), recorded["confidence"].float()
            else:
                test = load_cifar10("test", download=download)
                device = next(classifier.model.parameters()).device
                predicted, confidence = predict(classifier.model, test, device, "fp32", classifier.test_time_flip, classifier.test_time_shift)
                _predictions[classifier.model] = test.labels, predicted.cpu(), confidence.cpu()
        return _predictions[classifier.model]


def confusion(classifier: Classifier) -> list[list[int]]:
    """The confusion matrix of the test predictions that `cell_examples` browses."""
    labels, predicted, _ = test_predictions(classifier)
    return confusion_matrix(labels, predicted, len(CIFAR10_CLASSES)).tolist()


def cell_examples(classifier: Classifier, true_class: int, predicted_class: int, download: bool = True) -> tuple[list[tuple[torch.Tensor, float]], int]:
    """Up to GALLERY_SIZE test images of `true_class` that the model called `predicted_class`,
    as (3×32×32 uint8 image, confidence), most confident first, and how many there are in all;
    `download`: fetch the test set if missing."""
    labels, predicted, confidence = test_predictions(classifier, download)
    cell = torch.nonzero((labels == true_class) & (predicted == predicted_class)).flatten()
    order = cell[confidence[cell].argsort(descending=True)][:GALLERY_SIZE]
    test = load_cifar10("test", download=download)
    if not torch.equal(test.labels, labels):
        raise DatasetMissingError("the CIFAR-10 test set here is not the one the model's predictions were recorded on")
    return [(test.images[i], confidence[i].item()) for i in order.tolist()], len(cell)
