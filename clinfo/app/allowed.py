"""What the app's users may choose: the LLMs and sources the operator allowed, nothing typed.

A shared app holds the operator's keys. If a user could type a base URL, the OpenAI key would be
sent as a Bearer token to any server that user runs; if a user could type a path, the server's
files could be probed. So users pick from lists the operator wrote, and every URL a key may go to
comes from the operator:

* ``$CLINFO_APP_CONFIG`` (:mod:`clinfo.app.config`): a TOML file, one table per choice::

      [[llm]]
      label = "Qwen2.5 32B (hospital vLLM)"
      spec = "vllm:Qwen/Qwen2.5-32B-Instruct"
      base_url = "http://llm-lb:8000/v1"      # optional: else CLINFO_BASE_URL / OPENAI_BASE_URL

      [[source]]
      label = "PubMed mirror"
      spec = "local:/srv/clinfo/pubmed.db"

* for a kind the file does not list, or without a file: ``CLINFO_LLM`` plus the comma-separated
  specs of ``$CLINFO_APP_LLMS``, and ``CLINFO_SOURCE`` plus ``$CLINFO_APP_SOURCES`` (default
  ``demo``), all with the environment's base URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from clinfo.app.config import read_config
from clinfo.errors import ConfigError

if TYPE_CHECKING:
    from clinfo.settings import Settings

ENV_LLMS = "CLINFO_APP_LLMS"
ENV_SOURCES = "CLINFO_APP_SOURCES"
DEFAULT_EXTRA_SOURCES = "demo"
SOURCE_LABELS = {"pubmed": "PubMed (live, E-utilities)", "demo": "Demo corpus (offline)"}


@dataclass(frozen=True)
class Choice:
    """One option of a selector: the spec that is run, the label users see, and for an LLM the
    server its calls (and the key) go to; None: the environment's base URL."""

    spec: str
    label: str
    base_url: str | None = None


@dataclass(frozen=True)
class Allowed:
    llms: tuple[Choice, ...]
    sources: tuple[Choice, ...]

    def llm(self, label: str) -> Choice:
        return _pick(self.llms, label)

    def source(self, label: str) -> Choice:
        return _pick(self.sources, label)


def _pick(choices: tuple[Choice, ...], label: str) -> Choice:
    # a label not offered (a forged widget value) falls back to the operator's first choice
    return next((c for c in choices if c.label == label), choices[0])


def _check_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: base_url {url!r} is not an http(s) URL")
    return url


def _source_label(spec: str) -> str:
    if spec in SOURCE_LABELS:
        return SOURCE_LABELS[spec]
    kind, _, path = spec.partition(":")
    # users see the file's name, not where it lies on the server
    return f"Local index ({Path(path).name})" if kind == "local" and path else spec


def _split(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def _unique(choices: list[Choice]) -> tuple[Choice, ...]:
    seen: dict[str, Choice] = {}
    for c in choices:
        seen.setdefault(c.label, c)
    return tuple(seen.values())


def _from_file(path: Path, data: dict[str, Any], kind: str, label_of: Any) -> tuple[Choice, ...]:
    out = []
    for i, entry in enumerate(data.get(kind) or []):
        where = f"{path} [[{kind}]] #{i + 1}"
        if not isinstance(entry, dict) or not str(entry.get("spec") or "").strip():
            raise ConfigError(f'{where}: needs spec = "..."')
        unknown = set(entry) - {"spec", "label"} - ({"base_url"} if kind == "llm" else set())
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        spec = str(entry["spec"]).strip()
        url = entry.get("base_url")
        out.append(
            Choice(
                spec=spec,
                label=str(entry.get("label") or label_of(spec)),
                base_url=_check_url(str(url), where) if url else None,
            )
        )
    return _unique(out)


def load_allowed(settings: Settings) -> Allowed:
    """The operator's choices; a bad file is a ConfigError (one line). A kind the file does not
    list ([[llm]] or [[source]]) comes from the environment."""
    path, data = read_config()
    llms = _from_file(path, data, "llm", lambda s: s) if path else ()
    sources = _from_file(path, data, "source", _source_label) if path else ()
    if not llms:
        specs = [settings.llm, *_split(os.environ.get(ENV_LLMS, ""))]
        llms = _unique([Choice(spec=s, label=s) for s in specs])
    if not sources:
        specs = [settings.source, *_split(os.environ.get(ENV_SOURCES, DEFAULT_EXTRA_SOURCES))]
        sources = _unique([Choice(spec=s, label=_source_label(s)) for s in specs])
    return Allowed(llms=llms, sources=sources)
