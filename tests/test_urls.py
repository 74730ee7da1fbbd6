"""One URL scrubber (clinfo.urls) for every URL clinfo shows, logs or stores.

Credentials ride in URLs two ways, user:password@ and secret query parameters (?api_key=...).
The same scrubber serves database URLs (store), eval run configs, the app's history and LLM
error messages, so none of them can keep what another one takes out.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from clinfo.app.history import public_config
from clinfo.errors import LLMUnavailable
from clinfo.eval.datasets import Dataset, EvalItem
from clinfo.eval.run_dir import run_config
from clinfo.llm import create_llm
from clinfo.llm.base import LLMRequest
from clinfo.redact import redact, secret_values
from clinfo.settings import Settings
from clinfo.store import parse_database_url, safe_database_url
from clinfo.urls import is_secret_param, scrub_url, url_secrets

KEY = "k3y-Vq8s9WfZ0uYp"
PASSWORD = "pa55-Wt7rQz"


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        # HTTP user info is basic auth, or a token in the user's place: all of it goes
        (f"http://user:{PASSWORD}@127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
        (f"https://{KEY}@llm.example/v1", "https://llm.example/v1"),
        # secret-looking parameters go, the others stay exactly as written
        (f"https://llm.example/v1?api_key={KEY}", "https://llm.example/v1"),
        (f"https://h/v1?model=a%2Fb&key={KEY}&X-Auth-Token={KEY}&user=ann", "https://h/v1?model=a%2Fb&user=ann"),
        (f"https://h/e?token={KEY}&access_token={KEY}&client_secret={KEY}#top", "https://h/e#top"),
        # a database's user name is a role and stays; its password goes, in either place
        (f"postgresql://clinfo:{PASSWORD}@db.example:5432/clinfo", "postgresql://clinfo@db.example:5432/clinfo"),
        (
            f"postgresql://clinfo@/clinfo?host=/run/pg&sslmode=require&password={PASSWORD}&sslpassword={KEY}",
            "postgresql://clinfo@/clinfo?host=/run/pg&sslmode=require",
        ),
        # nothing to take out: unchanged, whatever it is
        ("https://eutils.ncbi.nlm.nih.gov/entrez/eutils/", "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"),
        ("https://h/v1?", "https://h/v1?"),
        ("openai:gpt-4o-mini", "openai:gpt-4o-mini"),
        ("local:/data/corpus.db", "local:/data/corpus.db"),
        ("", ""),
    ],
)
def test_scrub_url(url: str, safe: str) -> None:
    assert scrub_url(url) == safe
    assert scrub_url(safe) == safe  # scrubbing twice changes nothing
    for secret in url_secrets(url):
        assert secret not in scrub_url(url)


def test_host_and_path_only() -> None:
    assert scrub_url(f"http://u:{PASSWORD}@h:1/v1?k=1#f", query=False) == "http://h:1/v1"


def test_url_secrets_are_what_a_server_or_driver_may_echo() -> None:
    assert url_secrets(f"http://user:{PASSWORD}@h/v1") == (PASSWORD,)
    assert url_secrets(f"https://{KEY}@h/v1") == (KEY,)
    assert url_secrets("postgresql://clinfo@h/db") == ()  # a role name is no secret
    assert url_secrets("postgres://ann:p%40ss@h/db?password=two%20words&sslmode=require") == ("p@ss", "two words")
    assert url_secrets(f"https://h/v1?api_key={KEY}&model=m&key=") == (KEY,)
    assert url_secrets("openai:gpt-4o-mini") == ()


def test_which_parameters_are_secret() -> None:
    for name in ("api_key", "API-KEY", "apikey", "key", "token", "x_auth_token", "password", "sslpassword"):
        assert is_secret_param(name), name
    for name in ("model", "sslmode", "host", "port", "user", "db", "keywords"):
        assert not is_secret_param(name), name


def test_database_urls_use_the_same_scrubber() -> None:
    url = f"postgres://ann:{PASSWORD}@db.example/clinfo?sslmode=require&password={KEY}"
    parsed = parse_database_url(url)
    assert parsed.safe == scrub_url(parsed.url) == "postgresql://ann@db.example/clinfo?sslmode=require"
    assert set(parsed.secrets) == {PASSWORD, KEY}
    assert safe_database_url(url) == parsed.safe


def test_eval_config_keeps_no_credential_of_a_base_url() -> None:
    settings = Settings(base_url=f"http://user:{PASSWORD}@127.0.0.1:8080/v1?api_key={KEY}&model=m")
    data = Dataset(path="q.jsonl", format="jsonl", sha256="0" * 64, items=[EvalItem(id="1", question="q?")])
    config = run_config(settings, data, None, 0, 1)
    assert config["settings"]["base_url"] == "http://127.0.0.1:8080/v1?model=m"
    assert PASSWORD not in json.dumps(config) and KEY not in json.dumps(config)


def test_app_history_keeps_host_and_path_only() -> None:
    shown = public_config({"llm": "x", "base_url": f"https://{KEY}@llm.example/v1?api_key={KEY}"})
    assert shown == {"llm": "x", "base_url": "https://llm.example/v1"}


def test_redaction_knows_the_credentials_of_configured_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLINFO_BASE_URL", "OPENAI_BASE_URL", "CLINFO_EUTILS_BASE_URL", "CLINFO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(base_url=f"http://user:{PASSWORD}@h/v1", eutils_base_url=f"https://ncbi:{KEY}@proxy/eutils/")
    assert {PASSWORD, KEY} <= set(secret_values(settings))
    assert redact(f"rejected {PASSWORD} and {KEY}", secret_values(settings)) == "rejected [redacted] and [redacted]"
    monkeypatch.setenv("OPENAI_BASE_URL", f"https://{KEY}@h/v1")
    assert KEY in secret_values()


async def test_llm_errors_and_repr_show_the_url_without_credentials() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm: Any = create_llm("openai:m", Settings(base_url=f"http://user:{PASSWORD}@127.0.0.1:{port}/v1", llm_retries=0))
    try:
        with pytest.raises(LLMUnavailable) as info:
            await llm.complete(LLMRequest(messages=({"role": "user", "content": "hi"},), max_tokens=4))
    finally:
        await llm.aclose()
    assert str(info.value).startswith(f"cannot reach LLM server at http://127.0.0.1:{port}/v1")
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(llm)
