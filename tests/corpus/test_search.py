"""Searching the local corpus: PubMed syntax run on the lexical index behaves like set algebra over
the real records, filters hold, hostile input never fails (it is searched as words), LocalSource
honours the Source protocol, and the packaged demo corpus builds and answers."""

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
from clinfo.corpus.lexical import LexicalIndex, lexical_dir
from clinfo.corpus.lexical_query import TEXT_FIELDS, And, Natural, Not, Or, Pmids, Text, Translation, Year, translate
from clinfo.corpus.store import RecordStore
from clinfo.errors import CorpusError
from clinfo.settings import Settings
from clinfo.sources import Source, create_source
from clinfo.sources.base import DateRange
from clinfo.sources.corpus import LocalSource
from tests.support.corpus import pubmedqa_items

ALL = 100_000


class Engine:
    """The lexical index and the record store of one corpus, searched by query text."""

    def __init__(self, path: Path) -> None:
        self.store = RecordStore.open(path)
        self.lexical = LexicalIndex(path, self.store.meta("analyzer") or "")

    def search(
        self, query: str, limit: int = 20, dates: DateRange | None = None
    ) -> tuple[list[int], list[float], int, Translation]:
        tr = translate(query)
        return (*self.lexical.search(tr, limit, dates), tr)

    def fetch(self, pmids: list[str]) -> list:
        return self.store.fetch(pmids)


@pytest.fixture(scope="module")
def index(small_corpus: Path) -> Engine:
    return Engine(small_corpus)


def hits(index: Engine, query: str, dates: DateRange | None = None) -> set[int]:
    return set(index.search(query, ALL, dates)[0])


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def test_boolean_operators_are_set_algebra(index: Engine) -> None:
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


def test_count_is_the_number_of_matches(index: Engine) -> None:
    pmids, scores, count, _ = index.search("cancer[tiab]", 5)
    assert len(pmids) == 5 and count == len(hits(index, "cancer[tiab]")) > 5
    assert scores == sorted(scores, reverse=True)


def test_field_tags_restrict_columns(index: Engine) -> None:
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


def test_phrases_truncation_and_proximity(index: Engine) -> None:
    phrase = hits(index, '"breast cancer"')
    assert phrase
    for article in index.fetch([str(p) for p in phrase]):
        text = " ".join(_words(" ".join([article.title, article.abstract, *article.mesh])))
        assert "breast cancer" in text
    assert phrase <= hits(index, "breast AND cancer")
    assert hits(index, "breast cancer[tiab]") <= hits(index, "breast[tiab] AND cancer[tiab]")
    assert hits(index, "cancer") <= hits(index, "canc*")
    assert hits(index, "surgery") < hits(index, "surg*")  # surgical, surgeon: other stems
    near = hits(index, '"breast cancer"[tiab:~5]')
    assert phrase & hits(index, '"breast cancer"[tiab]') <= near


def test_dates_filter_on_year(index: Engine) -> None:
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


def test_filters_without_text_and_pmid_lookup(index: Engine) -> None:
    some = sorted(hits(index, "cancer"))[:2]
    assert hits(index, f"{some[0]}[pmid]") == {some[0]}
    assert hits(index, f"{some[0]}[uid] OR {some[1]}[pmid]") == set(some)
    only_2021 = hits(index, "2021[dp]")
    assert only_2021 and hits(index, "2021[dp] NOT cancer") == only_2021 - hits(index, "cancer")


def test_text_and_filters_mixed_under_or_and_not(index: Engine) -> None:
    a, d, m = hits(index, "cancer"), hits(index, "2021[dp]"), hits(index, "humans[mh]")
    assert a and d and m
    assert hits(index, "cancer NOT 2021[dp]") == a - d
    assert hits(index, "cancer OR 2021[dp]") == a | d
    assert hits(index, "(cancer OR 2021[dp]) NOT humans[mh]") == (a | d) - m
    assert hits(index, "2021[dp] NOT (cancer OR humans[mh])") == d - (a | m)
    assert hits(index, "(cancer AND 2021[dp]) OR humans[mh]") == (a & d) | m


def test_unsupported_tags_degrade_with_warnings(index: Engine) -> None:
    pmids, _, _, fq = index.search("cancer AND english[la] AND hasabstract[sb]", ALL)
    assert set(pmids) == hits(index, "cancer")
    assert any("[la] ignored" in w for w in fq.warnings) and any("[sb] ignored" in w for w in fq.warnings)
    _, _, _, fq = index.search("Smith J[au]", 10)
    assert any("[au] is not indexed locally" in w for w in fq.warnings)
    _, _, _, fq = index.search("neoplasms[majr]", 10)
    assert any("[majr]" in w for w in fq.warnings)
    _, _, _, fq = index.search("ca*[tiab]", 10)
    assert any("at least 4 letters" in w for w in fq.warnings)


