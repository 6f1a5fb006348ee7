"""Why this answer: the explanation methods mark where the evidence is, and the deletion check tells a
faithful map from a random one, on a network whose evidence we placed ourselves."""

import shutil
import statistics
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from demo import why
from demo.tabs import final_cnn, transfer
from handlers import SMALL, last
from models import AlexNetTransfer
from serving.model_store import HeldModels
from training import explanations

CAT = Path(__file__).parent / "assets" / "cat.jpg"


class TwoCorners(nn.Module):
    """Class 0's evidence is the image's top-left quarter, class 1's its bottom-right: each corner's
    pixels, masked, go through a 1×1 conv of their own (the channels' mean), then are summed."""

    def __init__(self, side: int = 32):
        super().__init__()
        masks = torch.zeros(2, 1, side, side)
        masks[0, :, : side // 2, : side // 2] = 1
        masks[1, :, side // 2 :, side // 2 :] = 1
        self.register_buffer("masks", masks)
        self.conv = nn.Conv2d(6, 2, kernel_size=1, groups=2, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corners = torch.cat([x * self.masks[0], x * self.masks[1]], dim=1)  # B, 6, H, W
        return self.conv(corners).mean(dim=(2, 3)) * 8  # B, 2


def images(count: int, side: int = 32) -> torch.Tensor:
    """Bright photos (every pixel above the mean colour, 0), evidence for both classes everywhere."""
    return torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(0)) + 0.5


def deletion_measures(model: nn.Module, method, count: int = 24) -> dict:
    generator = torch.Generator().manual_seed(1)
    drops = []
    for x in images(count):
        x = x[None]
        target = int(model(x).argmax())
        drops.append(explanations.deletion(model, x, target, method(x, target), generator))
    by_map, at_random = zip(*drops)
    return {"images": count, "map_drop": statistics.fmean(by_map), "random_drop": statistics.fmean(at_random), "map_wins": sum(m > r for m, r in drops) / count, "rank_correlation_with_randomised": 0.0}


@pytest.mark.parametrize("method", list(explanations.METHODS))
def test_each_method_marks_the_corner_that_holds_the_evidence(method):
    model = TwoCorners().eval()
    x = images(1)
    for target, (rows, columns) in enumerate(((slice(0, 16), slice(0, 16)), (slice(16, 32), slice(16, 32)))):
        found = explanations.relevance(model, x, target, method)
        assert found.shape == (32, 32) and found.min() >= 0 and found.max() == 1
        inside = found[rows, columns].mean()
        assert inside > 3 * found.mean(), (method, target)  # a quarter of the image holds nearly all of it


@pytest.mark.parametrize("method", list(explanations.METHODS))
def test_the_deletion_check_passes_a_faithful_map_and_fails_a_random_one(method):
    model = TwoCorners().eval()
    faithful = deletion_measures(model, lambda x, target: explanations.relevance(model, x, target, method))
    assert explanations.passes(faithful), faithful
    noise = torch.Generator().manual_seed(2)
    random_map = deletion_measures(model, lambda x, target: torch.rand(32, 32, generator=noise))
    assert not explanations.passes(random_map), random_map


def test_the_randomisation_check_fails_a_map_that_does_not_depend_on_the_weights():
    assert not explanations.passes({"images": 500, "map_drop": 30.0, "random_drop": 10.0, "map_wins": 0.9, "rank_correlation_with_randomised": 0.8})
    assert explanations.passes({"images": 500, "map_drop": 30.0, "random_drop": 10.0, "map_wins": 0.9, "rank_correlation_with_randomised": 0.1})
    found = torch.rand(8, 8, generator=torch.Generator().manual_seed(3))
    assert explanations.rank_correlation(found, 2 * found + 1) == pytest.approx(1.0)
    assert explanations.rank_correlation(found, -found) == pytest.approx(-1.0)


def test_the_randomised_network_is_a_fresh_copy():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = [p.clone() for p in model.parameters()]
    fresh = explanations.reinitialised(model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the trained one is untouched
    assert not torch.equal(fresh[0].weight, model[0].weight)


def shown_photo(path) -> np.ndarray:
    """A photo as the page's image box hands it to a handler."""
    return np.asarray(Image.open(path).convert("RGB"))


def panels(picture: dict) -> float:
    """How many square maps side by side a shown picture holds (its width over its height, about)."""
    assert picture["visible"] is True
    width, height = Image.open(picture["value"]).size
    return width / height


def test_the_final_cnn_explains_its_answer_and_any_class_picked_and_its_endpoint_gives_the_map(tmp_path):
    photo = shown_photo(CAT)
    picture, words = final_cnn.why_cifar10(photo)
    assert words.startswith("**Where it found “cat”.** Bright where greying out that patch") and round(panels(picture)) == 1
    _, words = final_cnn.why_cifar10(photo, explained_class="dog")
    assert words.startswith("**Where it found “dog”.**")
    assert final_cnn.why_cifar10(None) == why.nothing()  # nothing answered, nothing to explain
    upload = tmp_path / "cat.jpg"
    shutil.copy(CAT, upload)
    probabilities, found = final_cnn.explain_cifar10(str(upload))
    assert max(probabilities, key=probabilities.get) == "cat" and len(probabilities) == 10
    assert (found.mode, found.size) == ("L", (32, 32)) and np.asarray(found).max() == 255
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(gr.Error, match="not an image this app can read"):
        final_cnn.explain_cifar10(str(tmp_path / "notes.png"))


def test_a_session_model_is_explained_beside_the_default_one_and_a_confusion_cells_image_too(tiny_data, tmp_path):
    *_, session, _, _, choice, _, _ = last(final_cnn.TAB.handler(False, **SMALL))
    picture, words = final_cnn.why_cifar10(shown_photo(CAT), choice, session)
    assert round(panels(picture)) == 2 and "Where it found" in words
    confusion = session["results"]["runs"][0]["confusion"]
    true, predicted = next((t, p) for t, row in enumerate(confusion) for p, count in enumerate(row) if count)  # a cell with images
    classes = final_cnn.CIFAR10_DATASET.classes
    picture, words = final_cnn.why_cell(gr.SelectData(None, {"index": 0, "value": None}), classes[true], classes[predicted], choice, session)
    assert round(panels(picture)) == 2 and words.startswith(f"**Where it found “{classes[predicted]}”.**")


def test_transfer_explains_each_arm_trained_side_by_side_and_its_endpoint_gives_a_224_map(tmp_path, monkeypatch, imagenet_weights):
    monkeypatch.setattr(transfer.ants_bees_model, "_loaded", True)  # no ANTS_BEES_MODEL: the session's arms answer
    monkeypatch.setattr(transfer.ants_bees_model, "model", None)
    session = {"models": HeldModels({arm: AlexNetTransfer(mode=arm.replace(" ", "_")).eval() for arm in ("feature extraction", "fine tuning")})}
    Image.new("RGB", (300, 200), (250, 200, 0)).save(tmp_path / "bee.png")
    picture, words = transfer.why_ants_bees(shown_photo(tmp_path / "bee.png"), "fine tuning", session)
    assert round(panels(picture)) == 2 and "Measured on 153 validation photos (AlexNet trained here from stand-in weights" in words
    assert transfer.why_ants_bees(shown_photo(tmp_path / "bee.png"), "fine tuning", None) == why.nothing()  # nothing trained yet
    probabilities, found = transfer.explain_ants_bees(str(tmp_path / "bee.png"), "fine tuning", session)
    assert set(probabilities) == {"ants", "bees"} and (found.mode, found.size) == ("L", (224, 224))


def test_each_network_is_explained_by_a_method_that_passed_both_checks_where_it_was_measured():
    """results/explanations.json (benchmarks/explanations.py, on real test images): the method the
    app shows for a kind of network passed the deletion and randomisation checks on every network
    of that kind measured, and a method that failed either is not the one shown."""
    import json

    recorded = json.loads((Path(__file__).parent.parent / "results" / "explanations.json").read_text())
    kinds = {network["model"] for network in recorded["networks"].values()}
    assert kinds == set(explanations.METHOD_FOR)  # every kind the app explains was measured
    for name, network in recorded["networks"].items():
        shown = explanations.METHOD_FOR[network["model"]]
        assert explanations.passes(network["methods"][shown]), (name, shown, network["methods"][shown])
