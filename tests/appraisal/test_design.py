"""Study design and level of evidence (clinfo.appraisal.design) on real PubMed records: NLM's
publication types, its MeSH design terms and check tags, and the title/abstract path for records
NLM has not indexed yet."""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

import pytest

from clinfo.appraisal.design import DESIGNS, LEVELS, Design, classify
from clinfo.appraisal.design_text import design_from_text
from clinfo.models import AbstractSection, Answer, Article, ArticleSummary
from clinfo.pubmed.xml import iter_pubmed_xml

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "pubmed-baseline"
FILES = (SHARED / "pubmed20n0014.xml.gz", SHARED / "pubmed21n1298.xml.gz")
DEMO = Path(__file__).resolve().parents[2] / "clinfo" / "data" / "demo_corpus.jsonl.gz"

# PMID -> (kind, level, basis, human) as classify() must decide it
EXPECTED: dict[str, tuple[str, int | None, str, bool | None]] = {
    # publication types
    "399953": ("randomised trial", 2, "publication type", True),  # "Clinical Trial" + "Randomized Controlled Trial"
    "399315": ("non-randomised trial", 3, "publication type", True),  # "Controlled Clinical Trial" only
    "33294991": ("meta-analysis", 1, "publication type", True),  # "Meta-Analysis" + "Systematic Review"
    "405208": ("case report/series", 4, "publication type", True),
    "399434": ("narrative review", 5, "publication type", False),  # a review of veterinary medicine
    "403167": ("animal/in-vitro", 5, "publication type", False),  # "Case Reports" of a dog: Animals, no Humans
    # no design publication type; a design MeSH term
    "399501": ("cohort", 3, "MeSH", True),  # Retrospective Studies
    "32356919": ("cross-sectional", 4, "MeSH", True),  # Cross-Sectional Studies
    # not indexed yet ("Journal Article" only, no MeSH): the title and abstract
    "32582595": ("randomised trial", 2, "title/abstract", None),  # "...: A Randomized Controlled Trial."
    "32565146": ("cohort", 3, "title/abstract", None),  # "...: A retrospective cohort study"
    "32647978": ("case-control", 4, "title/abstract", None),
    "33251896": ("cross-sectional", 4, "title/abstract", None),
    "32593276": ("systematic review", 1, "title/abstract", None),
    # the publisher typed it "Review"; NLM adds "Meta-Analysis" only at indexing
    "31664548": ("meta-analysis", 1, "title/abstract", None),
    # indexed, no design type or MeSH, Animals without Humans: monkeys randomly divided into groups
    "405502": ("animal/in-vitro", 5, "title/abstract", False),
}


def _records(wanted: set[str]) -> dict[str, Article]:
    """The wanted PMIDs' records, cut out of the baseline files and parsed by the bulk reader
    (parsing both whole files would take ~20 s)."""
    found: dict[str, Article] = {}
    for path in FILES:
        data = gzip.open(path).read()
        head = data[: data.index(b"<PubmedArticleSet>") + len(b"<PubmedArticleSet>")]
        chunks = []
        pmids = b"|".join(p.encode() for p in wanted - set(found))
        # a record's own PMID opens its MedlineCitation (others are cited in CommentsCorrections)
        for m in re.finditer(rb'<MedlineCitation[^>]*>\s*<PMID Version="\d+">(?:' + pmids + rb")</PMID>", data):
            start = data.rindex(b"<PubmedArticle>", 0, m.start())
            end = data.index(b"</PubmedArticle>", m.end()) + len(b"</PubmedArticle>")
            chunks.append(data[start:end])
        xml = head + b"\n" + b"\n".join(chunks) + b"\n</PubmedArticleSet>\n"
        found.update({a.pmid: a for a in iter_pubmed_xml(io.BytesIO(xml), Article) if isinstance(a, Article)})
    return found


@pytest.fixture(scope="module")
def records() -> dict[str, Article]:
    found = _records(set(EXPECTED))
    assert set(found) == set(EXPECTED)
    return found


