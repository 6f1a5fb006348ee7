"""A trained model's predictions on a test split and the confusion matrix they make.

Evaluation runs without gradients, in batches as large as the device takes well, in the
precision asked for. With the test-time flip (as airbench evaluates) each prediction averages
the logits of an image and of its mirror image; with the test-time shift (airbench's
`tta_level=2`) that average is averaged, half and half, with the same views of the image moved by
a pixel up-left and down-right (its edges mirrored). The engine evaluates with `evaluate`; the app
and `reproduce` call `predict` and `confusion_matrix` themselves, to know which test images land
in each cell of the matrix.
"""

import torch
from torch import nn

from training.datasets import ImageTensors
from training.loader import BatchLoader


def eval_batch_size(data: ImageTensors, device: torch.device) -> int:
    # Evaluation keeps no activations for backward, so a GPU takes large batches (4096 CIFAR
    # images). A CPU is fastest when a batch's activations stay in cache: 2,000 CIFAR test
    # images took 0.38 s in batches of 256 and 0.77 s in batches of 2048 (2 cores, bf16).
    pixels = 2**18 if device.type == "cpu" else 2**22
    return max(1, pixels // data.spec.crop_size**2)


def view_logits(model: nn.Module, x: torch.Tensor, flip: bool = False, shift: bool = False) -> torch.Tensor:
    """The model's logits for a normalised batch, averaged over its test-time views (see the module)."""
    logits = model(x).float()
    if flip:
        logits = (logits + model(x.flip(-1)).float()) / 2
    if not shift:
        return logits
    H, W = x.shape[-2:]
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [view_logits(model, padded[..., top : top + H, left : left + W], flip) for top, left in ((0, 0), (2, 2))]
    return (logits + (shifted[0] + shifted[1]) / 2) / 2


@torch.no_grad()
def predict(model: nn.Module, data: ImageTensors, device: torch.device, precision: str, flip: bool = False, shift: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's predicted class and the probability `model` gives it, on `device`, averaged
    over the test-time views `flip` and `shift` ask for (see the module)."""
    was_training = model.training
    model.eval()
    predicted, confidence = [], []
    for x, _ in BatchLoader(data, eval_batch_size(data, device), device, train=False):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = view_logits(model, x, flip, shift)
        top = logits.softmax(dim=1).max(dim=1)
        confidence.append(top.values)
        predicted.append(top.indices)
    model.train(was_training)
    return torch.cat(predicted), torch.cat(confidence)


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts of (true class, predicted class) pairs as a num_classes × num_classes matrix."""
    k = num_classes
    return torch.bincount(labels * k + predicted, minlength=k * k).view(k, k)


def evaluate(model: nn.Module, data: ImageTensors, device: torch.device, precision: str, flip: bool = False, shift: bool = False) -> torch.Tensor:
    """The confusion matrix (true × predicted) of `model` on `data` (see `predict`)."""
    predicted, _ = predict(model, data, device, precision, flip, shift)
    return confusion_matrix(data.labels.to(device), predicted, len(data.spec.classes)).cpu()


def accuracy(confusion: torch.Tensor, test_data: ImageTensors) -> float:
    """The share of the test images on the confusion matrix's diagonal."""
    return confusion.diag().sum().item() / len(test_data)
