"""One request budget per service, shared by every thread, event loop and (optionally) process.

NCBI allows 3 requests/s (10 with an API key) per client and answers excess with 429s and no
``Retry-After``, so the limit must hold however the requests are made: the app runs each
question on its own thread and event loop, and the app and ``clinfo eval`` may run side by side
on one host. aiolimiter (and most asyncio limiters) keep their state per event loop, so
concurrent loops would each get the full rate.

The budget is the time of the last granted start. A request may start once an interval has
passed since then; it takes the start under a lock (and, with ``state_file``, under ``flock`` on
a small file holding that time, so every process on the host shares it; with ``shared``, from a
row in PostgreSQL that every host sharing the database reads, :mod:`clinfo.store.budget`), else
sleeps for the rest of the interval and asks again. Granting at the moment of the start, rather than handing
out future slots, keeps a task that wakes late (a busy event loop, a starved thread) from
starting right before the next one. Taking a start costs microseconds, so the lock never blocks
an event loop for longer than that.

Within a process, starts go to waiters in the order they asked (first come, first served): a request
that asks later (the efetch of a query that came back early) never takes the start of one that was
already waiting (the other queries' searches).
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import itertools
import logging
import math
import os
import struct
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clinfo.store.database import StoreError

if TYPE_CHECKING:
    from clinfo.store.budget import SharedSlot

__all__ = ["SpacedRate"]

log = logging.getLogger(__name__)

_STAMP = struct.Struct("<d")
SHARED_RETRY = 30.0  # seconds before a database that failed is asked again


class SpacedRate:
    """Request starts at least ``(1 + headroom) / per_second`` apart across threads, loops and processes.

    The headroom is there because the server counts arrivals, not starts: network and scheduling
    jitter bring evenly spaced requests closer together on the way (tens of milliseconds were
    seen on a busy 2-core machine), and four starts exactly one second apart would then land
    inside one second. At 10% headroom, eight questions on eight threads of one process (the
    app's shape) put 4 arrivals into one second in 2 runs of 3 on a 2-core machine: a start
    granted to a thread that then waits for the GIL goes out late, and the next one on time.
    25% leaves a quarter of a second of such lateness per second before NCBI's count is reached.
    """

    def __init__(
        self,
        per_second: float,
        state_file: Path | None = None,
        headroom: float = 0.25,
        shared: SharedSlot | None = None,
    ) -> None:
        if per_second <= 0 or headroom < 0:
            raise ValueError("per_second must be positive and headroom not negative")
        self.interval = (1.0 + headroom) / per_second
        self.state_file = state_file
        # the budget in a database that processes on several hosts share (clinfo.store.budget);
        # while it cannot be reached, the host's slot file stands in
        self.shared = shared
        self._shared_retry = -math.inf
        self._lock = threading.Lock()
        self._last = -math.inf  # time.monotonic() of this process's last start: a clock set back cannot stall it
        self._tickets = itertools.count()
        self._queue: collections.deque[int] = collections.deque()  # waiters of this process, first come first

    def try_acquire(self) -> float:
        """Takes a start now and returns 0.0, or returns the seconds to wait before asking again."""
        with self._lock:
            now = time.monotonic()
            wait = self._last + self.interval - now
            if wait > 0:
                return wait
            if self.shared is not None and now >= self._shared_retry:
                try:
                    wait = self.shared.try_take(self.interval)
                except StoreError as exc:
                    log.warning("shared request budget unavailable (%s): limiting by this host's budget", exc)
                    self._shared_retry = now + SHARED_RETRY
                else:
                    if wait > 0:
                        return wait
                    self._last = now
                    return 0.0
            wall = time.time()  # the slot file's clock: the one every process on the host reads
            fd = self._open_shared()
            try:
                wait = (self._read_shared(fd, wall) if fd is not None else -math.inf) + self.interval - wall
                if wait > 0:
                    return wait
                self._last = now
                if fd is not None:
                    os.pwrite(fd, _STAMP.pack(wall), 0)
                return 0.0
            finally:
                if fd is not None:
                    os.close(fd)  # releases the flock

    async def acquire(self) -> None:
        ticket = next(self._tickets)
        with self._lock:
            self._queue.append(ticket)
        try:
            while True:
                with self._lock:
                    ahead = self._queue.index(ticket)
                if ahead:
                    # not this waiter's turn: sleep until the starts of those ahead could have been taken
                    wait = max(self._last + (ahead + 1) * self.interval - time.monotonic(), 0.005)
                    await asyncio.sleep(wait)
                    continue
                # a database round trip would block the event loop: it is made on a worker thread
                wait = await asyncio.to_thread(self.try_acquire) if self.shared is not None else self.try_acquire()
                if wait <= 0:
                    return
                await asyncio.sleep(wait)
        finally:
            with self._lock:
                self._queue.remove(ticket)

    # ---------------------------------------------------------------- the host-wide stamp file

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

    def _read_shared(self, fd: int, now: float) -> float:
        data = os.pread(fd, _STAMP.size, 0)
        stamp = _STAMP.unpack(data)[0] if len(data) == _STAMP.size else -math.inf
        # a start stamped in the future (the clock was set back, a corrupt file) would stall every
        # process that shares the file: it is not believed beyond one interval
        return stamp if math.isfinite(stamp) and stamp <= now + self.interval else -math.inf
