"""Names a package exports but loads only on first use, so ``import clinfo`` stays fast."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``names[name]`` when ``name`` is first read.

    A module path starting with ``.`` is relative to ``package``.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            module = names[name]
            return getattr(importlib.import_module(package + module if module.startswith(".") else module), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def preload(modules: Iterable[str]) -> threading.Thread:
    """Imports ``modules`` on a daemon thread and returns it.

    For modules a later step imports on first use: started when the first step begins, their
    imports run while that step waits on the network instead of on the critical path later. A module
    that fails to import here (an optional package not installed) is left alone: the step that needs
    it imports it again and reports the failure itself.
    """

    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # the step's own import, later, reports it
                continue

    thread = threading.Thread(target=run, name="clinfo-preload", daemon=True)
    thread.start()
    return thread