@pytest.mark.parametrize("pmid", sorted(EXPECTED))
def test_real_records_get_their_design(records: dict[str, Article], pmid: str) -> None:
    kind, level, basis, human = EXPECTED[pmid]
    design = records[pmid].design
    assert (design.kind, design.level, design.basis, design.human) == (kind, level, basis, human)
    assert design.level == LEVELS[design.kind]


def test_indexing_decides_over_the_text(records: dict[str, Article]) -> None:
    # a 1970s trial typed "Controlled Clinical Trial" (the Cochrane retagging read the full text):
    # the type stands, whatever the abstract says
    trial = records["399315"]
    assert trial.publication_types and trial.mesh
    assert classify(trial).kind == "non-randomised trial"


@pytest.mark.parametrize(
    "pmid", ["399953", "32582595", "32565146", "32647978", "33251896", "32593276", "31664548", "405502"]
)
def test_text_path_alone_agrees_with_nlm(records: dict[str, Article], pmid: str) -> None:
    """With publication types and MeSH hidden (as the benchmark hides them), the title and
    abstract still give the design."""
    assert classify(records[pmid], use_indexing=False).kind == EXPECTED[pmid][0]
    assert classify(records[pmid], use_indexing=False).human is None  # check tags hidden too


def test_demo_trial_not_yet_indexed_is_a_randomised_trial() -> None:
    """The issue's example: a demo record whose title ends "A Randomized Controlled Trial" and
    whose only publication type is "Journal Article"."""
    with gzip.open(DEMO, "rt", encoding="utf-8") as stream:
        row = next(json.loads(line) for line in stream if '"34092845"' in line)
    article = Article(
        pmid=row["pmid"],
        title=row["title"],
        abstract_sections=[AbstractSection(**s) for s in row["abstract"]],
        publication_types=row["publication_types"],
        mesh=row["mesh"],
    )
    assert article.publication_types == ["Journal Article"]
    assert article.title.endswith("A Randomized Controlled Trial.")
    assert (article.design.kind, article.design.level, article.design.basis) == (
        "randomised trial",
        2,
        "title/abstract",
    )
    assert article.design.label == "randomised trial, level 2"


@pytest.mark.parametrize(
    "title,abstract",
    [
        ("Aspirin after hip fracture", "A randomised trial is needed to settle the question."),
        ("Statins in the elderly", "Further randomized controlled trials are warranted."),
        ("Statins in the elderly", "Previous randomized trials showed no benefit. We reviewed 40 charts."),
        ("Exercise in heart failure", "CONCLUSIONS: Larger randomized trials should be conducted."),
        # a plural, whatever the adjectives and commas between
        ("Tranexamic acid", "Randomized, double-blind, placebo-controlled trials of tranexamic acid are summarised."),
        # a wish after "this" is still a wish
        ("Middle cerebral artery stenosis", "This small series supports the need for a randomized study of bypass."),
        ("Mendelian randomization of body mass and glioma", "We used genetic variants as instruments."),
        ("Sodium intake in Mali", "Households were randomly selected from a random sample of villages."),
    ],
)
def test_designs_only_mentioned_are_not_randomised_trials(title: str, abstract: str) -> None:
    assert design_from_text(title, abstract) != "randomised trial"


@pytest.mark.parametrize(
    "title,abstract,kind",
    [
        ("Drug X for gout", "METHODS: Patients were randomly assigned to drug X or placebo.", "randomised trial"),
        ("Drug X for gout: a randomised controlled trial", "Drug X was compared with placebo.", "randomised trial"),
        ("Drug X for gout", "In this randomized, controlled trial, 80 patients had X or placebo.", "randomised trial"),
        ("Drug X", "In this trial, patients who needed surgery were randomized to X or Y.", "randomised trial"),
        ("Drug X: protocol", "In this trial, patients will be randomized to X or placebo.", "randomised trial"),
        # a generic "trial" title whose abstract says how the arms were formed
        ("A controlled trial of drug X", "Forty patients were allocated at random to two groups.", "randomised trial"),
        ("Drug X for gout: a non-randomised controlled trial", "Patients chose their arm.", "non-randomised trial"),
        ("Drug X: a systematic review and meta-analysis", "We searched MEDLINE and Embase.", "meta-analysis"),
        ("Drug X", "We report a 54-year-old man with gout treated with drug X.", "case report/series"),
        # a review that mentions trials is a review
        ("Gout", "This review summarises randomized trials of urate lowering.", "narrative review"),
        (
            "Drug X in gout",
            "BACKGROUND: Randomised trials showed benefit. METHODS: A retrospective cohort of 900.",
            "cohort",
        ),
    ],
)
def test_designs_stated(title: str, abstract: str, kind: str) -> None:
    assert design_from_text(title, abstract) == kind


