"""The JSON schemas of the replies each step asks the LLM for.

Backends that support structured output are held to them; the others get them in the prompt's
spirit and their replies are parsed tolerantly (``clinfo.jsonout.parse_json``).
"""

from __future__ import annotations

from typing import Any

from clinfo.appraisal.agreement import JUDGED_STANCES

# plan: several PubMed queries for one question
QUERIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"queries": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["queries"],
    "additionalProperties": False,
}
# broaden: one wider query after a query found nothing
QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string"}},
    "required": ["query"],
    "additionalProperties": False,
}
# the text fields of an article's screening reply, shown on the article's card
SUMMARY_FIELDS = ("reason", "summary", "design", "sample_size", "population", "risk_of_bias")
# screen: relevance, a 0-10 score and a structured summary of one article
SCREEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "relevant": {"type": "boolean"},
        "score": {"type": "integer"},
        **{name: {"type": "string"} for name in SUMMARY_FIELDS},
    },
    "required": ["relevant", "score", *SUMMARY_FIELDS],
    "additionalProperties": False,
}
# relevance only: for models whose summaries cannot be trusted (Settings.summarize = False)
RELEVANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {k: SCREEN_SCHEMA["properties"][k] for k in ("relevant", "score", "reason")},
    "required": ["relevant", "score", "reason"],
    "additionalProperties": False,
}


def with_stance(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` plus the article's stance on a yes/no question (clinfo.appraisal.agreement)."""
    return {
        **schema,
        "properties": {**schema["properties"], "stance": {"type": "string", "enum": list(JUDGED_STANCES)}},
        "required": [*schema["required"], "stance"],
    }


# recheck: the sentences no cited abstract supports, each rewritten (or "" to drop it), by number
RECHECK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sentences": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "text": {"type": "string"}},
                "required": ["n", "text"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["sentences"],
    "additionalProperties": False,
}
