"""One settings object for the whole product.

Precedence: constructor arguments / CLI flags > environment variables > defaults.
Environment names are ``CLINFO_*`` plus the standard ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``,
``NCBI_API_KEY`` and ``NCBI_EMAIL`` (:func:`env_names`). Renamed settings (:data:`RENAMED`) are
still read under their old names, keyword, key or environment variable, with a DeprecationWarning.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from clinfo.appraisal.design import DesignKind
from clinfo.appraisal.evidence_status import PublicationKind
from clinfo.dates import parse_date
from clinfo.errors import ConfigError, InvalidArgument

DEFAULT_EUTILS = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
DEFAULT_VLLM_BASE_URL = "http://localhost:8000/v1"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


# Old setting name -> new one. The old names are still read (keyword arguments, overrides, the
# settings of an old eval run's config.json) with a DeprecationWarning naming the new one.
RENAMED: dict[str, str] = {
    "http_timeout": "eutils_timeout",
    "http_retries": "eutils_retries",
    "openai_base_url": "base_url",  # OPENAI_BASE_URL itself is base_url's standard variable
}
# Old environment variable -> the setting it now sets (below that setting's own variables).
RENAMED_ENV: dict[str, str] = {"CLINFO_HTTP_TIMEOUT": "eutils_timeout", "CLINFO_HTTP_RETRIES": "eutils_retries"}


def renamed_settings(values: Mapping[str, Any], stacklevel: int = 3) -> dict[str, Any]:
    """``values`` with every old setting name (:data:`RENAMED`) replaced by its new one, warning
    once per old name; where both are given the new name wins."""
    out = dict(values)
    for old, new in RENAMED.items():
        if old in out:
            value = out.pop(old)
            warnings.warn(f"setting {old} is deprecated: use {new}", DeprecationWarning, stacklevel=stacklevel)
            out.setdefault(new, value)
    return out


class _RenamedEnv(PydanticBaseSettingsSource):
    """The old environment variables of renamed settings, read below the new ones."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the old names directly

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for old, name in RENAMED_ENV.items():
            if old in os.environ:
                new = env_names(name)[0]
                warnings.warn(f"{old} is deprecated: use {new}", DeprecationWarning, stacklevel=2)
                found[name] = os.environ[old]
        return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLINFO_", extra="forbid", populate_by_name=True)

    # --- what to use
    llm: str = Field(
        "openai:gpt-4o-mini",
        description="LLM spec: openai:<model>, vllm:<model>, local[:path.gguf] (embedded llama.cpp),"
        " vllm-offline:<model>; a bare name means openai:<name>",
    )
    source: str = Field(
        "pubmed", description="literature source: pubmed (live, E-utilities), demo, local:/path/corpus.db"
    )
    search_mode: Literal["auto", "bm25", "dense", "hybrid"] = Field(
        "auto",
        description="local corpora: auto (hybrid where the corpus has dense vectors and the encoder loads, else bm25),"
        " bm25, dense, or hybrid (BM25 and dense fused by their scores)",
    )
    base_url: str | None = Field(
        None,
        # CLINFO_BASE_URL wins over the OpenAI SDK's standard variable
        validation_alias=_env("base_url", "CLINFO_BASE_URL", "OPENAI_BASE_URL"),
        description="base URL of the OpenAI-compatible server that openai: and vllm: models are called at, e.g."
        " http://localhost:8000/v1; unset: https://api.openai.com/v1 for openai:, http://localhost:8000/v1 for vllm:",
    )

    # --- credentials and endpoints (standard names, no CLINFO_ prefix)
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("openai_api_key", "OPENAI_API_KEY"),
        description="API key of the OpenAI(-compatible) server; never logged, cached, traced or exported",
    )
    ncbi_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("ncbi_api_key", "NCBI_API_KEY"),
        description="NCBI E-utilities key: 10 requests/s instead of 3; sent in POST bodies, never in a URL",
    )
    ncbi_email: str | None = Field(
        None,
        validation_alias=_env("ncbi_email", "NCBI_EMAIL"),
        description="contact address sent to NCBI with every E-utilities request, as NCBI asks",
    )
    ncbi_tool: str = Field("clinfo", description="tool name sent to NCBI with every E-utilities request")
    eutils_base_url: str = Field(DEFAULT_EUTILS, description="E-utilities endpoint (a mirror, a proxy, tests)")
    eutils_rate_scope: Literal["host", "process"] = Field(
        "host",
        description="who shares NCBI's request budget (3/s, 10/s with a key): host, every process on this host (a slot"
        " file in the cache directory) or, with a PostgreSQL database_url, on every host sharing that database; or"
        " process, this process only",
    )

    # --- cache and prompts
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "clinfo",
        description="on-disk cache of E-utilities responses and LLM completions; the demo index",
    )
    use_cache: bool = Field(
        True, description="read and write the E-utilities and LLM cache; false: every call goes out"
    )
    cache_ttl_search: float = Field(
        86400, ge=0, description="seconds a cached E-utilities search result is reused (new articles show after it)"
    )
    cache_ttl_records: float = Field(
        604800,
        ge=0,
        description="seconds a cached PubMed record is reused (corrections and retractions show after it)",
    )
    cache_ttl_llm: float = Field(
        2592000,
        ge=0,
        description="seconds a cached LLM completion is reused (same request, server and model; hosted models change"
        " under one name)",
    )
    cache_max_mb: float = Field(
        1024.0, gt=0, description="size cap of the cache (MB); beyond it the oldest entries are evicted"
    )
    database_url: SecretStr | None = Field(
        None,
        description="where shared state lives: unset, SQLite files under cache_dir; sqlite:///path.db, one SQLite file;"
        " postgresql://user:password@host/db, one database for several app hosts (conversations, caches and the NCBI"
        " request budget per API key; extra [postgres]); its password is never shown",
    )
    prompt_dir: Path | None = Field(
        None, description="directory of prompt overrides (any of prompts/*.toml); files not there keep the default"
    )

    # --- pipeline knobs
    preset: Literal["auto", "default", "small"] = Field(
        "auto",
        description="small: settings for tiny models (keyword planner, relevance from retrieval scores, quoted"
        " answer); auto picks small for llm=local; settings you give always win over the preset",
    )
    planner: Literal["llm", "keywords"] = Field(
        "llm", description="keywords: search the question's words, no LLM planning"
    )
    summarize: bool = Field(True, description="ask the screening LLM for a structured summary, not only relevance")
    screening: Literal["llm", "retrieval"] = Field(
        "llm",
        description="who decides relevance: llm (the model judges each candidate) or retrieval (each candidate's"
        " weighted coverage of the question's terms and its similarity to the question; no LLM call)",
    )
    relevance_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="retrieval screening: score (0-1) a record needs to count as relevant; default: the calibrated"
        " one for the signals in use (clinfo.pipeline.relevance.THRESHOLDS)",
    )
    relevance_similarity: bool = Field(
        True,
        description="retrieval screening: add question-abstract similarity (all-MiniLM-L6-v2) to term coverage"
        " where an encoder runtime is installed",
    )
    synthesis_mode: Literal["llm", "extractive"] = Field(
        "llm",
        description="extractive: quote the sentences of each relevant abstract that best answer the question,"
        " cited, instead of an LLM synthesis",
    )
    admit_publication_kinds: list[PublicationKind] = Field(
        default_factory=list,
        description="publication kinds screened and cited as evidence although they report no study of their own"
        " (set aside by default, listed in the answer with why); retracted work is never admitted, whatever this says",
    )
    claim_check: Literal["mark", "recheck", "off"] = Field(
        "mark",
        description="match each synthesis sentence that cites [n] with the cited abstracts' sentences"
        " (clinfo.claims): mark marks the sentences no cited abstract supports; recheck also asks the LLM once"
        " to rewrite or drop them, given the abstracts' best sentences; off skips the check",
    )
    num_queries: int = Field(
        3,
        ge=1,
        le=10,
        description="PubMed queries the LLM planner writes per question (the keywords planner searches one)",
    )
    results_per_query: int = Field(
        20, ge=1, le=500, description="results taken from each query's search, before the queries' rankings are fused"
    )
    prefilter_k: int = Field(
        16,
        ge=1,
        le=200,
        description="articles screened per question: those with an abstract, best first by the"
        " search order fused with BM25 of the question (bounds the per-article LLM calls)",
    )
    max_concurrency: int = Field(16, ge=1, le=256, description="LLM calls in flight for one question")
    restriction_date: dt.date | None = Field(
        None, description="only literature published on or before this date (YYYY-MM-DD)"
    )
    date_window_years: int | None = Field(
        None, ge=1, description="with restriction_date: only this many years before it"
    )
    designs: Annotated[list[DesignKind] | None, NoDecode] = Field(
        None,
        description="only evidence of these study designs (decided by code, clinfo.appraisal.design): names such as"
        " randomised-trial, systematic-review, meta-analysis, cohort, or groups trials-and-reviews, reviews, trials,"
        " observational; comma-separated in the environment; none: every design",
    )
    humans_only: bool = Field(
        False,
        description="only human studies: records whose MeSH says animals without humans, and animal or in-vitro"
        " designs, are left out (records NLM has not tagged stay)",
    )
    max_question_chars: int = Field(
        2000, ge=10, description="longest question accepted; a longer one is an input error"
    )
    screen_abstract_chars: int = Field(
        3000, ge=200, description="abstract text shown to the LLM per article (small models need less)"
    )
    synthesis_context_chars: int = Field(
        24000, ge=2000, description="budget for article summaries in the synthesis prompt"
    )
    temperature: float = Field(
        0.0, ge=0.0, le=2.0, description="sampling temperature of every LLM call (0: repeatable)"
    )
    structured_output: Literal["auto", "json_schema", "json_object", "none"] = Field(
        "auto", description="auto tries json_schema, then json_object with a schema (llama.cpp), then plain text"
    )

    # --- dense retrieval over local corpora (clinfo.corpus.encoders)
    dense_model: str | None = Field(
        None,
        description="local corpora: document encoder whose vectors are searched (default: the corpus's only vector"
        " set, else all-MiniLM-L6-v2)",
    )
    query_model: str | None = Field(
        None,
        description="encoder for questions where it differs from the document model (asymmetric, e.g."
        " ncbi/MedCPT-Query-Encoder); it must give vectors of the same dimension",
    )

    # --- embedded llama.cpp model (llm="local"); the names follow the user-facing spec
    local_n_ctx: int = Field(4096, ge=512, description="context window of the embedded llama.cpp model (tokens)")
    local_n_threads: int | None = Field(
        None, ge=1, description="threads of the embedded llama.cpp model (default: half the CPUs)"
    )

    # --- transport
    eutils_timeout: float = Field(30.0, gt=0, description="seconds an E-utilities request may take")
    eutils_retries: int = Field(
        4, ge=0, le=10, description="E-utilities retries after 429, 5xx and timeouts (with backoff)"
    )
    llm_timeout: float = Field(120.0, gt=0, description="seconds one LLM call may take")
    llm_retries: int = Field(2, ge=0, le=10, description="LLM call retries after rate limits, 5xx and timeouts")

    def __init__(self, **values: Any) -> None:
        super().__init__(**renamed_settings(values, stacklevel=4))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _RenamedEnv(settings_cls), dotenv_settings, file_secret_settings

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        # model_validate of a saved configuration (an old run's settings) may use the old names
        return renamed_settings(data, stacklevel=5) if isinstance(data, Mapping) else data

    @field_validator("restriction_date", mode="before")
    @classmethod
    def _parse_date(cls, v: Any) -> Any:
        return parse_date(v)  # its ValueError names the value; pydantic names the field

    @field_validator("designs", mode="before")
    @classmethod
    def _designs(cls, v: Any) -> Any:
        from clinfo.appraisal.filters import design_kinds

        return list(design_kinds(v)) or None  # its ValueError names the value and the choices

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: SecretStr | None) -> SecretStr | None:
        from clinfo.store.url import parse_database_url

        if v is None or not v.get_secret_value().strip():
            return None
        parse_database_url(v.get_secret_value())  # its ValueError never quotes the URL
        return v

    @field_validator("eutils_base_url")
    @classmethod
    def _slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"

    def public_dict(self) -> dict[str, Any]:
        """Everything needed to reproduce a run, with secrets left out (for configs, traces, exports)."""
        data = self.model_dump(mode="json", exclude={"openai_api_key", "ncbi_api_key"})
        data["openai_api_key_set"] = self.openai_api_key is not None
        data["ncbi_api_key_set"] = self.ncbi_api_key is not None
        if self.database_url is not None:
            from clinfo.store.url import safe_database_url

            data["database_url"] = safe_database_url(self.database_url.get_secret_value())
        return data

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the non-None overrides applied and validated."""
        clean = {k: v for k, v in renamed_settings(overrides).items() if v is not None}
        if not clean:
            return self
        data = self.model_dump()
        data.update(clean)
        try:
            updated = type(self).model_validate(data)
        except ValidationError as exc:
            raise _config_error(exc) from None
        # "set by the user" survives copies, so presets still fill only what nobody chose
        object.__setattr__(updated, "__pydantic_fields_set__", set(self.model_fields_set) | set(clean))
        return updated

    @classmethod
    def resolve(cls, base: Settings | None = None, **overrides: Any) -> Settings:
        """The settings a run uses: ``base`` (default: the environment's) with the non-None
        ``overrides`` applied, then the preset filling every field nobody set.

        Every entry point (``ClinfoAI``, the eval runner, the app) resolves its settings here,
        so a preset means the same everywhere. Resolving resolved settings changes nothing.
        An unknown key is one InvalidArgument naming it; a bad value one ConfigError.
        """
        overrides = renamed_settings(overrides)
        unknown = set(overrides) - set(cls.model_fields)
        if unknown:
            raise InvalidArgument(f"unknown setting(s): {', '.join(sorted(unknown))}")
        settings = (base if base is not None else load_settings()).with_overrides(**overrides)
        # with_overrides marks what it applied as set, so the preset fills only the rest
        return resolve_preset(settings, set(settings.model_fields_set))


# Named presets: values a preset gives to fields the user did not set (env, arguments, flags).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # A 135M-parameter model cannot write PubMed syntax or a faithful synthesis (measured in
    # benchmarks/embedded_model_quality.py): search the question's words, let BM25 do most of the
    # ranking, decide relevance from term coverage and similarity (the model called 90% of random
    # abstracts relevant; benchmarks/offline_evidence.py), and quote the best-answering sentences.
    "small": {
        "planner": "keywords",
        "num_queries": 1,
        "prefilter_k": 5,
        "screen_abstract_chars": 1000,
        "synthesis_mode": "extractive",
        "summarize": False,
        "screening": "retrieval",
    },
}


def resolve_preset(settings: Settings, explicit: set[str]) -> Settings:
    """Apply ``settings.preset`` to every field not in ``explicit``."""
    name = settings.preset
    if name == "auto":
        name = "small" if settings.llm.split(":", 1)[0].strip() == "local" else "default"
    values = {k: v for k, v in PRESETS[name].items() if k not in explicit}
    return settings.with_overrides(**values)


def env_names(name: str) -> list[str]:
    """The environment variables that set the setting ``name``, the one that wins first:
    ``CLINFO_<NAME>``, or the standard names a field reads (``OPENAI_API_KEY``)."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        # the choices are the field's own name (for keyword arguments) and its variables
        names = [c for c in alias.choices if isinstance(c, str) and c != name]
        if names:
            return names
    return [f"{Settings.model_config.get('env_prefix', '')}{name}".upper()]


def _config_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
    value = first.get("input")
    shown = "" if isinstance(value, dict) or "key" in where or "database_url" in where else f"={value!r}"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")  # a validator's own words
    return ConfigError(f"invalid setting {where}{shown}: {message}{more}")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment plus overrides, with a ConfigError (one line) for bad values."""
    try:
        base = Settings()
    except ValidationError as exc:
        raise _config_error(exc) from None
    return base.with_overrides(**overrides)
