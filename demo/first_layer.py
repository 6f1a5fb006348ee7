"""Pictures of a network's first layer for the Final CNN tab: its filters, and the feature maps
they make of a photo, enlarged so that each pixel is a visible square: the view CNN Explainer gives of every layer, here
of the first, drawn from the network that classified the photo."""

import weakref

import torch
from PIL import Image

from demo.views import image_file
from training.datasets import CIFAR10_DATASET
from training.loader import model_input

TILE_BORDER = 4  # pixels between two filters or two feature maps
FILTER_PIXELS = 48  # on-screen side of one first-layer filter, whatever its size (3×3, or the embedded model's 2×2)
MAPS_SHOWN = 32  # feature maps drawn of a photo, at most: four rows of eight on a phone


def enlarged(image: torch.Tensor, scale: int):
    """3,H,W float in [0, 1] or uint8 → H·scale × W·scale × 3 uint8, each pixel a visible square."""
    image = image.float() / 255 if image.dtype == torch.uint8 else image
    image = torch.nn.functional.interpolate(image[None], scale_factor=scale, mode="nearest")[0]
    return (image.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()


def tiles(maps: torch.Tensor, columns: int, scale: int):
    """B,C,H,W float → one image of tiles, each min-max scaled on its own and enlarged by `scale`,
    with borders of TILE_BORDER pixels whatever the scale."""
    low = maps.amin(dim=(1, 2, 3), keepdim=True)
    high = maps.amax(dim=(1, 2, 3), keepdim=True)
    maps = torch.nn.functional.interpolate((maps - low) / (high - low + 1e-8), scale_factor=scale, mode="nearest")
    from torchvision.utils import make_grid  # at first use: see training/sources.py

    grid = make_grid(maps, nrow=columns, padding=TILE_BORDER, pad_value=1.0)
    return enlarged(grid, 1)


_filters_shown: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def filters_file(model: torch.nn.Module) -> str:
    """The picture of a model's first-layer filters, drawn once per model: it is the same for
    every photo the model sees."""
    if model not in _filters_shown:
        filters = model.features[0].conv.weight.float().cpu()  # C, 3, k, k
        _filters_shown[model] = image_file(tiles(filters, columns=8, scale=FILTER_PIXELS // filters.shape[-1]), owner=model)
    return _filters_shown[model]


@torch.no_grad()
def feature_maps_file(model: torch.nn.Module, image: Image.Image, session: str | None) -> str:
    """The picture of what the model's first layer makes of a photo, one tile per channel, kept
    for the session that sent the photo."""
    first = model.features[0]
    maps = first(model_input(image, CIFAR10_DATASET).to(first.conv.weight.device))[0, :MAPS_SHOWN].float().cpu()  # channels, side, side
    return image_file(tiles(maps[:, None], columns=8, scale=3), owner=session or "anonymous")
