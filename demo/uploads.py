"""Uploaded photos and the classifiers that label them.

`open_upload` opens every upload itself, so that anything PIL can read is
converted (grayscale, alpha, palette, 16-bit, CMYK, EXIF rotation, the first frame of an animated
GIF) and everything else — a corrupt or non-image file, a decompression bomb, a file over the
size limit — becomes a clear `gr.Error` instead of a stack trace.
"""

import io
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import IO

import gradio as gr
import numpy as np
import torch
from gradio.utils import get_upload_folder
from huggingface_hub import SpaceCard
from PIL import Image, ImageOps, UnidentifiedImageError

from models.checkpoint import ArchitectureMismatchError, CheckpointError, load_pretrained
from serving.lru import BoundedLRU
from training.datasets import DatasetSpec
from training.evaluation import view_logits
from training.loader import model_input

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB; more is refused unread
# Pixels a JPEG is decoded at, at least, a side: what any answer shows (a 512-pixel photo) or
# reads (224). PIL's draft decodes a large JPEG at a half, quarter or eighth of its size instead.
DECODED_SIDE = 512


class Refusal(gr.Error):
    """An expected refusal (no model yet, a file that is not a photo): a message for the page,
    without the traceback Gradio prints into the server's log for any other error."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


class PhotoError(ValueError):
    """Why a file is not a photo this app can use."""


class OverBudget(ValueError):
    """A request's photos come to more pixels than it may decode; the message says what to send."""


class PixelBudget:
    """The pixels one request may decode, all its photos together: what bounds the CPU a single
    upload can take (a 100 MB zip of compressible 40-megapixel PNGs is 24 gigapixels)."""

    def __init__(self, megapixels: float):
        self.megapixels = megapixels
        self.left = megapixels * 10**6

    def spend(self, width: int, height: int) -> None:
        self.left -= width * height
        if self.left < 0:
            raise OverBudget(
                f"These photos come to more than the {self.megapixels:g} megapixels one upload may decode here: send fewer or "
                "smaller photos, or JPEGs (a large JPEG is read at a reduced size)."
            )


# Gradio names an upload by its content, so students who send the same photo at once share one
# file: the first answer deletes it, and the others read it from here, in memory, for RECENT_S.
RECENT_S = 60
RECENT_BYTES = 128 * 2**20  # a whole zip of photos (100 MB) fits
_recent = BoundedLRU(too_full=lambda recent: sum(len(data) for _, data in recent.values()) > RECENT_BYTES)  # path → (read at, bytes)


def read_upload(path: str, limit_bytes: int) -> bytes:
    """An upload's bytes, from its file or, where an identical upload's answer already deleted
    it, from memory; a PhotoError over `limit_bytes`, FileNotFoundError where neither has it."""
    try:
        if os.path.getsize(path) > limit_bytes:
            raise PhotoError(f"That file is over {limit_bytes // 2**20} MB; send a smaller one.")
        data = Path(path).read_bytes()
    except FileNotFoundError:
        read_at, data = _recent.get(path, (-math.inf, b""))
        if time.monotonic() - read_at > RECENT_S:
            raise
        return data
    _recent[path] = (time.monotonic(), data)
    return data


def consume(path: str | None) -> None:
    """Delete an upload once it is read, so that nothing a student sends stays on the server's
    disk. Only Gradio's own uploads: a path on this host that an API caller names (an example
    photo from DATA_DIR) is not ours to delete."""
    if not path:
        return
    try:
        file = Path(path).resolve()
        if file.is_relative_to(Path(get_upload_folder()).resolve()):
            file.unlink(missing_ok=True)
    except OSError:  # Windows: still open elsewhere; Gradio's delete_cache takes it within the hour
        pass


def open_upload(path: str | None) -> Image.Image:
    """An uploaded file as an RGB PIL image, or a gr.Error saying why it cannot be used. The
    upload is deleted once read, whatever it held."""
    if not path:
        raise Refusal("Upload an image first.")
    try:
        data = read_upload(path, MAX_UPLOAD_BYTES)
        return read_photo(io.BytesIO(data), len(data), PixelBudget(MAX_UPLOAD_PIXELS / 10**6))
    except (PhotoError, OverBudget) as error:
        raise Refusal(str(error)) from None
    except FileNotFoundError:
        raise Refusal("That upload is no longer on the server (each photo is deleted once it is read): upload it again.") from None
    finally:
        consume(path)


