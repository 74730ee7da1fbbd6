"""Searching the local corpus: PubMed syntax translated to FTS5 behaves like set algebra over the
real records, filters hold, hostile input never reaches SQLite as an error, LocalSource honours
the Source protocol, and the packaged demo corpus builds and answers."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinfo.corpus.demo import demo_corpus_path
from clinfo.corpus.lexical import FtsIndex
from clinfo.corpus.lexical_query import translate
from clinfo.corpus.store import open_corpus
from clinfo.errors import CorpusError, QuerySyntaxError
from clinfo.settings import Settings
from clinfo.sources import Source, create_source
from clinfo.sources.base import DateRange
from clinfo.sources.corpus import LocalSource
from tests.support.corpus import pubmedqa_items

ALL = 100_000


@pytest.fixture(scope="module")
def index(small_corpus: Path) -> FtsIndex:
    return FtsIndex(open_corpus(small_corpus, check_same_thread=False))


def hits(index: FtsIndex, query: str, dates: DateRange | None = None) -> set[int]:
    return set(index.search(query, ALL, dates)[0])


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def test_boolean_operators_are_set_algebra(index: FtsIndex) -> None:
    a, b = hits(index, "cancer"), hits(index, "patients")
    assert a and b and a != b
    assert hits(index, "cancer AND patients") == a & b
    assert hits(index, "cancer OR patients") == a | b
    assert hits(index, "cancer NOT patients") == a - b
    c = hits(index, "surgery")
    assert hits(index, "cancer patients AND surgery") == a & b & c  # adjacent words: implicit AND
    # Without tags or operators the text is read as natural language: ranked OR of its words.
    assert hits(index, "cancer patients") == a | b
    # Left to right, as PubMed: (cancer OR patients) AND surgery.
    assert hits(index, "cancer OR patients AND surgery") == (a | b) & c
    assert hits(index, "cancer OR (patients AND surgery)") == a | (b & c)


def test_count_is_the_number_of_matches(index: FtsIndex) -> None:
    pmids, scores, count, _ = index.search("cancer[tiab]", 5)
    assert len(pmids) == 5 and count == len(hits(index, "cancer[tiab]")) > 5
    assert scores == sorted(scores, reverse=True)


def test_field_tags_restrict_columns(index: FtsIndex) -> None:
    for article in index.fetch([str(p) for p in hits(index, "cancer[ti]")]):
        assert "cancer" in _words(article.title)
    in_title_or_abstract = hits(index, "cancer[tiab]")
    assert hits(index, "cancer[ti]") <= in_title_or_abstract
    assert hits(index, "cancer[ab]") <= in_title_or_abstract
    humans = index.fetch([str(p) for p in hits(index, "Humans[mh]")])
    assert humans and all(any("humans" in _words(m) for m in a.mesh) for a in humans)
    assert hits(index, "humans[MeSH Terms]") == hits(index, "Humans[mh]")
    trials = index.fetch([str(p) for p in hits(index, '"Randomized Controlled Trial"[pt]')])
    assert trials and all("Randomized Controlled Trial" in a.publication_types for a in trials)


def test_phrases_truncation_and_proximity(index: FtsIndex) -> None:
    phrase = hits(index, '"breast cancer"')
    assert phrase
    for article in index.fetch([str(p) for p in phrase]):
        text = " ".join(_words(" ".join([article.title, article.abstract, *article.mesh])))
        assert "breast cancer" in text
    assert phrase <= hits(index, "breast AND cancer")
    assert hits(index, "breast cancer[tiab]") <= hits(index, "breast[tiab] AND cancer[tiab]")
    assert hits(index, "cancer") < hits(index, "canc*")
    near = hits(index, '"breast cancer"[tiab:~5]')
    assert phrase & hits(index, '"breast cancer"[tiab]') <= near


def test_dates_filter_on_year(index: FtsIndex) -> None:
    recent = hits(index, "patients AND 2021[dp]")
    assert recent
    assert all(a.year == 2021 for a in index.fetch([str(p) for p in recent]))
    assert hits(index, "patients AND 2020:2021[dp]") >= recent
    window = DateRange(start=dt.date(1970, 1, 1), end=dt.date(1979, 12, 31))
    old = hits(index, "patients", window)
    assert old and all(1970 <= (a.year or 0) <= 1979 for a in index.fetch([str(p) for p in old]))
    assert hits(index, '"1975/01/01"[PDAT] : "1979/12/31"[PDAT] AND patients') <= old
    pmids, _, count, fq = index.search("2021/03/01:2021/04/30[pdat]", 5)
    assert count > 0 and any("whole years" in w for w in fq.warnings)


def test_filters_without_text_and_pmid_lookup(index: FtsIndex) -> None:
    some = sorted(hits(index, "cancer"))[:2]
    assert hits(index, f"{some[0]}[pmid]") == {some[0]}
    assert hits(index, f"{some[0]}[uid] OR {some[1]}[pmid]") == set(some)
    only_2021 = hits(index, "2021[dp]")
    assert only_2021 and hits(index, "2021[dp] NOT cancer") == only_2021 - hits(index, "cancer")


def test_text_and_filters_mixed_under_or_and_not(index: FtsIndex) -> None:
    a, d, m = hits(index, "cancer"), hits(index, "2021[dp]"), hits(index, "humans[mh]")
    assert a and d and m
    assert hits(index, "cancer NOT 2021[dp]") == a - d
    assert hits(index, "cancer OR 2021[dp]") == a | d
    assert hits(index, "(cancer OR 2021[dp]) NOT humans[mh]") == (a | d) - m
    assert hits(index, "2021[dp] NOT (cancer OR humans[mh])") == d - (a | m)
    assert hits(index, "(cancer AND 2021[dp]) OR humans[mh]") == (a & d) | m


def test_unsupported_tags_degrade_with_warnings(index: FtsIndex) -> None:
    pmids, _, _, fq = index.search("cancer AND english[la] AND hasabstract[sb]", ALL)
    assert set(pmids) == hits(index, "cancer")
    assert any("[la] ignored" in w for w in fq.warnings) and any("[sb] ignored" in w for w in fq.warnings)
    _, _, _, fq = index.search("Smith J[au]", 10)
    assert any("[au] is not indexed locally" in w for w in fq.warnings)
    _, _, _, fq = index.search("neoplasms[majr]", 10)
    assert any("[majr]" in w for w in fq.warnings)
    _, _, _, fq = index.search("ca*[tiab]", 10)
    assert any("at least 4 letters" in w for w in fq.warnings)


def test_malformed_boolean_queries_raise_query_syntax_error(index: FtsIndex) -> None:
    for bad in ("(cancer AND", "cancer[foo]", "cancer AND OR x", "cancer AND"):
        with pytest.raises(QuerySyntaxError):
            index.search(bad)


def test_natural_language_question_finds_its_abstract(index: FtsIndex) -> None:
    qa = pubmedqa_items()
    found = 0
    for pmid in list(qa)[:50]:
        pmids, _, _, fq = index.search(qa[pmid]["QUESTION"], 10)
        assert fq.natural
        found += int(pmid) in pmids
    assert found >= 45


def test_typed_questions_with_quotes_or_stray_parentheses_still_work(index: FtsIndex) -> None:
    for text in ('Is there a "July effect" in surgery?', 'A "dangling quote about cancer', "cancer (in adults", "CYP2D6*4 and cancer"):
        pmids, _, _, fq = index.search(text, 10)
        assert fq.natural and pmids


_hostile = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.sampled_from(
            ['"', "(", ")", "[", "]", "*", ":", "^", "{", "}", "-", "+", "NEAR", "NEAR(", "AND", "OR", "NOT", "[tiab]", "[mh]",
             "[dp]", "[au]", "[pt]", "2020", "2020:2021", "cancer", "canc", "'; DROP TABLE docs; --", "\x00", "\u00e9", "\u200b",
             "title:", "{title}:", " ", "  ", "~3", "[tiab:~2]", "[mh:noexp]", "/", "#1", "\\"]  # fmt: skip
        ),
        max_size=25,
    ).map("".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_hostile)
def test_hostile_input_never_raises_sqlite_errors(index: FtsIndex, text: str) -> None:
    try:
        pmids, scores, count, _ = index.search(text, 5)
    except QuerySyntaxError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(pmids) == len(scores) <= 5 and count >= len(pmids)


_SKELETON = re.compile(r"^(?:\s|\{[a-z ]+\}|:|AND|OR|NOT|NEAR|\(|\)|\*|,|\d+)*$")


def _safe_match(match: str) -> bool:
    """Outside double-quoted strings, an FTS5 expression of ours holds only operators and columns."""
    for quoted in re.findall(r'"[^"]*"', match):
        assert re.fullmatch(r'"[^\W_]+(?: [^\W_]+)*"', quoted), quoted
    return bool(_SKELETON.match(re.sub(r'"[^"]*"', " ", match)))


def test_translation_quotes_every_term() -> None:
    fq = translate('"drop table docs; --"[tiab] OR NEAR[ti] OR col:umn* OR ^start OR {title}:x AND a-b-c[mh]')
    assert fq.match is not None and _safe_match(fq.match)
    assert '{title abstract} : "drop table docs"' in fq.match


@settings(max_examples=300, deadline=None)
@given(_hostile)
def test_every_translation_is_quoted_terms_and_operators(text: str) -> None:
    try:
        fq = translate(text)
    except QuerySyntaxError:
        return
    assert fq.match is None or _safe_match(fq.match)


# ------------------------------------------------------------------------------- LocalSource


async def test_local_source_search_and_fetch(small_corpus: Path) -> None:
    src = LocalSource(small_corpus)
    assert isinstance(src, Source) and src.name == "local"
    result = await src.search("cancer[tiab] AND patients", limit=5)
    assert len(result.pmids) == len(result.scores) == 5 and result.count >= 5
    assert result.translation and "MATCH" in result.translation
    articles = await src.fetch(["999999999", result.pmids[2], "not-a-pmid", result.pmids[0]])
    assert [a.pmid for a in articles] == [result.pmids[2], result.pmids[0]]
    assert src.stats.requests == 2
    await src.aclose()
    # After aclose a new call opens fresh connections.
    assert (await src.search("cancer", limit=1)).pmids
    await src.aclose()


async def test_local_source_concurrent_calls_agree(small_corpus: Path) -> None:
    src = LocalSource(small_corpus)
    queries = ["cancer", "patients AND surgery", '"breast cancer"', "covid-19", "Humans[mh] AND 2021[dp]"] * 6
    results = await asyncio.gather(*(src.search(q, limit=20) for q in queries))
    for q, r in zip(queries, results):
        assert r.pmids == results[queries.index(q)].pmids
    fetched = await asyncio.gather(*(src.fetch(r.pmids) for r in results))
    assert all([a.pmid for a in f] == r.pmids for f, r in zip(fetched, results))
    await src.aclose()


async def test_local_source_dates_argument(small_corpus: Path) -> None:
    src = LocalSource(small_corpus)
    result = await src.search("patients", limit=50, dates=DateRange.ending(dt.date(1980, 12, 31)))
    assert result.pmids
    assert all((a.year or 0) <= 1980 for a in await src.fetch(result.pmids))
    await src.aclose()


def test_local_source_refuses_missing_or_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no corpus at"):
        LocalSource(tmp_path / "none.db")
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(CorpusError):
        LocalSource(bad)


async def test_corrupted_corpus_pages_give_corpus_error(tmp_path: Path, small_corpus: Path) -> None:
    broken = tmp_path / "broken.db"
    data = bytearray(small_corpus.read_bytes())
    page = 8192
    for off in range(page * 4, len(data) - page, page * 2):  # clobber many pages past the schema
        data[off + 100 : off + 4000] = b"\xa5" * 3900
    broken.write_bytes(bytes(data))
    try:
        src = LocalSource(broken)
    except CorpusError:
        return
    with pytest.raises((CorpusError, QuerySyntaxError)):
        for q in ("cancer", "patients AND 2021[dp]", "surgery"):
            r = await src.search(q, limit=50)
            await src.fetch(r.pmids)
        raise CorpusError("no error surfaced")  # every page read failed silently: not acceptable either


def test_sqlite_errors_are_not_leaked(small_corpus: Path) -> None:
    src = LocalSource(small_corpus)
    index = src._index()
    index.conn.close()  # a connection that died under us
    with pytest.raises(CorpusError):
        src.search_sync("cancer")
    assert not isinstance(CorpusError("x"), sqlite3.Error)


# ------------------------------------------------------------------------------- demo corpus


async def test_demo_corpus_builds_once_and_finds_pubmedqa_by_question() -> None:
    settings = Settings()
    path = demo_corpus_path(settings)
    assert path.is_file() and path.parent.parent == Path(settings.cache_dir)
    mtime = path.stat().st_mtime_ns
    assert demo_corpus_path(settings) == path and path.stat().st_mtime_ns == mtime
    src = create_source("demo", settings)
    assert src.name == "demo"
    items = pubmedqa_items("pqal_test_unlabeled.json")
    pmid = sorted(items)[7]
    result = await src.search(items[pmid]["QUESTION"], limit=10)
    assert pmid in result.pmids
    (article,) = await src.fetch([pmid])
    assert article.title == ""  # deliberately: the question is not used as a title
    assert article.abstract_sections[-1].label == "CONCLUSIONS"
    assert article.abstract_sections[-1].text == items[pmid]["LONG_ANSWER"]
    assert "final_decision" not in article.model_dump_json()
    await src.aclose()


def test_demo_corpus_rebuilds_when_packaged_data_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip
    import json

    import clinfo.corpus.demo as local

    settings = Settings()
    first = demo_corpus_path(settings)
    qa = pubmedqa_items()
    pmid = next(iter(qa))
    alt = tmp_path / "demo_corpus.jsonl.gz"
    record = {"pmid": pmid, "title": "Replacement demo data", "abstract": "A different packaged corpus."}
    alt.write_bytes(gzip.compress(json.dumps(record).encode()))
    monkeypatch.setattr(local, "_demo_data", lambda: alt)
    second = demo_corpus_path(settings)
    assert second != first and second.is_file() and not first.exists()
    assert [p.name for p in second.parent.iterdir()] == [second.name]  # no temporary files left
    index = FtsIndex(open_corpus(second))
    assert index.size == 1 and index.fetch([pmid])[0].title == "Replacement demo data"
