"""Keeps credentials out of what clinfo shows, logs and stores.

Settings never hand keys to output, but error messages come from third-party SDKs and servers, and
a user can paste anything into a question; so every string the app displays or writes to its
history, every error the eval runner records and every LLM error message passes through
:func:`redact` with the key values of this process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from clinfo.urls import url_secrets

if TYPE_CHECKING:
    from clinfo.settings import Settings

KEY_ENV = ("OPENAI_API_KEY", "NCBI_API_KEY")
DATABASE_ENV = "CLINFO_DATABASE_URL"  # its password is a secret too
# URLs whose credentials (user:password@, ?api_key=...) are secrets too (clinfo.urls.url_secrets)
URL_ENV = (DATABASE_ENV, "CLINFO_BASE_URL", "OPENAI_BASE_URL", "CLINFO_EUTILS_BASE_URL")
MASK = "[redacted]"
MIN_SECRET_LEN = 6  # shorter "keys" would turn ordinary words into [redacted]


def secret_values(settings: Settings | None = None) -> list[str]:
    values: set[str] = set()
    for name in KEY_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            values.add(value)
    urls = [os.environ.get(name, "") for name in URL_ENV]
    if settings is not None:
        for secret in (settings.openai_api_key, settings.ncbi_api_key):
            if secret is not None and secret.get_secret_value().strip():
                values.add(secret.get_secret_value().strip())
        if settings.database_url is not None:
            urls.append(settings.database_url.get_secret_value())
        urls += [settings.base_url or "", settings.eutils_base_url]
    values.update(secret for url in urls for secret in url_secrets(url.strip()))
    # longest first, so a key that contains another is masked whole
    return sorted((v for v in values if len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


# OpenAI-style keys the process was not given (a server may echo a key from its own config)
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value, and anything shaped like an OpenAI key, masked."""
    for value in secrets:
        if value and value in text:
            text = text.replace(value, MASK)
    return _OPENAI_KEY.sub(MASK, text)


def key_status(settings: Settings) -> list[str]:
    """``["OPENAI_API_KEY: set", "NCBI_API_KEY: not set"]``: all the app ever says about keys."""
    return [
        f"OPENAI_API_KEY: {'set' if settings.openai_api_key is not None else 'not set'}",
        f"NCBI_API_KEY: {'set' if settings.ncbi_api_key is not None else 'not set'}",
    ]