def read_photo(file: IO[bytes], size: int, budget: PixelBudget) -> Image.Image:
    """A photo of `size` bytes read from `file` as an RGB PIL image, or a PhotoError saying why
    not; what it decodes is taken from `budget` (an OverBudget once that is spent)."""
    if size > MAX_UPLOAD_BYTES:
        raise PhotoError(f"That file is over {MAX_UPLOAD_BYTES // 2**20} MB; upload a smaller image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(file)
            if image.width * image.height > MAX_UPLOAD_PIXELS:
                raise PhotoError(f"That image is {image.width}×{image.height} pixels, more than the {MAX_UPLOAD_PIXELS // 10**6} megapixels allowed.")
            image.draft("RGB", (DECODED_SIDE, DECODED_SIDE))  # a JPEG only: decoded at 1/2, 1/4 or 1/8 where that still covers the side
            budget.spend(*image.size)
            image.seek(0)  # the first frame of an animation
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except (PhotoError, OverBudget):
        raise  # ValueErrors: let their messages through unchanged
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, SyntaxError, ValueError) as error:
        raise PhotoError(f"That file is not an image this app can read ({type(error).__name__}). Upload a PNG, JPEG, GIF, BMP or WebP photo.") from None


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: keep the top 8 bits rather than clipping everything above 255.
        pixels = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((pixels >> (8 if pixels.max() < 65536 else 24)).astype(np.uint8), "L")
    if image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent pixels become white, as a viewer shows them, not black.
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def image_upload(label: str) -> gr.File:
    """An upload box for one image. A gr.File, not a gr.Image: gr.Image opens the file with PIL
    before the handler runs, so a corrupt upload would fail there with a generic error instead
    of the clear one `open_upload` gives."""
    return gr.File(label=label, file_types=["image"], type="filepath", height=140)


@torch.no_grad()
def classify(model: torch.nn.Module, image: Image.Image, spec: DatasetSpec, flip: bool = False, shift: bool = False) -> dict[str, float]:
    """Class probabilities of one image, from the logits of the test-time views `flip` and
    `shift` ask for (training.evaluation.view_logits: as the model's test accuracy was measured)."""
    model.eval()
    device = next(model.parameters()).device
    logits = view_logits(model, model_input(image, spec).to(device), flip, shift)
    probabilities = logits.float().softmax(dim=1)[0]
    return dict(zip(spec.classes, probabilities.tolist()))


# The app's own README: on a Space it is the Space card, whose `models:` lists the classifiers the
# build preloaded (`python -m training publish --space-card README.md` puts them there).
SPACE_CARD = Path(__file__).parent.parent / "README.md"


def space_card_models() -> list[str]:
    """The repo ids under `models:` in the Space card (none when it has no such list)."""
    return list(SpaceCard.load(SPACE_CARD).data.models or [])


class ConfiguredModel:
    """The classifier named by an environment variable (Hub repo id or local folder), else the
    first model of the Space card's `models:` that fits `model_classes`, else `default` (a
    folder), loaded once.

    A failure is remembered as a message for the UI; the app keeps serving either way.
    """

    def __init__(self, variable: str, model_classes: type[torch.nn.Module] | tuple[type[torch.nn.Module], ...], default: str | None = None):
        self.variable = variable
        self.model_classes = model_classes  # the checkpoint is loaded as the first of them it fits
        self.default = default
        self._lock = threading.Lock()
        self._loaded = False
        self.model: torch.nn.Module | None = None
        self.source: str | None = None  # where the model came from
        self.message = ""

    def _load(self, source: str, named: str) -> bool:
        try:
            self.model = load_pretrained(self.model_classes, source)
        except CheckpointError as error:
            self.message = f"{named} could not be loaded: {error}"
            return False
        self.source, self.message = source, f"Using {source}."
        return True

    def get(self) -> torch.nn.Module | None:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                chosen = os.environ.get(self.variable)
                if chosen:
                    self._load(chosen, f"{self.variable}={chosen}")
                    return self.model
                # The card lists every classifier of the Space; this one is the first that fits.
                for repo in space_card_models():
                    try:
                        self.model = load_pretrained(self.model_classes, repo)
                    except ArchitectureMismatchError:
                        continue  # another tab's classifier
                    except CheckpointError as error:
                        self.message = f"{repo} (in the Space card) could not be loaded: {error}"
                        continue
                    self.source, self.message = repo, f"Using {repo}, from the Space card."
                    return self.model
                if self.default:
                    self._load(self.default, f"The default model {self.default}")
                elif not self.message:
                    self.message = f"{self.variable} is not set."
            return self.model
