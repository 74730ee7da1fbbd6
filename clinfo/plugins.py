"""LLM backends and literature sources from installed packages: the entry-point groups clinfo reads.

A package adds a backend with an entry point in group ``clinfo.llms``, a source with one in
``clinfo.sources``: the entry point's name is the spec prefix (``--llm mine:model``,
``--source mine:arg``) and its object is the factory the registry calls. clinfo declares its own
backends and sources the same way (pyproject.toml), so the built-ins go through this seam too.

As in simonw/llm, a group is read and its entry points imported on the first lookup or listing,
once per process; ``import clinfo`` reads nothing. A plug-in that fails to import, or whose object
is not callable, is named in one warning line and skipped: the other names still work. A name
clinfo declares stays clinfo's: a plug-in's entry point of that name is skipped with a warning, so
installing a package never silently changes what ``openai:`` or ``pubmed`` means (``register()``
in the process itself may still replace one: that is the caller's own explicit choice). Of two
plug-ins declaring one name, the first found on ``sys.path`` is kept and the other skipped with a warning.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from clinfo.errors import one_line

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

LLMS = "clinfo.llms"
SOURCES = "clinfo.sources"
OWN_PACKAGE = "clinfo"
REGISTERED = "register() in this process"  # what provides a name added with register()

# What a factory takes after "prefix:": "none" (``pubmed``), "required" (``openai:<model>``);
# a factory that declares nothing takes whatever follows the colon, or nothing.
ArgumentRule = Literal["none", "required", "any"]
F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)


def spec_argument(rule: ArgumentRule) -> Callable[[F], F]:
    """Declares what a factory takes after ``prefix:``, so a bad spec is refused before anything is built."""

    def mark(factory: F) -> F:
        factory.spec_argument = rule  # type: ignore[attr-defined]
        return factory

    return mark


def argument_rule(factory: Callable[..., Any]) -> ArgumentRule:
    return getattr(factory, "spec_argument", "any")


@dataclass(frozen=True)
class Plugin:
    name: str  # the spec prefix
    factory: Callable[..., Any]
    package: str  # the distribution that declared it, with its version

    @property
    def builtin(self) -> bool:
        return self.package.partition(" ")[0] == OWN_PACKAGE


class EntryPointGroup:
    """One group's plug-ins, read and imported on first use (once per process, thread-safe)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._lock = threading.RLock()
        self._plugins: dict[str, Plugin] | None = None

    def plugins(self) -> dict[str, Plugin]:
        with self._lock:
            if self._plugins is None:
                from importlib.metadata import entry_points

                # filled in place: a plug-in that looks names up while it is imported sees those loaded so far
                self._plugins = {}
                _load(self.group, entry_points(group=self.group), self._plugins)
            return self._plugins

    def names(self, registered: Iterable[str]) -> list[str]:
        """Every spec prefix: this group's and those added with register(), sorted."""
        return sorted(set(self.plugins()) | set(registered))

    def providers(self, registered: Iterable[str]) -> dict[str, str]:
        """Every name, and what provides it: a package (``clinfo <version>`` for the built-ins) or register()."""
        found = {name: plugin.package for name, plugin in self.plugins().items()}
        return dict(sorted({**found, **dict.fromkeys(registered, REGISTERED)}.items()))


def _package(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unnamed package"


def _is_own(point: EntryPoint) -> bool:
    return _package(point).partition(" ")[0] == OWN_PACKAGE


def _load(group: str, points: Iterable[EntryPoint], into: dict[str, Plugin]) -> None:
    points = list(points)
    own = {p.name for p in points if _is_own(p)}
    # clinfo's own first, then the others in sys.path order (the order Python would import them in)
    for point in sorted(points, key=lambda p: not _is_own(p)):
        package = _package(point)
        about = f"plug-in {point.name!r} ({group}, from {package}) skipped"
        kept = into.get(point.name)
        if not point.name or ":" in point.name or point.name != point.name.strip():
            log.warning("%s: its name cannot be a spec prefix (no ':', no spaces)", about)
        elif kept is not None and kept.package == package:
            continue  # one distribution seen twice on sys.path
        elif point.name in own and not _is_own(point):
            log.warning(
                "%s: %r is built into clinfo; a plug-in cannot replace it (give it another name)", about, point.name
            )
        elif kept is not None:
            log.warning("%s: %r is already provided by %s", about, point.name, kept.package)
        else:
            try:
                factory = point.load()
            except Exception as exc:  # any failure in someone else's package: named, never a traceback
                log.warning("%s: it failed to import (%s: %s)", about, type(exc).__name__, one_line(exc))
                continue
            if callable(factory):
                into[point.name] = Plugin(point.name, factory, package)
            else:
                log.warning("%s: %s is not a factory (not callable)", about, point.value)
    if not own:
        log.warning(
            "clinfo's installed metadata declares no entry points in %s, so its built-ins are missing: "
            "reinstall clinfo (pip install -e .)",
            group,
        )
