"""One request budget per service, shared by every thread, event loop and (optionally) process.

NCBI allows 3 requests/s (10 with an API key) per client and answers excess with 429s and no
``Retry-After``, so the limit must hold however the requests are made: the app runs each
question on its own thread and event loop, and the app and ``clinfo eval`` may run side by side
on one host. aiolimiter (and most asyncio limiters) keep their state per event loop, so
concurrent loops would each get the full rate.

The budget is a sequence of evenly spaced start times. Each request reserves the next free slot
under a lock and sleeps until it; with ``state_file`` the next free slot lives in a small file
under ``flock``, so every process on the host draws from the same sequence. A reservation
costs microseconds, so the lock never blocks an event loop for longer than that. A cancelled
request leaves its slot unused, which only errs on the side of the limit.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import threading
import time
from pathlib import Path

__all__ = ["SpacedRate"]

log = logging.getLogger(__name__)

_SLOT = struct.Struct("<d")
# A stored slot further ahead than this is not a real reservation (clock change, corrupt file):
# waiting on it would stall every process, so it is ignored.
_MAX_AHEAD_S = 600.0


class SpacedRate:
    """Request start times ``(1 + headroom) / per_second`` apart across threads, loops and processes.

    The headroom is there because the server counts arrivals, not starts: network and scheduling
    jitter bring evenly spaced requests closer together on the way (tens of milliseconds were
    seen on a busy 2-core machine), and four starts exactly one second apart would then land
    inside one second.
    """

    def __init__(self, per_second: float, state_file: Path | None = None, headroom: float = 0.1) -> None:
        if per_second <= 0 or headroom < 0:
            raise ValueError("per_second must be positive and headroom not negative")
        self.interval = (1.0 + headroom) / per_second
        self.state_file = state_file
        self._lock = threading.Lock()
        self._next = 0.0  # wall-clock seconds: the one clock processes share

    def reserve(self) -> float:
        """Takes the next free slot; returns the seconds to wait until it."""
        with self._lock:
            now = time.time()
            fd = self._open_shared()
            try:
                slot = max(now, self._next, self._read_shared(fd, now) if fd is not None else 0.0)
                self._next = slot + self.interval
                if fd is not None:
                    os.pwrite(fd, _SLOT.pack(self._next), 0)
            finally:
                if fd is not None:
                    os.close(fd)  # releases the flock
            return slot - now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    # ---------------------------------------------------------------- the host-wide slot file

    def _open_shared(self) -> int | None:
        if self.state_file is None:
            return None
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state_file, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("request budget file %s unusable (%s): limiting this process only", self.state_file, exc)
            self.state_file = None
            return None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    @staticmethod
    def _read_shared(fd: int, now: float) -> float:
        data = os.pread(fd, _SLOT.size, 0)
        stored = _SLOT.unpack(data)[0] if len(data) == _SLOT.size else 0.0
        return stored if stored - now <= _MAX_AHEAD_S else 0.0
