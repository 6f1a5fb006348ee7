"""Load a trained classifier from a local `save_pretrained` folder or a Hugging Face Hub repo.

`from_pretrained` of huggingface_hub's PyTorchModelHubMixin does the work: it reads a local
folder directly, and for a repo id uses the Hub cache, honouring HF_HUB_OFFLINE. This module
only loads strictly and turns every way that can fail into one clear `CheckpointError`.
"""

import hashlib
import json
from pathlib import Path

from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors import SafetensorError
import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreachable, corrupt or of another architecture."""


class ArchitectureMismatchError(CheckpointError):
    """The checkpoint is of another architecture than the class asked to load it (the message
    says how it differs)."""


def load_pretrained(model_classes: type[nn.Module] | tuple[type[nn.Module], ...], source: str) -> nn.Module:
    """`from_pretrained(source)` of the first of `model_classes` whose architecture the checkpoint
    fits, strict, in eval mode, or a CheckpointError."""
    classes = model_classes if isinstance(model_classes, tuple) else (model_classes,)
    mismatches = []
    for model_class in classes:
        try:
            return _load(model_class, source)
        except ArchitectureMismatchError as error:
            mismatches.append(error)
    kind = "folder" if Path(source).exists() else "Hub repo"
    names = " or ".join(c.__name__ for c in classes)
    raise ArchitectureMismatchError(f"The checkpoint in {kind} {source!r} does not fit the {names} architecture: {mismatches[0]}")


def _load(model_class: type[nn.Module], source: str) -> nn.Module:
    kind = "folder" if Path(source).exists() else "Hub repo"
    try:
        model = model_class.from_pretrained(source, strict=True)
    except (LocalEntryNotFoundError, FileNotFoundError) as error:
        raise CheckpointError(
            f"No checkpoint at {kind} {source!r}: it is not in the local Hub cache and the Hub cannot be reached "
            f"(offline, or HF_HUB_OFFLINE=1). Point the variable at a local save_pretrained folder, or connect once to cache it. ({error})"
        ) from None
    except (RepositoryNotFoundError, HFValidationError) as error:
        raise CheckpointError(f"{source!r} is neither a local folder nor a Hub repo that can be read: {error}") from None
    except (SafetensorError, OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"The checkpoint in {kind} {source!r} is corrupt or unreadable: {error}") from None
    except (RuntimeError, TypeError, KeyError, ValueError) as error:
        # Missing/unexpected keys, shape mismatches, and config arguments of another model that
        # its constructor rejects.
        raise ArchitectureMismatchError(str(error)[:400]) from None
    return model.eval()


def foreign_digest(path: Path) -> str | None:
    """The SHA-256 of a checkpoint whose content is not what its name says (torch's convention:
    `name-<first hex digits of its SHA-256>.ext`), or None where it matches or the name holds no hash."""
    prefix = torch.hub.HASH_REGEX.search(path.name)
    if not prefix:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    return None if digest.hexdigest().startswith(prefix.group(1)) else digest.hexdigest()
