"""Progress events of one question, for CLIs and apps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    """Progress of one question, for CLIs and apps: ``stage`` is plan, search, fetch, set_aside
    (only when a record was set aside), prefilter, screen, synthesize or done."""

    stage: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


EventCallback = Callable[[Event], None]
