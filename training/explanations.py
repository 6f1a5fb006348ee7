"""Why this answer: where in a photo a trained network found its evidence for a class, computed with
captum (PyTorch's interpretability library), and the two checks that decide whether such a map may
be shown at all.

- Occlusion (captum.attr.Occlusion), for every network the app explains: it greys out a patch at a
  time (a quarter of the side, every eighth) and reads how much the class's score falls, so it
  assumes nothing of the network's inside; that is 49 forward passes in one batch, 0.08 s for the
  embedded CIFAR-10 classifier and 0.6 s for AlexNet on the weak host.
- Grad-CAM (captum.attr.LayerGradCam) at the last conv layer: one forward and one backward pass,
  ten to twenty times cheaper, but it failed a check on each network it was measured on (the
  randomisation check on the embedded classifier, the deletion check on our fine-tuned AlexNet), so
  it is measured, not shown.

A map is faithful when removing what it marks hurts the answer: `deletion` greys out the map's most
relevant 20% of the image and, separately, a random 20%, and compares how far the class's probability
falls (the deletion measure of Samek et al., 2017). `randomised` is
Adebayo et al.'s model-randomisation check (2018): a map that barely changes when the network's
weights are re-initialised explains the image, not the network. benchmarks/explanations.py measures
both on the real test sets and writes results/explanations.json; a method that fails either on a
network is not offered for it (`METHODS`).
"""

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from training.loader import model_pixels, normalize

DELETED_SHARE = 0.2  # of the input's pixels, by the map or at random


def occlusion(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """How much greying out each patch (a quarter of the side, every eighth) lowers the class's
    score, per pixel: 1×H×W. Grey is the dataset's mean colour, 0 after normalisation."""
    from captum.attr import Occlusion  # here, not at the top: captum takes about a second to import, off the app's cold start

    side = x.shape[-1]
    window, stride = max(2, side // 4), max(1, side // 8)
    attributions = Occlusion(model).attribute(x, target=target, sliding_window_shapes=(x.shape[1], window, window), strides=(x.shape[1], stride, stride), baselines=0.0, perturbations_per_eval=64)
    return attributions.sum(dim=1)[0]


def last_conv(model: nn.Module) -> nn.Conv2d:
    return [module for module in model.modules() if isinstance(module, nn.Conv2d)][-1]


def grad_cam(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM at the last conv layer: its channels weighted by their mean gradient for the class,
    summed, kept where positive, and upsampled to the input: 1×H×W."""
    from captum.attr import LayerAttribution, LayerGradCam  # here: see occlusion

    cam = LayerGradCam(model, last_conv(model)).attribute(x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(cam, x.shape[-2:], interpolate_mode="bilinear")[0, 0]


Method = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]
# What each network's answers are explained by (its class name → method name), as measured by
# benchmarks/explanations.py: each passed the deletion and the randomisation checks on it.
METHODS: dict[str, Method] = {"occlusion": occlusion, "grad-cam": grad_cam}
METHOD_FOR = {"AirbenchCNN": "occlusion", "TeachingCNN": "occlusion", "AlexNetTransfer": "occlusion"}


def method_for(model: nn.Module) -> str:
    return METHOD_FOR[type(model).__name__]


def relevance(model: nn.Module, x: torch.Tensor, target: int, method: str | None = None) -> torch.Tensor:
    """The map, H×W in [0, 1]: the evidence for class `target` in the 1×C×H×W input `x`, 1 where
    it is strongest (evidence against it counts as none)."""
    model.eval()
    with torch.enable_grad():
        found = METHODS[method or method_for(model)](model, x, target).detach().clamp(min=0)
    top = found.max()
    return found / top if top > 0 else found


def probability(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """The class's softmax probability for each image of a batch."""
    with torch.no_grad():
        return model(x).float().softmax(dim=1)[:, target]


# Deletion greys out square patches, an eighth of the side each, never single pixels: pixels greyed
# out one here and one there make a speckled image no photo looks like, which fooled the network
# more than any region did (benchmarks/explanations.py measured it), so random deletion "won".
PATCHES_PER_SIDE = 8


def deleted(x: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """`x` with the given patches (flat indices into the PATCHES_PER_SIDE² grid) greyed out (0: the
    dataset's mean colour)."""
    H, W = x.shape[-2:]
    keep = torch.ones(PATCHES_PER_SIDE * PATCHES_PER_SIDE, dtype=x.dtype)
    keep[patches] = 0
    mask = nn.functional.interpolate(keep.reshape(1, 1, PATCHES_PER_SIDE, PATCHES_PER_SIDE), size=(H, W), mode="nearest")
    return x * mask


def deletion(model: nn.Module, x: torch.Tensor, target: int, found: torch.Tensor, generator: torch.Generator) -> tuple[float, float]:
    """How far the class's probability falls, in points, when the map's most relevant 20% of the
    image (by patch) is greyed out, and when as many patches chosen at random are."""
    per_patch = nn.functional.adaptive_avg_pool2d(found[None, None], PATCHES_PER_SIDE).flatten()
    count = round(DELETED_SHARE * per_patch.numel())
    # Ties (a map that is flat somewhere) are broken at random, not by position.
    jitter = torch.rand(per_patch.numel(), generator=generator) * 1e-6
    by_map = (per_patch + jitter).argsort(descending=True)[:count]
    at_random = torch.randperm(per_patch.numel(), generator=generator)[:count]
    batch = torch.cat([x, deleted(x, by_map), deleted(x, at_random)])
    before, after_map, after_random = (100 * probability(model, batch, target)).tolist()
    return before - after_map, before - after_random


def reinitialised(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of the network with every layer's weights drawn afresh: the randomisation check's
    network, trained on nothing."""
    torch.manual_seed(seed)
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        if module is not fresh and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh.eval()


def rank_correlation(first: torch.Tensor, second: torch.Tensor) -> float:
    """Spearman's correlation of two maps' pixels: 1 where they rank the pixels alike."""
    ranks = [m.flatten().argsort().argsort().double() for m in (first, second)]
    a, b = (r - r.mean() for r in ranks)
    norm = a.norm() * b.norm()
    return float((a @ b) / norm) if norm > 0 else 0.0


# A map passes when deleting what it marks hurts the answer more than deleting as much at random, on
# average and on more images than a coin would pick (over half by twice a fair coin's σ, 0.5/√n), and
# when the randomised network's maps rank pixels unlike it.
RANDOMISED_AT_MOST = 0.5


def passes(measured: dict) -> bool:
    """Whether a method's measures on a network (benchmarks/explanations.py) pass both checks."""
    beyond_chance = 0.5 + 1 / math.sqrt(measured["images"])
    deletion_holds = measured["map_drop"] > measured["random_drop"] and measured["map_wins"] > beyond_chance
    return deletion_holds and abs(measured["rank_correlation_with_randomised"]) <= RANDOMISED_AT_MOST


def explain(model: nn.Module, image, spec, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A photo (PIL) as the network reads it, uint8 3×crop×crop, and the map of its evidence for
    class `target`, crop×crop."""
    pixels = model_pixels(image, spec)
    x = normalize(pixels, spec.mean, spec.std).to(next(model.parameters()).device)
    return pixels[0], relevance(model, x, target).cpu()
