"""One writer per corpus at a time: a lock file beside it, ``<corpus>.lock``.

``clinfo index build``, ``upgrade``, ``embed`` and ``import-vectors`` each write parts of one
corpus (records, lexical index, vector set, dense index); two at once lose writes (an upgrade
renames the file a build is appending to; two index builds replace each other's FAISS file).
Each holds an exclusive ``flock`` on the lock file while it writes; a second writer fails at once
with one line naming the running one (its command and process id, which the holder writes into
the file). The kernel releases the lock when its holder exits, killed or not, so a stale lock
file never blocks anyone. Readers never take it. Within one thread the lock is re-entrant
(``import-vectors`` imports, then builds the index); another thread of the same process is a
second writer like any other.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import inspect
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from clinfo.errors import CorpusError, one_line

__all__ = ["lock_path", "write_lock", "writes_corpus", "corpus_of_vector_set"]

F = TypeVar("F", bound=Callable[..., Any])

_HELD: dict[tuple[str, int], tuple[int, int]] = {}  # (lock file, thread) -> (fd, depth)
_LOCK = threading.Lock()


def _forget_in_child() -> None:
    # A forked parser worker inherits the lock's descriptor, and a flock lasts while any copy is
    # open: a worker outliving a killed build would keep the corpus locked. The child closes its
    # copies (closing, unlike LOCK_UN, leaves the parent's lock in place) and holds nothing.
    for fd, _depth in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def lock_path(db_path: str | os.PathLike[str]) -> Path:
    """The lock file of the corpus at ``db_path``."""
    return Path(f"{os.path.realpath(db_path)}.lock")


def corpus_of_vector_set(folder: str | os.PathLike[str]) -> Path | None:
    """The corpus a vector set folder (``corpus.db.dense/<model>``) belongs to; None for a folder elsewhere."""
    parent = Path(folder).parent
    return parent.with_suffix("") if parent.suffix == ".dense" else None


@contextmanager
def write_lock(db_path: str | os.PathLike[str], what: str, *, make_folder: bool = False) -> Iterator[None]:
    """Hold the corpus's writer lock for ``what`` (``"index build"``); ``CorpusError`` if another writer holds it.
    ``make_folder``: create the corpus's folder first (a build creates the corpus)."""
    path = lock_path(db_path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    key = (str(path), threading.get_ident())
    with _LOCK:
        held = _HELD.get(key)
        if held is not None:
            _HELD[key] = (held[0], held[1] + 1)
    if held is None:
        created = not path.exists()
        fd = _acquire(path, db_path, what)
        if fd is None:  # no folder: no corpus to protect; the writer reports its own error
            yield
            return
        with _LOCK:
            _HELD[key] = (fd, 1)
    try:
        yield
    finally:
        with _LOCK:
            fd, depth = _HELD[key]
            if depth > 1:
                _HELD[key] = (fd, depth - 1)
            else:
                del _HELD[key]
                os.ftruncate(fd, 0)
                if held is None and created and not os.path.exists(db_path):
                    # a writer that failed before making the corpus (bad input) leaves nothing behind
                    path.unlink(missing_ok=True)
                os.close(fd)  # releases the flock; the file stays (unlinking it would race with a new holder)


def _acquire(path: Path, db_path: str | os.PathLike[str], what: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorpusError(f"cannot take the writer lock {path}: {one_line(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "another clinfo process"
        os.close(fd)
        raise CorpusError(
            f"cannot run clinfo {what} on {db_path}: {holder} is writing it; wait for it to finish (lock file {path})"
        ) from None
    since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"clinfo {what} (pid {os.getpid()}, since {since})".encode(), 0)
    return fd


def writes_corpus(what: str, param: str, *, vector_set: bool = False, make_folder: bool = False) -> Callable[[F], F]:
    """Decorate a function that writes a corpus: it runs holding the corpus's writer lock.

    ``param`` names its argument holding the corpus path (or, with ``vector_set``, the vector
    set folder, whose corpus is locked); ``make_folder`` as for ``write_lock``."""

    def decorate(func: F) -> F:
        sig = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = sig.bind(*args, **kwargs).arguments[param]
            corpus = corpus_of_vector_set(value) if vector_set else value
            if corpus is None:
                return func(*args, **kwargs)
            with write_lock(corpus, what, make_folder=make_folder):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