def test_malformed_boolean_queries_are_searched_as_words_with_a_warning(index: Engine) -> None:
    for bad in ("(cancer AND", "cancer[foo]", "cancer AND OR x", "cancer AND"):
        pmids, _, _, tr = index.search(bad, ALL)
        assert tr.natural and any("not PubMed syntax" in w for w in tr.warnings), bad
        assert set(pmids) >= hits(index, "cancer")  # the OR of its words


def test_pasted_question_with_brackets_is_natural_language(index: Engine) -> None:
    # The case from the issue: brackets after a parenthesis are not a field tag.
    q = (
        "Is EuroQol 5-Dimension Health Assessment (EQ-5D) [a widely used, simple instrument ...]"
        " a 5 question assessment?"
    )
    pmids, _, _, tr = index.search(q, 10)
    assert tr.natural and pmids and any("follows ')'" in w for w in tr.warnings)
    for text in (
        "Does aspirin: reduce stroke risk?",
        'Is the "July effect real?',
        "Does (early) surgery help ((?",
        "cancer]",
    ):
        pmids, _, _, tr = index.search(text, 10)
        assert tr.natural and pmids, text


def test_an_operator_word_without_an_operand_is_prose(index: Engine) -> None:
    # "the OR." is the operating room: read as a union, each side became an AND of many words
    # and a pasted conclusion found nothing.
    for text in (
        "Less time was spent in the OR. Cancer patients recovered sooner.",
        "cancer surgery in the OR, with fewer complications",
        "was cancer NOT, after all, more common",
    ):
        pmids, _, _, tr = index.search(text, 10)
        assert tr.natural and pmids, text
    pmids, _, _, tr = index.search("cancer OR aspirin", ALL)
    assert not tr.natural and set(pmids) == hits(index, "cancer") | hits(index, "aspirin")


def test_natural_language_question_finds_its_abstract(index: Engine) -> None:
    qa = pubmedqa_items()
    found = 0
    for pmid in list(qa)[:50]:
        pmids, _, _, fq = index.search(qa[pmid]["QUESTION"], 10)
        assert fq.natural
        found += int(pmid) in pmids
    assert found >= 45


def test_typed_questions_with_quotes_or_stray_parentheses_still_work(index: Engine) -> None:
    for text in (
        'Is there a "July effect" in surgery?',
        'A "dangling quote about cancer',
        "cancer (in adults",
        "CYP2D6*4 and cancer",
    ):
        pmids, _, _, fq = index.search(text, 10)
        assert fq.natural and pmids


_hostile = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.sampled_from(
            [
                '"',
                "(",
                ")",
                "[",
                "]",
                "*",
                ":",
                "^",
                "{",
                "}",
                "-",
                "+",
                "NEAR",
                "NEAR(",
                "AND",
                "OR",
                "NOT",
                "[tiab]",
                "[mh]",
                "[dp]",
                "[au]",
                "[pt]",
                "2020",
                "2020:2021",
                "cancer",
                "canc",
                "'; DROP TABLE docs; --",
                "\x00",
                "\u00e9",
                "\u200b",
                "title:",
                "{title}:",
                " ",
                "  ",
                "~3",
                "[tiab:~2]",
                "[mh:noexp]",
                "/",
                "#1",
                "\\",
            ]  # fmt: skip
        ),
        max_size=25,
    ).map("".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_hostile)
def test_hostile_input_never_raises(index: Engine, text: str) -> None:
    pmids, scores, count, _ = index.search(text, 5)
    assert len(pmids) == len(scores) <= 5 and count >= len(pmids)


_FIELDS = {*TEXT_FIELDS, "pubtype"}


def _well_formed(plan: object) -> bool:
    """Every leaf of a plan is letters-and-digits tokens in known fields, a year range or PMIDs."""
    if isinstance(plan, Text):
        return (
            bool(plan.tokens) and set(plan.fields) <= _FIELDS and all(re.fullmatch(r"[^\W_]+", t) for t in plan.tokens)
        )
    if isinstance(plan, Natural):
        return all(re.fullmatch(r"[^\W_]+", w) for w in plan.words) and all(len(p) > 1 for p in plan.phrases)
    if isinstance(plan, Year):
        return plan.lo is not None or plan.hi is not None
    if isinstance(plan, Pmids):
        return all(p > 0 for p in plan.ids)
    if isinstance(plan, (And, Or)):
        return len(plan.children) > 1 and all(_well_formed(c) for c in plan.children)
    if isinstance(plan, Not):
        return bool(plan.negatives) and all(_well_formed(c) for c in (plan.positive, *plan.negatives) if c is not None)
    return False


