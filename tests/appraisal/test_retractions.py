"""Retracted work is never evidence.

NLM's CommentsCorrections links read from real PubMed XML by both readers; kept by the mirror for
every record (a retraction notice in a later file marks the record it retracts, a later version
replaces a record's links, a deletion clears them); judged by ``clinfo.appraisal.evidence_status``;
set aside by the pipeline before screening, offline (a corpus built from the real update file,
``clinfo ask --llm local``) and online (the loopback E-utilities server, a scripted LLM that judges
everything relevant). The real case: PMID 31031480, a randomised trial of erector spinae plane
block, retracted by notice 34092875; both are in pubmed21n1298.xml.gz, the trial typed "Retracted
Publication" with a RetractionIn link, the notice typed "Retraction of Publication" with a
RetractionOf link and an abstract of its own ("[This retracts the article on p. 50 ...]").
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from clinfo import Answer, ClinfoAI
from clinfo.appraisal.evidence_status import PUBLICATION_KINDS, evidence_status, flags
from clinfo.corpus.build import build_index
from clinfo.corpus.store import RecordStore, article_to_row, corpus_info, row_to_article
from clinfo.eval.metrics import citation_metrics
from clinfo.models import AbstractSection, Article, Correction
from clinfo.pubmed.xml import iter_pubmed_xml, parse_efetch
from clinfo.render import answer_markdown
from clinfo.settings import Settings
from clinfo.sources.corpus import LocalSource
from tests.support.corpus import (
    BASELINE_20,
    UPDATE_21,
    XmlSlice,
    read_slice,
    records_by_pmid,
    write_jsonl,
    write_xml,
)
from tests.support.eutils import EUtilsServer
from tests.support.scripted import ScriptedLLM, screen_reply

RETRACTED, NOTICE = "31031480", "34092875"
RELATED = ("34092845", "34091477", "34092862")  # on-topic trials in the same file, not retracted
CONCERN, CONCERN_NOTICE = "32090497", "34096680"  # an article, and the expression of concern (no abstract) about it
ERRATUM_ON, ERRATUM = "21388667", "34092359"  # an article with an erratum, and the erratum
QUESTION = (
    "Is ultrasound-guided erector spinae plane block better than oblique subcostal transversus abdominis plane"
    " block for analgesia after laparoscopic cholecystectomy?"
)
RETRACTED_LINE = f"PMID {RETRACTED}: retracted (retraction notice PMID {NOTICE})"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real() -> dict[str, str]:
    """The real XML of the records this file is about, from the 2021 update file."""
    found = records_by_pmid(UPDATE_21, (RETRACTED, NOTICE, *RELATED, CONCERN, CONCERN_NOTICE, ERRATUM_ON, ERRATUM))
    assert set(found) == {RETRACTED, NOTICE, *RELATED, CONCERN, CONCERN_NOTICE, ERRATUM_ON, ERRATUM}
    return found


@pytest.fixture(scope="module")
def header() -> str:
    return read_slice(UPDATE_21, 1).header


def xml_bytes(header: str, *records: str) -> bytes:
    return (header + "\n".join(records) + "\n</PubmedArticleSet>\n").encode("utf-8")


def before_retraction(xml: str) -> str:
    """The trial's record as it stood before NLM processed the notice: no retraction type, no link."""
    xml = re.sub(r'\s*<PublicationType UI="D016441">Retracted Publication</PublicationType>', "", xml)
    out = re.sub(r"\s*<CommentsCorrectionsList>.*?</CommentsCorrectionsList>", "", xml, flags=re.S)
    assert out != xml and "Retracted Publication" not in out
    return out


def without_abstract(xml: str) -> str:
    """Most retraction notices have no abstract, so a mirror does not store them as documents."""
    out = re.sub(r"\s*<Abstract>.*?</Abstract>", "", xml, flags=re.S)
    assert out != xml
    return out


def without_links(xml: str) -> str:
    out = re.sub(r"\s*<CommentsCorrectionsList>.*?</CommentsCorrectionsList>", "", xml, flags=re.S)
    assert out != xml
    return out


# ------------------------------------------------------------------ parsing


