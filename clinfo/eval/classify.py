"""The yes/no/maybe an answer gives: one constrained LLM call reads it from the answer's text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clinfo.errors import one_line
from clinfo.eval.datasets import LABELS
from clinfo.settings import Settings

CLASSIFY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": list(LABELS)}},
    "required": ["answer"],
    "additionalProperties": False,
}


@dataclass
class Classification:
    label: str | None
    method: str  # "llm", "no_evidence" (no LLM call: nothing was found) or "unreadable"
    raw: str = ""
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "raw": self.raw,
            "llm_calls": self.llm_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "cached": self.cached,
        }


_WORD_LABEL = re.compile(r"\b(yes|no|maybe)\b", re.I)


def read_label(text: str) -> str | None:
    """The yes/no/maybe in a classification reply: JSON first, else the first such word."""
    from clinfo.jsonout import parse_json

    data = parse_json(text)
    if isinstance(data, dict):
        data = data.get("answer")
    if isinstance(data, str) and data.strip().lower() in LABELS:
        return data.strip().lower()
    match = _WORD_LABEL.search(text)
    return match.group(1).lower() if match else None


CLASSIFY_CHARS = 2000  # quoted conclusions can be long; a small model's context is not


async def classify_answer(
    llm: Any, question: str, text: str, settings: Settings, *, no_evidence: bool = False
) -> Classification:
    """Read the final yes/no/maybe decision from an answer's text (its TL;DR) with one
    constrained LLM call.

    An answer with no evidence is "maybe" without a call: it says nothing either way.
    """
    from clinfo.llm.base import LLMRequest
    from clinfo.prompts import load_prompt

    if no_evidence or not text.strip():
        return Classification(label="maybe", method="no_evidence")
    if len(text) > CLASSIFY_CHARS:
        text = text[: CLASSIFY_CHARS - 1].rsplit(" ", 1)[0] + "…"
    request = LLMRequest(
        messages=load_prompt("classify_answer", settings.prompt_dir).messages(question=question, answer=text),
        schema=CLASSIFY_SCHEMA,
        schema_name="classify",
        max_tokens=20,
        temperature=0.0,  # a label, not prose: always the most likely one
        step="classify",
    )
    completion = await llm.complete(request)
    label = read_label(completion.text)
    return Classification(
        label=label,
        method="llm" if label else "unreadable",
        raw=one_line(completion.text, 200),
        llm_calls=1,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        cost_usd=completion.cost_usd,
        cached=completion.cached,
    )