def test_animals_and_humans() -> None:
    rats = "Rats were randomly assigned to diet A or diet B; the rats fed diet A gained weight."
    assert design_from_text("Diet and weight in rats", rats) == "animal/in-vitro"
    people = "Patients were randomly assigned to diet A or diet B; the patients on diet A gained weight."
    assert design_from_text("Diet and weight", people) == "randomised trial"
    # a meta-analysis stays one whatever its studies' subjects
    assert design_from_text("Statins in mice: a meta-analysis", "Mice studies were pooled.") == "meta-analysis"

    # MeSH check tags: Animals without Humans makes a typed trial an animal study; with Humans it stays
    typed = dict(pmid="1", title="X", publication_types=["Randomized Controlled Trial"])
    animal = classify(Article(**typed, mesh=["Animals", "Dogs", "Analgesics"]))
    assert (animal.kind, animal.level, animal.human) == ("animal/in-vitro", 5, False)
    both = classify(Article(**typed, mesh=["Animals", "Humans", "Analgesics"]))
    assert (both.kind, both.human) == ("randomised trial", True)
    vet = classify(Article(pmid="2", title="X", publication_types=["Randomized Controlled Trial, Veterinary"]))
    assert vet.kind == "animal/in-vitro"
    # an observational study whose MeSH says cross-sectional is cross-sectional
    survey = classify(Article(pmid="3", publication_types=["Observational Study"], mesh=["Cross-Sectional Studies"]))
    assert (survey.kind, survey.basis) == ("cross-sectional", "MeSH")


def test_nothing_stated_is_other_and_not_graded() -> None:
    design = classify(Article(pmid="4", title="Serum zinc", publication_types=["Journal Article"]))
    assert (design.kind, design.level, design.basis, design.human) == ("other", None, "none", None)
    assert design.label == "other (not graded)"
    assert set(LEVELS) == set(DESIGNS)


def test_design_survives_the_json_round_trip(records: dict[str, Article]) -> None:
    article = records["32582595"]
    dumped = article.model_dump(mode="json")
    assert dumped["design"] == {"kind": "randomised trial", "level": 2, "basis": "title/abstract", "human": None}
    answer = Answer(question="q", article_summaries=[ArticleSummary(article=article, relevant=True)])
    back = Answer.from_json(answer.to_json())
    assert back.article_summaries[0].article.design == Design(kind="randomised trial", level=2, basis="title/abstract")
    assert json.loads(answer.to_json())["article_summaries"][0]["article"]["design"]["level"] == 2


def test_every_design_and_kind_named_in_nlm_vocabulary_is_one_clinfo_knows():
    from clinfo.appraisal.design import DESIGNS
    from clinfo.appraisal.evidence_status import PUBLICATION_KINDS
    from clinfo.pubmed import vocabulary

    named = [kind for _, kind in vocabulary.DESIGN_PUBLICATION_TYPES + vocabulary.DESIGN_MESH]
    assert set(named) <= set(DESIGNS) and len(named) > 20
    assert set(vocabulary.NOTICE_PUBLICATION_TYPES.values()) <= set(PUBLICATION_KINDS)
    assert set(vocabulary.NOTICE_OF) <= set(PUBLICATION_KINDS)
    assert set(vocabulary.FLAGGED.values()) <= set(PUBLICATION_KINDS)