def test_both_readers_keep_the_real_links_field_for_field(real: dict[str, str], header: str) -> None:
    data = xml_bytes(header, *real.values())
    entrez = {a.pmid: a for a in parse_efetch(data, Article)}
    bulk = {a.pmid: a for a in iter_pubmed_xml(io.BytesIO(data), Article) if isinstance(a, Article)}
    assert entrez.keys() == bulk.keys() == real.keys()
    for pmid in real:
        assert entrez[pmid].model_dump() == bulk[pmid].model_dump()
    trial, notice = entrez[RETRACTED], entrez[NOTICE]
    assert trial.corrections == [
        Correction(ref_type="RetractionIn", pmid=NOTICE, source="Anesth Essays Res. 2020 Jul-Sep;14(3):544")
    ]
    assert "Retracted Publication" in trial.publication_types
    assert notice.corrections == [
        Correction(ref_type="RetractionOf", pmid=RETRACTED, source="Anesth Essays Res. 2019 Jan-Mar;13(1):50-56")
    ]
    assert [(c.ref_type, c.pmid) for c in entrez[CONCERN].corrections] == [("ExpressionOfConcernIn", CONCERN_NOTICE)]
    assert [(c.ref_type, c.pmid) for c in entrez[CONCERN_NOTICE].corrections] == [("ExpressionOfConcernFor", CONCERN)]
    assert ("ErratumIn", ERRATUM) in [(c.ref_type, c.pmid) for c in entrez[ERRATUM_ON].corrections]


def test_a_reference_list_given_as_cites_links_is_not_kept(real: dict[str, str], header: str) -> None:
    # newer DTDs allow RefType="Cites" (the record's reference list): long, and no notice about it
    cites = '<CommentsCorrections RefType="Cites"><RefSource>Lancet. 2001;1:1</RefSource></CommentsCorrections>'
    xml = real[NOTICE].replace("<CommentsCorrectionsList>", "<CommentsCorrectionsList>" + cites)
    data = xml_bytes(header, xml)
    for article in (parse_efetch(data, Article)[0], next(iter_pubmed_xml(io.BytesIO(data), Article))):
        assert [c.ref_type for c in article.corrections] == ["RetractionOf"]


def test_links_survive_the_record_store_and_jsonl(tmp_path: Path, real: dict[str, str], header: str) -> None:
    (trial,) = parse_efetch(xml_bytes(header, real[RETRACTED]), Article)
    row = article_to_row(trial, 1)
    assert not isinstance(row, str)
    assert row_to_article((row[0], *row[2:])).corrections == trial.corrections
    good = {
        "pmid": "9",
        "abstract": "We found something.",
        "corrections": [{"ref_type": "RetractionIn", "pmid": 10, "source": "J. 2020;1:2"}, {"ref_type": "CommentIn"}],
    }
    bad = [
        {"pmid": "11", "abstract": "x", "corrections": "RetractionIn"},
        {"pmid": "12", "abstract": "x", "corrections": [{"pmid": "10"}]},
        {"pmid": "13", "abstract": "x", "corrections": [{"ref_type": "RetractionIn", "pmid": "ten"}]},
    ]
    db = tmp_path / "c.db"
    summary = build_index([write_jsonl(tmp_path / "r.jsonl", [good, *bad])], db, progress=False, workers=0)
    assert summary.added == 1 and summary.skipped["bad field type"] == 3
    store = RecordStore.open(db)
    (article,) = store.fetch(["9"])
    store.close()
    assert [(c.ref_type, c.pmid, c.source) for c in article.corrections] == [
        ("RetractionIn", "10", "J. 2020;1:2"),
        ("CommentIn", None, ""),
    ]
    assert evidence_status(article).kind == "retracted"


# ------------------------------------------------------------------ the verdict


def art(*ptypes: str, links: tuple[tuple[str, str | None], ...] = (), abstract: str = "Results.") -> Article:
    return Article(
        pmid="1",
        abstract_sections=[AbstractSection(text=abstract)] if abstract else [],
        publication_types=["Journal Article", *ptypes],
        corrections=[Correction(ref_type=t, pmid=p) for t, p in links],
    )


