"""A dict that stays bounded: the one least-recently-used map behind every per-session registry
of the app (stop reports, refused GPU sessions, uploaded photos, trained models) and the run
cache's copies in memory.

Writing a key (again) makes it the newest; reading does not, unless with `touch`. Past the bound
(`max_items`, or a `too_full` test of the whole map) the oldest entries go, each handed to
`on_evict`. Thread-safe: Gradio serves every session from its own thread.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping


class BoundedLRU(MutableMapping):
    def __init__(
        self,
        max_items: int | None = None,
        too_full: Callable[["BoundedLRU"], bool] | None = None,
        on_evict: Callable[[object, object], None] | None = None,
    ):
        self.max_items = max_items
        self.too_full = too_full  # the newest entry always stays, however full
        self.on_evict = on_evict
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.RLock()

    def __setitem__(self, key, value) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._entries[key] = value
            evicted = []
            while len(self._entries) > 1 and self._over():
                evicted.append(self._entries.popitem(last=False))
        for old_key, old_value in evicted:  # outside the lock: a callback may take locks of its own
            if self.on_evict:
                self.on_evict(old_key, old_value)

    def _over(self) -> bool:
        if self.max_items is not None and len(self._entries) > self.max_items:
            return True
        return bool(self.too_full and self.too_full(self))

    def touch(self, key) -> None:
        """Make an entry the newest without writing it (a read that counts as a use)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)

    def __getitem__(self, key):
        with self._lock:
            return self._entries[key]

    def get(self, key, default=None):
        with self._lock:
            return self._entries.get(key, default)

    _MISSING = object()

    def pop(self, key, default=_MISSING):
        with self._lock:
            if default is self._MISSING:
                return self._entries.pop(key)
            return self._entries.pop(key, default)

    def __delitem__(self, key) -> None:
        with self._lock:
            del self._entries[key]

    def __iter__(self) -> Iterator:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
