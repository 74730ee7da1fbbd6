"""The source registry: spec parsing, and a plug-in source usable from every entry point.

The plug-in below is a small Source of our own (word search over a few records), registered
under a new prefix; ``ClinfoAI``, ``clinfo eval run``, ``clinfo search`` and the LangChain
retriever are given only its spec string.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clinfo import ClinfoAI
from clinfo.cli import app
from clinfo.errors import ConfigError
from clinfo.llm import register as register_llm
from clinfo.models import Article
from clinfo.settings import Settings
from clinfo.sources import DateRange, SearchResult, SourceStats, create_source, parse_spec, register
from clinfo.sources.registry import sources
from tests.support.scripted import ScriptedLLM, make_article, screen_reply

QUESTION = "Does magnesium improve sleep in older adults?"
QUERY = "magnesium[tiab] AND sleep[tiab]"
SHELVES = {
    "sleep": [
        make_article(
            "201", "Magnesium and sleep in elderly: an RCT", "Magnesium improved sleep quality in older adults."
        ),
        make_article(
            "202", "Magnesium, melatonin and zinc for insomnia", "A combined supplement improved sleep onset."
        ),
        make_article("203", "Statins in middle age", "Statins lowered cholesterol."),
    ],
}
OPENED: list[ShelfSource] = []  # every plug-in source any entry point opened


class ShelfSource:
    """Articles on a named shelf; a query matches an article sharing one of its words."""

    def __init__(self, shelf: str, settings: Settings) -> None:
        if shelf not in SHELVES:
            raise ConfigError(f"no shelf {shelf!r}")
        self.name = f"shelf:{shelf}"
        self.settings = settings
        self.articles = {a.pmid: a for a in SHELVES[shelf]}
        self.stats = SourceStats()
        self.queries: list[str] = []
        self.closed = False
        OPENED.append(self)

    async def search(self, query: str, *, limit: int = 20, dates: DateRange | None = None) -> SearchResult:
        self.queries.append(query)
        self.stats.requests += 1
        words = set(re.findall(r"[a-z]+", re.sub(r"\[\w+\]", " ", query.lower()))) - {"and", "or", "not"}
        hits = [
            p for p, a in self.articles.items() if words & set(re.findall(r"[a-z]+", f"{a.title} {a.abstract}".lower()))
        ]
        return SearchResult(
            query=query, pmids=hits[:limit], count=len(hits), scores=[1.0 / (i + 1) for i in range(len(hits[:limit]))]
        )

    async def fetch(self, pmids: Sequence[str]) -> list[Article]:
        self.stats.requests += 1
        return [self.articles[p] for p in pmids if p in self.articles]

    async def aclose(self) -> None:
        self.closed = True


def scripted_llm(model: str, settings: Any) -> ScriptedLLM:
    return ScriptedLLM(
        {
            "plan": json.dumps({"queries": [QUERY]}),
            "broaden": json.dumps({"query": QUERY}),
            "screen": screen_reply(lambda title: "magnesium" in title.lower()),
            "synthesize": "Magnesium improved sleep in one trial [1]. A combined supplement helped [2].",
            "tldr": "Limited evidence suggests magnesium may modestly improve sleep.",
            "classify": json.dumps({"answer": "yes"}),
        },
        spec=f"regtest-llm:{model}",
    )


register("shelf", ShelfSource)
register_llm("regtest-llm", scripted_llm)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CLINFO_SOURCE", "CLINFO_LLM", "CLINFO_SEARCH_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLINFO_CACHE_DIR", str(tmp_path / "cache"))
    OPENED.clear()


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "spec,parsed",
    [
        ("pubmed", ("pubmed", "")),
        (" demo ", ("demo", "")),
        ("local:/data/pubmed.db", ("local", "/data/pubmed.db")),
        ("local: /data/my corpus.db ", ("local", "/data/my corpus.db")),
        ("shelf:sleep", ("shelf", "sleep")),
        ("shelf", ("shelf", "")),
    ],
)
def test_specs_parse(spec: str, parsed: tuple[str, str]) -> None:
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["", "nowhere", "local:", "local", "pubmed:x", "demo:x", "sql:/x.db"])
def test_bad_specs_are_one_line_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="unknown source") as info:
        parse_spec(spec)
    assert "\n" not in str(info.value) and "'pubmed', 'demo' or 'local:/path/to/corpus.db'" in str(info.value)
    assert "shelf" in str(info.value)  # plug-ins are named among the choices


@pytest.mark.parametrize("prefix", ["", "a:b", " x"])
def test_register_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError):
        register(prefix, ShelfSource)


def test_builtins_and_plugins_are_listed() -> None:
    assert {"pubmed", "demo", "local", "shelf"} <= set(sources())


def test_create_source_gives_the_plugin_its_argument_and_settings() -> None:
    settings = Settings(search_mode="bm25")
    src = create_source("shelf:sleep", settings)
    assert isinstance(src, ShelfSource) and src.name == "shelf:sleep" and src.settings is settings
    with pytest.raises(ConfigError, match="no shelf 'x'"):
        create_source("shelf:x", settings)


def test_builtin_pubmed_refuses_dense_search() -> None:
    with pytest.raises(ConfigError, match="needs a local corpus"):
        create_source("pubmed", Settings(search_mode="dense"))


# ---------------------------------------------------------------- entry points


def test_clinfoai_opens_a_plugin_source_from_its_spec() -> None:
    answer = ClinfoAI(llm="regtest-llm:x", source="shelf:sleep", use_cache=False).forward(QUESTION)
    assert [r.pmid for r in answer.references] == ["201", "202"]
    assert OPENED and OPENED[-1].queries and all(s.closed for s in OPENED)


def test_eval_run_cli_uses_a_plugin_source(tmp_path: Path) -> None:
    data = tmp_path / "qs.jsonl"
    rows = [{"id": f"q{i}", "question": QUESTION, "label": "yes"} for i in range(2)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "run",
            str(data),
            "--out",
            str(out),
            "--llm",
            "regtest-llm:x",
            "--source",
            "shelf:sleep",
            "--no-cache",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["error"] is None for r in records)
    assert all([ref["pmid"] for ref in r["answer"]["references"]] == ["201", "202"] for r in records)
    assert all(r["predicted_label"] == "yes" for r in records)
    assert json.loads((out / "config.json").read_text())["settings"]["source"] == "shelf:sleep"
    assert any(s.queries for s in OPENED)


def test_ask_cli_uses_a_plugin_source() -> None:
    args = ["ask", QUESTION, "--llm", "regtest-llm:x", "--source", "shelf:sleep", "--no-cache", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"## {QUESTION}\n\nMagnesium improved sleep in one trial [1].")
    assert (
        "**TL;DR:** Limited evidence" in result.stdout and "PMID: 201" in result.stdout and "PMID: 202" in result.stdout
    )
    assert OPENED[-1].queries == [QUERY] and OPENED[-1].closed


def test_search_cli_uses_a_plugin_source() -> None:
    result = CliRunner().invoke(app, ["search", QUERY, "--source", "shelf:sleep", "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["pmid"] for line in result.stdout.splitlines()] == ["201", "202"]
    assert OPENED[-1].closed


def test_langchain_retriever_opens_a_plugin_source_from_its_spec() -> None:
    pytest.importorskip("langchain_core")
    from clinfo.langchain import ClinfoRetriever

    docs = ClinfoRetriever(source="shelf:sleep", k=5).invoke(QUERY)
    assert [d.metadata["pmid"] for d in docs] == ["201", "202"]
    assert docs[0].metadata["score"] == 1.0 and OPENED[-1].closed