def test_retracted_by_either_signal_is_never_evidence_whatever_is_admitted() -> None:
    by_type = evidence_status(art("Retracted Publication"))
    by_link = evidence_status(art(links=(("RetractionIn", "7"), ("RetractionIn", "8"))))
    replaced = evidence_status(art(links=(("RetractedandRepublishedIn", "9"),)))
    for status in (by_type, by_link, replaced):
        assert not status.evidence and status.kind == "retracted"
    assert by_type.reason == "retracted (publication type Retracted Publication; NLM names no notice)"
    assert by_link.reason == "retracted (retraction notices PMIDs 7, 8)" and by_link.notices == ("7", "8")
    everything = evidence_status(art("Retracted Publication", "Letter"), admit=PUBLICATION_KINDS)
    assert not everything.evidence and everything.kind == "retracted"


def test_notices_and_opinion_are_set_aside_unless_their_kind_is_admitted() -> None:
    notice = evidence_status(art("Retraction of Publication", links=(("RetractionOf", "5"),)))
    assert (notice.evidence, notice.kind, notice.notices) == (False, "retraction notice", ("5",))
    assert notice.reason == "retraction notice of PMID 5 (publication type Retraction of Publication)"
    for ptype, kind in [
        ("Published Erratum", "erratum"),
        ("Expression of Concern", "expression of concern"),
        ("Comment", "comment"),
        ("Letter", "letter"),
        ("Editorial", "editorial"),
        ("News", "news"),
        ("Newspaper Article", "news"),
    ]:
        status = evidence_status(art(ptype))
        assert (status.evidence, status.kind) == (False, kind), ptype
        assert evidence_status(art(ptype), admit=[kind]).evidence
    assert evidence_status(art("Randomized Controlled Trial", "Multicenter Study")).evidence
    with pytest.raises(ValueError, match="admit_publication_kinds"):
        Settings(admit_publication_kinds=["retracted"])
    assert Settings(admit_publication_kinds=["letter"]).admit_publication_kinds == ["letter"]


def test_concerns_and_errata_keep_an_article_but_flag_it(real: dict[str, str], header: str) -> None:
    parsed = {a.pmid: a for a in parse_efetch(xml_bytes(header, *real.values()), Article)}
    concern = evidence_status(parsed[CONCERN])
    assert concern.evidence and [f.text for f in concern.flags] == [f"expression of concern (PMID {CONCERN_NOTICE})"]
    erratum = evidence_status(parsed[ERRATUM_ON])
    assert erratum.evidence and [f.kind for f in erratum.flags] == ["erratum"]
    # the notices themselves are not evidence
    assert evidence_status(parsed[CONCERN_NOTICE]).kind == "expression of concern"
    assert evidence_status(parsed[ERRATUM]).kind == "erratum"
    assert [f.text for f in flags(art(links=(("ErratumIn", None),)))] == ["erratum"]


# ------------------------------------------------------------------ the mirror


def fetch_one(db: Path, pmid: str) -> Article | None:
    store = RecordStore.open(db)
    try:
        found = store.fetch([pmid])
    finally:
        store.close()
    return found[0] if found else None


def test_a_notice_in_a_later_file_retracts_a_stored_record_it_does_not_touch(
    tmp_path: Path, real: dict[str, str], header: str, slice21: XmlSlice
) -> None:
    db = tmp_path / "mirror.db"
    first = write_xml(tmp_path / "f1.xml", header, [before_retraction(real[RETRACTED]), *slice21.records[:30]])
    build_index([first], db, progress=False, workers=0)
    assert evidence_status(fetch_one(db, RETRACTED)).evidence

    # the notice arrives alone, without an abstract: not a document, yet its link is kept
    notice = write_xml(tmp_path / "f2.xml", header, [without_abstract(real[NOTICE])])
    summary = build_index([notice], db, progress=False, workers=0)
    assert summary.skipped["no abstract"] == 1 and fetch_one(db, NOTICE) is None
    status = evidence_status(fetch_one(db, RETRACTED))
    assert (status.kind, status.notices) == ("retracted", (NOTICE,))

    # a later version of the notice without the link replaces its links
    revised = write_xml(tmp_path / "f3.xml", header, [without_links(without_abstract(real[NOTICE]))])
    build_index([revised], db, progress=False, workers=0)
    assert evidence_status(fetch_one(db, RETRACTED)).evidence

    # the link again, then the notice withdrawn by DeleteCitation: its links go with it
    again = write_xml(tmp_path / "f4.xml", header, [without_abstract(real[NOTICE])])
    build_index([again], db, progress=False, workers=0)
    assert evidence_status(fetch_one(db, RETRACTED)).kind == "retracted"
    gone = write_xml(tmp_path / "f5.xml", header, [], deletes=[NOTICE])
    build_index([gone], db, progress=False, workers=0)
    assert evidence_status(fetch_one(db, RETRACTED)).evidence
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM corrections WHERE pmid=?", (int(NOTICE),)).fetchone()[0] == 0
    conn.close()


