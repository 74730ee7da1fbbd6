"""Tolerant reading of JSON an LLM wrote: code fences, prose around it, trailing commas."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _candidates(text: str) -> list[str]:
    found = [m.group(1) for m in _FENCE.finditer(text)]
    found.append(text)
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            found.append(text[start : end + 1])
    return found


# Deeper than any reply a prompt asks for (objects of strings, lists of strings): a reply nested
# past this is unreadable, like one that is not JSON. Python's parser recurses per level and raises
# RecursionError near 1,000; values a little shallower than that still overflow the stack when
# printed or copied later, so the limit sits far below.
MAX_DEPTH = 32


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json(text: str) -> Any | None:
    """The first JSON value found in ``text``, or None (also for one nested deeper than ``MAX_DEPTH``)."""
    for candidate in _candidates(text.strip()):
        for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
            try:
                value = json.loads(attempt)
            except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
                continue
            return value if _depth(value) <= MAX_DEPTH else None
    return None
