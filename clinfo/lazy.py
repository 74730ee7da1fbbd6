"""Names a package exports but loads only on first use, so ``import clinfo`` stays fast."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
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