def test_a_record_replaced_by_its_retracted_version(tmp_path: Path, real: dict[str, str], header: str) -> None:
    db = tmp_path / "mirror.db"
    old = write_xml(tmp_path / "old.xml", header, [before_retraction(real[RETRACTED])])
    new = write_xml(tmp_path / "new.xml", header, [real[RETRACTED]])
    build_index([old], db, progress=False, workers=0)
    summary = build_index([new], db, progress=False, workers=0)
    assert summary.replaced == 1
    status = evidence_status(fetch_one(db, RETRACTED))
    assert (status.kind, status.notices) == ("retracted", (NOTICE,))


def test_record_and_notice_parsed_in_parallel_workers(tmp_path: Path, real: dict[str, str], header: str) -> None:
    db = tmp_path / "mirror.db"
    files = [
        write_xml(tmp_path / "a.xml", header, [before_retraction(real[RETRACTED]), real[CONCERN]]),
        write_xml(tmp_path / "b.xml", header, [without_abstract(real[NOTICE]), real[CONCERN_NOTICE]]),
    ]
    build_index(files, db, progress=False, workers=2)
    store = RecordStore.open(db)
    trial, concern = store.fetch([RETRACTED, CONCERN])
    assert store.corrections_state == "complete"
    store.close()
    assert evidence_status(trial).notices == (NOTICE,)
    assert [f.text for f in evidence_status(concern).flags] == [f"expression of concern (PMID {CONCERN_NOTICE})"]


def test_an_earlier_version_applied_after_a_later_one_does_not_bring_its_links_back(
    tmp_path: Path, real: dict[str, str], header: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clinfo.corpus.build as build

    # parallel workers deliver files in any order; force the later file's batch to come first
    register = build._register_files
    monkeypatch.setattr(build, "_register_files", lambda *args: list(reversed(register(*args))))
    earlier = write_xml(tmp_path / "a.xml", header, [before_retraction(real[RETRACTED]), real[NOTICE]])
    later = write_xml(tmp_path / "b.xml", header, [without_links(real[NOTICE])])
    db = tmp_path / "mirror.db"
    summary = build_index([earlier, later], db, progress=False, workers=0)
    assert summary.skipped["superseded by a later file"] == 1
    assert fetch_one(db, NOTICE).corrections == []
    assert evidence_status(fetch_one(db, RETRACTED)).evidence


def test_a_corpus_built_before_the_links_table_still_reads_and_says_what_it_lacks(
    tmp_path: Path, real: dict[str, str], header: str
) -> None:
    db = tmp_path / "old.db"
    build_index([write_xml(tmp_path / "f1.xml", header, [before_retraction(real[RETRACTED])])], db, progress=False)
    conn = sqlite3.connect(db)  # what clinfo wrote before it kept links
    conn.execute("DROP TABLE corrections")
    conn.execute("DELETE FROM meta WHERE key='corrections'")
    conn.commit()
    conn.close()
    store = RecordStore.open(db)
    assert store.corrections_state == "missing" and store.fetch([RETRACTED])[0].corrections == []
    store.close()
    assert corpus_info(db)["corrections"] == "missing"  # what 'clinfo index info' shows
    source = LocalSource(db, shared=False)
    warnings = source.search_sync("erector spinae", limit=5).warnings
    source.close()
    assert any("built before clinfo kept NLM's retraction and correction links:" in w for w in warnings)
    # a later file still brings its notices: the table is added for the files to come
    build_index([write_xml(tmp_path / "f2.xml", header, [without_abstract(real[NOTICE])])], db, progress=False)
    source = LocalSource(db, shared=False)
    warnings = source.search_sync("erector spinae", limit=5).warnings
    source.close()
    assert any("links for all its files:" in w for w in warnings)
    assert corpus_info(db)["corrections"] == "partial"
    store = RecordStore.open(db)
    assert store.corrections_state == "partial"
    assert evidence_status(store.fetch([RETRACTED])[0]).kind == "retracted"
    store.close()


# ------------------------------------------------------------------ offline, end to end


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, real: dict[str, str]) -> Path:
    """A corpus from the real files: 3,000 records of the 2021 update file, the trial, its notice and the
    on-topic trials beside them, and 300 records of the 1970s baseline file."""
    folder = tmp_path_factory.mktemp("mirror")
    update = read_slice(UPDATE_21, 3000)
    mine = [real[p] for p in (RETRACTED, NOTICE, *RELATED)]
    f21 = write_xml(folder / "pubmed21n1298-slice.xml.gz", update.header, [*update.records, *mine])
    old = read_slice(BASELINE_20, 300)
    f20 = write_xml(folder / "pubmed20n0014-slice.xml.gz", old.header, old.records)
    db = folder / "corpus.db"
    summary = build_index([f20, f21], db, progress=False, workers=0)
    assert summary.added > 2000 and not summary.files_failed
    return db


