"""Batches on the training device: a decoded split moves there once, as uint8, and whole batches
are cut, cropped, flipped and normalised there.

After airbench: no per-sample `DataLoader` and no worker processes in the hot path. Every random
draw (shuffle, crop, flip) comes from a CPU generator seeded by the run's seed, so two loaders
with the same seed yield the same batches on any device.
"""

import torch
from PIL import Image

from training.datasets import DatasetSpec, ImageTensors
from training.images import square_rgb


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


def model_pixels(image: Image.Image, spec: DatasetSpec) -> torch.Tensor:
    """One PIL image as the pixels a model of this dataset reads: uint8, 1×3×crop×crop."""
    pixels = torch.from_numpy(square_rgb(image, spec.stored_size).copy()).permute(2, 0, 1)[None]
    return center_crop(pixels, spec.crop_size)


def model_input(image: Image.Image, spec: DatasetSpec) -> torch.Tensor:
    """One PIL image as the normalised 1×3×crop×crop batch a model of this dataset expects."""
    return normalize(model_pixels(image, spec), spec.mean, spec.std)


def draw_crops(count: int, side: int, size: int, padding: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random crop offsets and flips for a batch of `count` images of side `side`, drawn on the
    CPU generator so that every device (and FeatureLoader) sees the same draws."""
    dy = torch.randint(0, side + 2 * padding - size + 1, (count,), generator=generator)
    dx = torch.randint(0, side + 2 * padding - size + 1, (count,), generator=generator)
    flip = torch.rand(count, generator=generator) < 0.5
    return dy, dx, flip


def reflected(positions: torch.Tensor, side: int) -> torch.Tensor:
    """Positions in an image padded by reflection, as positions in the image itself."""
    positions = positions.abs()
    return torch.where(positions > side - 1, 2 * (side - 1) - positions, positions)


def random_crop_flip(images: torch.Tensor, size: int, padding: int, generator: torch.Generator, padding_mode: str = "zeros", flip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample random crop (after zero or reflect padding) and horizontal flip of a whole
    batch, by gather; `flip` (one bool per image) replaces the random flips where given."""
    B, C, H, W = images.shape
    dy, dx, drawn = draw_crops(B, H, size, padding, generator)
    dy, dx, flip = (t.to(images.device) for t in (dy, dx, drawn if flip is None else flip))
    steps = torch.arange(size, device=images.device)
    rows = dy[:, None] + steps
    cols = torch.where(flip[:, None], dx[:, None] + size - 1 - steps, dx[:, None] + steps)
    if padding and padding_mode == "reflect":
        # Reflection needs no padded copy: each padded position maps back into the image.
        rows, cols = reflected(rows - padding, H), reflected(cols - padding, W)
    elif padding:
        images = torch.nn.functional.pad(images, (padding,) * 4)
    batch = torch.arange(B, device=images.device).view(B, 1, 1, 1)
    channel = torch.arange(C, device=images.device).view(1, C, 1, 1)
    return images[batch, channel, rows.view(B, 1, size, 1), cols.view(B, 1, 1, size)]


class BatchLoader:
    """Epochs of (images, labels) batches from one `ImageTensors`, on `device`.

    Training loaders shuffle, augment and drop a last incomplete batch (it would make one step
    differ in size from all the others); evaluation loaders centre-crop in order.
    """

    def __init__(
        self,
        data: ImageTensors,
        batch_size: int,
        device: torch.device,
        train: bool,
        seed: int = 0,
        crop_padding: int | None = None,
        crop_padding_mode: str = "zeros",
        alternating_flip: bool = False,
    ):
        self.data = data
        self.crop_padding = data.spec.crop_padding if crop_padding is None else crop_padding
        self.crop_padding_mode = crop_padding_mode
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train = train
        self.generator = torch.Generator().manual_seed(seed)
        # The whole split moves to the device once, as uint8 (4× smaller than float).
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        # Alternating flips (airbench): each image starts mirrored or not at random, then
        # alternates, so that every two epochs show each image both ways round.
        # Kept on the device, beside the images, so that a batch's flips need no host round trip.
        self.first_flips = (torch.rand(len(data), generator=self.generator) < 0.5).to(self.device) if alternating_flip else None
        self.epoch = -1

    def flips(self, index: torch.Tensor) -> torch.Tensor | None:
        """This epoch's alternating flips of the images at `index`; None: flip at random."""
        if self.first_flips is None:
            return None
        return self.first_flips[index] ^ (self.epoch % 2 == 1)

    def __len__(self) -> int:
        n = len(self.data)
        return max(1, n // self.batch_size) if self.train else -(-n // self.batch_size)

    def batch_indices(self):
        """One epoch's batches as index tensors: shuffled for training, in order for evaluation."""
        n = len(self.data)
        self.epoch += 1
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.train else torch.arange(n, device=self.device)
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]

    def __iter__(self):
        spec = self.data.spec
        for index in self.batch_indices():
            images = self.images[index]
            if self.train:
                images = random_crop_flip(images, spec.crop_size, self.crop_padding, self.generator, self.crop_padding_mode, self.flips(index))
            else:
                images = center_crop(images, spec.crop_size)
            yield normalize(images, spec.mean, spec.std), self.labels[index]


class FeatureLoader(BatchLoader):
    """Training batches of a frozen prefix's outputs instead of images, for feature extraction.

    A frozen backbone maps the same image to the same features, so each photo's (as stored or
    mirrored) is computed once, when a batch first draws it, inside the arm's training clock. The
    first step then waits for one batch's forward pass, not the whole split's twice: Transfer
    learning's curves start within seconds. Batches make exactly BatchLoader's draws (order,
    offsets, flips) and look the features up, so training matches running the backbone every
    step. It applies where a training crop is the whole stored image, so that flips are the only
    augmentation.
    """

    def __init__(self, prefix: torch.nn.Module, data: ImageTensors, batch_size: int, device: torch.device, seed: int, autocast: bool, alternating_flip: bool = False):
        super().__init__(data, batch_size, device, train=True, seed=seed, alternating_flip=alternating_flip)
        self.prefix = prefix
        self.autocast = autocast
        self.features: torch.Tensor | None = None  # 2 (as stored, mirrored), N, D
        self.computed = torch.zeros(2, len(data), dtype=torch.bool, device=self.device)

    @staticmethod
    def supports(spec: DatasetSpec) -> bool:
        return spec.crop_size == spec.stored_size and spec.crop_padding == 0

    @torch.no_grad()
    def _compute(self, views: torch.Tensor, index: torch.Tensor) -> None:
        """The features of the (view, image) pairs of a batch that no batch drew before."""
        spec = self.data.spec
        for mirrored in (False, True):
            wanted = index[(views == int(mirrored)) & ~self.computed[int(mirrored), index]].unique()
            if not len(wanted):
                continue
            x = normalize(self.images[wanted], spec.mean, spec.std)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                out = self.prefix(x.flip(-1) if mirrored else x).float()
            if self.features is None:
                self.features = torch.empty(2, len(self.data), out.shape[1], device=self.device)
            self.features[int(mirrored), wanted] = out
            self.computed[int(mirrored), wanted] = True

    def __iter__(self):
        spec = self.data.spec
        for index in self.batch_indices():
            _, _, flip = draw_crops(len(index), spec.stored_size, spec.crop_size, spec.crop_padding, self.generator)
            alternating = self.flips(index)
            views = (flip if alternating is None else alternating).long().to(self.device)
            self._compute(views, index)
            yield self.features[views, index], self.labels[index]