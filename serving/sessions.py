"""Each browser session's state on this server, owned in one place: its latest training request,
what arrived of its run on ZeroGPU, whether ZeroGPU refused it, and the dataset of its own photos.

A session ends as one: when its page closes (app.py's unload), when it has been idle for IDLE_S,
or when more than `limit` sessions have come since it was last seen. What holds something outside
this object (a session's photos in the dataset registry, the pictures of its answers) says so
with `on_end`, and is let go then. A session's trained models are not here: its page's State
holds them, through the byte-bounded store of serving.model_store.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from serving.lru import BoundedLRU

# A session unseen this long has ended, whether or not its page said goodbye: 50 minutes, so that
# what it held (its photos, its answers' pictures) is gone within the hour that docs/classroom.md
# promises, beside Gradio's own copies (app.py's delete_cache).
IDLE_S = 3000


@dataclass(eq=False)
class Session:
    id: str
    ticket: object = None  # its latest training request (serving.jobs.Ticket), until it ends
    gpu_run: object = None  # what arrived of its run on ZeroGPU (demo.gpu.GpuRun)
    gpu_refused: bool = False  # ZeroGPU refused its last request: the page offers the CPU
    photos: str | None = None  # the dataset its own photos are registered under
    photos_at: float = 0.0  # when it sent them (monotonic)
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    """The sessions of this server, at most `limit`: past it, the one seen longest ago ends."""

    def __init__(self, limit: int):
        self._by_id = BoundedLRU(limit, on_evict=lambda _, session: self._ended(session))
        self._lock = threading.Lock()
        self._on_end: list[Callable[[Session], None]] = []

    def on_end(self, callback: Callable[[Session], None]) -> None:
        """Call `callback` with each session that ends, to let go what it holds elsewhere."""
        self._on_end.append(callback)

    def get(self, session_id: str) -> Session:
        """The session, made at its first request; seen now. Sessions idle for IDLE_S end first."""
        now = time.monotonic()
        for idle in [s for s in self._all() if now - s.seen > IDLE_S and s.id != session_id]:
            self.end(idle.id)
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                session = Session(session_id)
                self._by_id[session_id] = session
            else:
                self._by_id.touch(session_id)
            session.seen = now
            return session

    def find(self, session_id: str | None) -> Session | None:
        """The session if this server knows it, without making it or marking it seen."""
        return self._by_id.get(session_id) if session_id else None

    def holding_photos(self) -> list[Session]:
        """The sessions that hold photos, the one that sent them longest ago first."""
        return sorted((s for s in self._all() if s.photos), key=lambda s: s.photos_at)

    def _all(self) -> list[Session]:
        return [s for s in map(self._by_id.get, list(self._by_id)) if s is not None]  # one may end meanwhile

    def end(self, session_id: str) -> None:
        session = self._by_id.pop(session_id, None)
        if session:
            self._ended(session)

    def _ended(self, session: Session) -> None:
        for callback in self._on_end:
            callback(session)
