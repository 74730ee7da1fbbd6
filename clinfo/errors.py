"""Typed exceptions, and the one-line text every failure is reported in.

Every failure a user can cause or meet maps to one of these exceptions.
"""

from __future__ import annotations


def one_line(value: object, limit: int = 300) -> str:
    """``value`` (a message or an exception) as one line of at most ``limit`` characters.

    Messages from parsers, SDKs and servers span lines and can be long; a user is shown one line.
    An exception with no message is named by its type.
    """
    text = " ".join(str(value).split())
    if not text and isinstance(value, BaseException):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class ClinfoError(Exception):
    """Base class; the CLI prints ``str(exc)`` as one line and exits non-zero."""


class InvalidArgument(ClinfoError, ValueError):
    """A per-call argument is unusable (a malformed PMID in ``ignore``, a bad date)."""


class InvalidQuestion(InvalidArgument):
    """The question is empty, too long or otherwise unusable."""


class ConfigError(ClinfoError, ValueError):
    """Bad settings: unknown LLM spec or source, missing API key, unreadable prompt directory."""


class LLMError(ClinfoError):
    """The LLM backend failed."""


class LLMUnavailable(LLMError):
    """The LLM server cannot be reached, or rejected our credentials."""


class SourceError(ClinfoError):
    """A literature source failed (network, HTTP status, malformed response)."""


class SourceUnavailable(SourceError):
    """The source cannot be reached after retries."""


class MalformedResponse(SourceError):
    """The source answered with XML/JSON we cannot parse (truncated, corrupted)."""


class QuerySyntaxError(ClinfoError, ValueError):
    """A PubMed query is malformed (unbalanced parentheses or quotes, unknown field tag)."""


class CorpusError(ClinfoError):
    """A local corpus file is missing, corrupt or built by an incompatible version."""