def test_translation_keeps_words_and_fields() -> None:
    tr = translate('"drop table docs; --"[tiab] OR NEAR[ti] OR col:umn* OR ^start OR {title}:x AND a-b-c[mh]')
    assert not tr.natural and tr.plan is not None and _well_formed(tr.plan)
    assert 'title|abstract:"drop table docs"' in tr.text and 'mesh:"a b c"' in tr.text


@settings(max_examples=300, deadline=None)
@given(st.one_of(_hostile, st.text()))
def test_every_string_translates_or_degrades(text: str) -> None:
    tr = translate(text)  # never raises
    assert tr.empty or tr.plan is None or _well_formed(tr.plan)
    if tr.natural and not tr.empty:
        assert isinstance(tr.plan, Natural)


# ------------------------------------------------------------------------------- LocalSource


async def test_local_source_search_and_fetch(small_corpus: Path) -> None:
    src = LocalSource(small_corpus)
    assert isinstance(src, Source) and src.name == "local"
    result = await src.search("cancer[tiab] AND patients", limit=5)
    assert len(result.pmids) == len(result.scores) == 5 and result.count >= 5
    assert result.translation and "title|abstract:cancer" in result.translation
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
    with pytest.raises(CorpusError):
        for q in ("cancer", "patients AND 2021[dp]", "surgery"):
            r = await src.search(q, limit=50)
            await src.fetch(r.pmids)
        raise CorpusError("no error surfaced")  # every page read failed silently: not acceptable either


def test_sqlite_errors_are_not_leaked(small_corpus: Path) -> None:
    src = LocalSource(small_corpus)
    with src.engine.records():  # a call in flight: the pool keeps what is given back
        with src.engine.records() as store:
            pmid = str(store.conn.execute("SELECT min(pmid) FROM docs").fetchone()[0])
            store.conn.close()  # a connection that died under us, given back to the pool
        with pytest.raises(CorpusError):
            src.fetch_sync([pmid])
    assert not isinstance(CorpusError("x"), sqlite3.Error)
    # the broken connection was dropped, not handed out again: the shared corpus still answers
    assert [a.pmid for a in LocalSource(small_corpus).fetch_sync([pmid])] == [pmid]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=120))
def test_local_source_search_never_raises_on_any_text(small_corpus: Path, text: str) -> None:
    src = _shared_source(small_corpus)
    result = src.search_sync(text, limit=3)
    assert len(result.pmids) <= 3 and all("\n" not in w for w in result.warnings)


_SOURCES: dict[Path, LocalSource] = {}


def _shared_source(path: Path) -> LocalSource:
    if path not in _SOURCES:
        _SOURCES[path] = LocalSource(path)
    return _SOURCES[path]


def test_missing_or_broken_lexical_index_is_one_corpus_error(tmp_path: Path, small_corpus: Path) -> None:
    import shutil

    db = tmp_path / "c.db"
    shutil.copy(small_corpus, db)
    with pytest.raises(CorpusError, match="no lexical index.*clinfo index upgrade"):
        LocalSource(db)
    from clinfo.corpus.upgrade import upgrade_corpus

    assert upgrade_corpus(db, progress=False) == RecordStore.open(small_corpus).size  # rebuilt from the records
    rebuilt, original = (
        LocalSource(db).search_sync("cancer[tiab]", limit=ALL),
        LocalSource(small_corpus).search_sync("cancer[tiab]", limit=ALL),
    )
    assert set(rebuilt.pmids) == set(original.pmids) and rebuilt.count == original.count > 0
    shutil.rmtree(lexical_dir(db))
    shutil.copytree(lexical_dir(small_corpus), lexical_dir(db))
    (lexical_dir(db) / "meta.json").write_text("{not json")
    with pytest.raises(CorpusError, match="lexical index"):
        LocalSource(db)


# ------------------------------------------------------------------------------- demo corpus


async def test_demo_corpus_builds_once_and_finds_pubmedqa_by_question() -> None:
    settings = Settings()
    path = demo_corpus_path(settings)
    assert path.is_file() and path.parent.parent.parent == Path(settings.cache_dir)
    assert lexical_dir(path).is_dir()
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
    assert second != first and second.is_file() and not first.exists() and not first.parent.exists()
    assert [p.name for p in second.parent.parent.iterdir()] == [second.parent.name]  # no temporary folders left
    store = RecordStore.open(second)
    assert store.size == 1 and store.fetch([pmid])[0].title == "Replacement demo data"