def assert_set_aside_not_cited(answer: Answer) -> None:
    cited = {r.pmid for r in answer.references}
    screened = {s.pmid for s in answer.article_summaries + answer.irrelevant_articles}
    assert not cited & {RETRACTED, NOTICE} and not screened & {RETRACTED, NOTICE}
    aside = {s.pmid: s for s in answer.set_aside}
    assert aside[RETRACTED].kind == "retracted" and aside[RETRACTED].notices == [NOTICE]
    assert aside[RETRACTED].reason == f"retracted (retraction notice PMID {NOTICE})"
    assert aside[NOTICE].kind == "retraction notice" and aside[NOTICE].notices == [RETRACTED]
    assert answer.trace.articles_set_aside == len(answer.set_aside) >= 2
    assert RETRACTED_LINE in answer.to_markdown()
    assert citation_metrics([{"answer": json.loads(answer.to_json())}])["non_evidence_cited"] == 0


def test_offline_small_preset_sets_the_retracted_trial_and_its_notice_aside(mirror: Path, tmp_path: Path) -> None:
    ai = ClinfoAI(llm="local", source=f"local:{mirror}", search_mode="bm25", cache_dir=tmp_path, use_cache=False)
    assert ai.settings.screening == "retrieval" and ai.settings.synthesis_mode == "extractive"
    answer = ai.forward(QUESTION)
    assert answer.trace.llm_calls == 0
    assert not any("correction links" in w for w in answer.trace.warnings)  # a corpus built today keeps them
    assert_set_aside_not_cited(answer)
    # what is left is real evidence on the question: an on-topic trial is quoted, not the retracted one
    assert not answer.no_evidence and answer.references[0].pmid in RELATED
    assert "akin analgesia" not in answer.synthesis and "This retracts" not in answer.synthesis


def test_offline_with_only_the_retracted_trial_and_its_notice_the_no_evidence_answer_says_why(
    tmp_path: Path, real: dict[str, str], header: str
) -> None:
    db = tmp_path / "c.db"
    build_index([write_xml(tmp_path / "f.xml", header, [real[RETRACTED], real[NOTICE]])], db, progress=False)
    answer = ClinfoAI(
        llm="local", source=f"local:{db}", search_mode="bm25", cache_dir=tmp_path, use_cache=False
    ).forward(QUESTION)
    assert answer.no_evidence and answer.references == [] and answer.trace.articles_screened == 0
    assert "2 set aside as not evidence (1 retracted, 1 retraction notice)" in answer.synthesis
    assert "no other record had an abstract to screen" in answer.synthesis
    assert_set_aside_not_cited(answer)


def test_admitting_retraction_notices_admits_the_notice_never_the_retracted_trial(mirror: Path, tmp_path: Path) -> None:
    ai = ClinfoAI(
        llm="local",
        source=f"local:{mirror}",
        search_mode="bm25",
        cache_dir=tmp_path,
        use_cache=False,
        admit_publication_kinds=["retraction notice"],
    )
    answer = ai.forward(QUESTION)
    assert [s.pmid for s in answer.set_aside] == [RETRACTED]
    assert NOTICE in {s.pmid for s in answer.article_summaries + answer.irrelevant_articles}


