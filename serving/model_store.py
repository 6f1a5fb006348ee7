"""The models browser sessions trained, held in one bounded store instead of in each session.

A session's State keeps a `HeldModels` handle, which reads like the dict of its models. The store
holds at most `MAX_BYTES` of weights: two fine-tuned AlexNets are 460 MB, so thirty students of
the Transfer tab would otherwise hold 14 GB for as long as Gradio keeps their sessions (an hour
after they leave). Past the bound, the session that trained longest ago loses its models first,
and its handle reads as empty: each tab then answers as it does before training, and says so.
"""

import itertools
import os
import weakref
from collections.abc import Iterator, Mapping

from torch import nn

from serving.lru import BoundedLRU

MAX_BYTES = int(os.environ.get("CNNLAB_MODEL_STORE_MB", 3072)) * 2**20
DROPPED = (
    "This session's trained models were let go to make room for newer ones (the server keeps the most "
    "recent {mb:,} MB of them): press Train to train again."
)
_keys = itertools.count()


def weight_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))


def held_bytes(store: Mapping[int, dict[str, nn.Module]]) -> int:
    """The weights the store holds, each model counted once however many sessions share it (the
    readers of one run, and its replays, share its models)."""
    unique = {id(model): model for models in store.values() for model in models.values()}
    return sum(weight_bytes(model) for model in unique.values())


# Handle key → its models, the session that trained longest ago first.
_store = BoundedLRU(too_full=lambda store: held_bytes(store) > MAX_BYTES)


def _release(key: int) -> None:
    _store.pop(key, None)


def dropped_message() -> str:
    return DROPPED.format(mb=MAX_BYTES // 2**20)


class HeldModels(Mapping):
    """A session's trained models by arm, as long as the store holds them (then empty)."""

    def __init__(self, models: dict[str, nn.Module]):
        self.key = next(_keys)
        _store[self.key] = dict(models)
        # A handle nobody holds any more (the session trained again, or Gradio let its state go)
        # lets go of its models: the store holds what sessions can still use, not every run.
        weakref.finalize(self, _release, self.key)

    def _models(self) -> dict[str, nn.Module]:
        return _store.get(self.key, {})

    @property
    def dropped(self) -> bool:
        return self.key not in _store

    def __reduce__(self):
        # Pickled with its models, and held again wherever it is unpickled: on ZeroGPU a run's
        # results are made in the GPU worker's process and travel to the app's.
        return HeldModels, (self._models(),)

    def __getitem__(self, arm: str) -> nn.Module:
        return self._models()[arm]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._models()))

    def __len__(self) -> int:
        return len(self._models())
