"""Load a trained classifier from a local `save_pretrained` folder or a Hugging Face Hub repo.

`from_pretrained` of huggingface_hub's PyTorchModelHubMixin does the work: it reads a local
folder directly, and for a repo id uses the Hub cache, honouring HF_HUB_OFFLINE. This module
only loads strictly and turns every way that can fail into one clear `CheckpointError`.
"""

from pathlib import Path

from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors import SafetensorError
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreachable, corrupt or of another architecture."""


def load_pretrained(model_class: type[nn.Module], source: str) -> nn.Module:
    """`model_class.from_pretrained(source)`, strict, in eval mode, or a CheckpointError."""
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
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"The checkpoint in {kind} {source!r} is corrupt or unreadable: {error}") from None
    except (RuntimeError, TypeError, KeyError) as error:
        # Missing/unexpected keys, shape mismatches and config arguments of another model.
        raise CheckpointError(f"The checkpoint in {kind} {source!r} does not fit the {model_class.__name__} architecture: {str(error)[:400]}") from None
    return model.eval()