def test_clinfo_ask_local_over_the_mirror_lists_the_retraction(mirror: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLINFO_CACHE_DIR": str(tmp_path), "CLINFO_SEARCH_MODE": "bm25"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "clinfo",
            "ask",
            "--llm",
            "local",
            "--source",
            f"local:{mirror}",
            "--no-cache",
            QUESTION,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "Set aside (not evidence)" in run.stdout and RETRACTED_LINE in run.stdout
    references = run.stdout.split("References", 1)[1].split("Set aside", 1)[0]
    assert RETRACTED not in references and NOTICE not in references


# ------------------------------------------------------------------ online, end to end


@pytest.fixture(scope="module")
def eutils(real: dict[str, str]):
    served: dict[str, bytes] = {}
    update = read_slice(UPDATE_21, 1500)
    for i, xml in enumerate(update.records):
        served[update.pmid(i)] = xml.encode("utf-8")
    served.update({p: real[p].encode("utf-8") for p in (RETRACTED, NOTICE, *RELATED)})
    with EUtilsServer(records=served) as server:
        yield server


def synthesis_citing_everything(request) -> str:
    blocks = sorted({int(n) for n in re.findall(r"^\[(\d+)\]", request.messages[-1]["content"], flags=re.M)})
    return " ".join(f"Finding {n} bears on the question [{n}]." for n in blocks) or "Nothing to say."


def test_online_an_llm_that_judges_everything_relevant_never_sees_the_retracted_trial(eutils) -> None:
    llm = ScriptedLLM(
        {
            "plan": json.dumps({"queries": ["erector spinae plane block", "transversus abdominis plane block"]}),
            "screen": screen_reply(lambda title: True),
            "synthesize": synthesis_citing_everything,
            "tldr": "Plane blocks reduce pain after cholecystectomy.",
        }
    )
    ai = ClinfoAI(llm=llm, source="pubmed", eutils_base_url=eutils.base_url, use_cache=False, eutils_retries=0)
    answer = ai.forward(QUESTION)
    fetched = {p for r in eutils.requests if r.endpoint == "efetch" for p in r.params["id"].split(",")}
    assert {RETRACTED, NOTICE} <= fetched  # retrieved through real efetch XML...
    assert_set_aside_not_cited(answer)  # ...and set aside before any LLM call about them
    seen = "\n".join(m["content"] for call in llm.calls for m in call.messages)
    assert "akin analgesia" not in seen and "This retracts the article" not in seen
    assert answer.references and all(r.cited for r in answer.references)
    assert {r.pmid for r in answer.references} <= {s.pmid for s in answer.article_summaries}
    markdown = answer_markdown(answer, escape=True)
    assert "Set aside (not evidence)" in markdown and f"retracted (retraction notice PMID {NOTICE})" in markdown


# ------------------------------------------------------------------ readers and evaluation


def test_flags_show_on_reference_and_card_and_eval_counts_what_must_not_be_cited(
    real: dict[str, str], header: str
) -> None:
    from clinfo.app import view
    from clinfo.eval.metrics import metrics_from_records
    from clinfo.eval.report import markdown_table
    from clinfo.models import ArticleSummary, Reference

    parsed = {a.pmid: a for a in parse_efetch(xml_bytes(header, *real.values()), Article)}

    def answer_citing(*pmids: str) -> Answer:
        articles = [parsed[p] for p in pmids]
        return Answer(
            question=QUESTION,
            references=[
                Reference(
                    n=n, pmid=a.pmid, citation=a.citation, url=a.url, cited=True, flags=[f.text for f in flags(a)]
                )
                for n, a in enumerate(articles, 1)
            ],
            article_summaries=[ArticleSummary(article=a, relevant=True) for a in articles],
        )

    good = answer_citing(CONCERN)
    notice = f"expression of concern (PMID {CONCERN_NOTICE})"
    assert f"[NLM notice: {notice}]" in good.to_markdown()
    assert f"**NLM notice:** {notice}" in answer_markdown(good, escape=True)
    card = view.card_md(good.article_summaries[0], 1)
    assert f"**Expression of concern (PMID {CONCERN_NOTICE})**" in card
    assert view.notices_md(parsed[RELATED[0]]) == ""

    bad = answer_citing(RETRACTED, NOTICE, CONCERN)
    records = [{"id": str(i), "answer": json.loads(a.to_json())} for i, a in enumerate((good, bad))]
    metrics = metrics_from_records(records, with_bertscore=False)
    assert (metrics["citations"]["retracted_cited"], metrics["citations"]["non_evidence_cited"]) == (1, 2)
    assert "| retracted or non-evidence records cited (must be 0) | 2 |" in markdown_table([("run", metrics)])


def test_the_langchain_retriever_leaves_out_what_is_not_evidence(mirror: Path) -> None:
    from clinfo.langchain import ClinfoRetriever

    docs = ClinfoRetriever(source=f"local:{mirror}", k=10).invoke("erector spinae plane block cholecystectomy")
    pmids = [d.metadata["pmid"] for d in docs]
    assert pmids and not {RETRACTED, NOTICE} & set(pmids)
    assert RELATED[0] in pmids and all(d.metadata["notices"] == [] for d in docs)


# ------------------------------------------------------------------ the app


def _app_llm(model: str, settings: object) -> ScriptedLLM:
    return ScriptedLLM(
        {
            "plan": json.dumps({"queries": ["magnesium sleep"]}),
            "screen": screen_reply(lambda title: True),
            "synthesize": "Magnesium improved sleep [1].",
            "tldr": "One trial suggests magnesium may improve sleep.",
        },
        spec=f"retractiontest:{model}",
    )


def _app_source(arg: str, settings: object) -> object:
    from tests.support.scripted import MemorySource, make_article

    concern = [Correction(ref_type="ExpressionOfConcernIn", pmid="901")]
    articles = [
        make_article("101", "Magnesium and sleep in elderly: an RCT", "Magnesium improved sleep.", corrections=concern),
        make_article(
            "105",
            "Magnesium and sleep: a retracted trial",
            "Magnesium cured insomnia.",
            publication_types=["Journal Article", "Retracted Publication"],
            corrections=[Correction(ref_type="RetractionIn", pmid="106")],
        ),
        make_article(
            "106",
            "Retraction: Magnesium and sleep",
            "This retracts PMID 105.",
            publication_types=["Retraction of Publication"],
        ),
        make_article(
            "107", "Magnesium for sleep? A reply", "We disagree with the authors.", publication_types=["Letter"]
        ),
    ]
    return MemorySource({"magnesium sleep": ["105", "101", "106", "107"]}, articles)


def test_the_app_lists_what_was_set_aside_and_shows_concerns_on_cards(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from streamlit.testing.v1 import AppTest

    from clinfo.llm import register
    from clinfo.sources import register as register_source

    register("retractiontest", _app_llm)
    register_source("retractiontest", _app_source)
    monkeypatch.setenv("CLINFO_APP_DB", str(tmp_path / "history.db"))
    monkeypatch.setenv("CLINFO_LLM", "retractiontest:ok")
    monkeypatch.setenv("CLINFO_SOURCE", "retractiontest")
    monkeypatch.setenv("CLINFO_USE_CACHE", "false")
    for name in ("CLINFO_APP_PASSWORD", "CLINFO_APP_CONFIG", "CLINFO_APP_SOURCES", "CLINFO_APP_LLMS"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.chat_input[0].set_value("Does magnesium improve sleep in older adults?").run()
    assert not at.exception, at.exception
    labels = [e.label for e in at.main.expander]
    (aside,) = [i for i, label in enumerate(labels) if "set aside" in label]
    assert labels[aside].startswith("3 set aside")
    listed = "\n".join(m.value for m in at.main.expander[aside].markdown)
    assert "Retracted (retraction notice PMID 106)" in listed
    assert "Retraction notice (publication type Retraction of Publication)" in listed
    assert "Letter (publication type Letter)" in listed
    (relevant,) = [i for i, label in enumerate(labels) if label.endswith(("relevant article", "relevant articles"))]
    cards = "\n".join(m.value for m in at.main.expander[relevant].markdown)
    assert "**Expression of concern (PMID 901)**" in cards and "retracted trial" not in cards
    answer = "\n".join(m.value for m in at.chat_message[1].markdown)
    assert "**NLM notice:** expression of concern (PMID 901)" in answer
