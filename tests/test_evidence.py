"""Offline evidence selection: question terms, coverage-based relevance, quotes, and the small
preset end to end over the real demo corpus (no LLM call at all)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinfo import ClinfoAI
from clinfo.models import AbstractSection, Article
from clinfo.quotes import best_quote, split_sentences
from clinfo.relevance import coverage, judge
from clinfo.terms import background, count_background, demo_texts, question_terms

METFORMIN = "Is metformin use associated with lower cancer incidence in people with type 2 diabetes?"


def article(pmid: str, *sections: tuple[str, str], title: str = "", mesh: list[str] | None = None) -> Article:
    return Article(pmid=pmid, title=title, abstract_sections=[AbstractSection(label=l, text=t) for l, t in sections], mesh=mesh or [])


# ------------------------------------------------------------------ terms


def test_question_terms_are_stems_of_content_words_only() -> None:
    assert question_terms(METFORMIN) == ["metformin", "cancer", "incid", "type", "diabet"]
    # plural/adjective forms meet; how the question is asked does not count
    assert question_terms("Are statins effective in diabetic patients?") == question_terms("statin diabetes patient")


def test_shipped_background_matches_a_fresh_count_of_the_demo_corpus() -> None:
    # guards against a stemmer upgrade or a new demo corpus silently skewing the calibrated threshold
    fresh = count_background(demo_texts())
    shipped = background()
    assert shipped.docs == fresh.docs == 3000
    assert shipped.freqs == fresh.freqs


def test_rare_terms_weigh_more_than_common_ones() -> None:
    bg = background()
    assert bg.idf("metformin") > bg.idf("diabet") > bg.idf("patient") > 0


# ------------------------------------------------------------------ relevance


def test_coverage_is_weighted_by_specificity_and_lists_what_is_missing() -> None:
    insulin = article("1", ("CONCLUSIONS", "Bedtime insulin added to metformin helps patients with type 2 diabetes."))
    cancer = article("2", ("RESULTS", "Cancer incidence rose in people with type 2 diabetes; metformin users had fewer cancers."))
    share, matched, missing = coverage(METFORMIN, insulin)
    assert missing == ("cancer", "incid") and set(matched) == {"metformin", "type", "diabet"}
    assert coverage(METFORMIN, cancer)[0] == 1.0 and 0 < share < 1.0


def test_mesh_headings_count_as_record_text() -> None:
    plain = article("1", ("", "Metformin and malignancy in a diabetes cohort."))
    tagged = plain.model_copy(update={"mesh": ["Neoplasms", "Incidence", "Cancer incidence"]})
    assert coverage(METFORMIN, tagged)[0] > coverage(METFORMIN, plain)[0]


def test_judge_needs_the_threshold_and_keeps_clearly_outmatched_records_out() -> None:
    full = article("1", ("", "Metformin use and cancer incidence in type 2 diabetes: a cohort."))
    most = article("2", ("", "Metformin in type 2 diabetes and cancer."))  # lacks "incidence"
    half = article("3", ("", "Metformin in type 2 diabetes."))
    verdicts = judge(METFORMIN, [full, most, half], min_coverage=0.75, margin=0.15)
    assert [v.relevant for v in verdicts] == [True, False, False]
    assert verdicts[1].outmatched and "cover the question clearly better" in verdicts[1].reason
    assert not verdicts[2].outmatched and "missing: cancer, incid" in verdicts[2].reason
    # alone, the partial match is judged on the threshold only
    assert [v.relevant for v in judge(METFORMIN, [most, half], min_coverage=0.75)] == [True, False]


def test_a_question_without_content_words_finds_nothing_relevant() -> None:
    assert judge("Is it?", [article("1", ("", "Anything at all."))])[0].relevant is False


# ------------------------------------------------------------------ quotes


def test_sentences_split_at_stops_but_not_at_abbreviations_or_decimals() -> None:
    text = "Mean age was 61.5 years (vs. 58 in controls), e.g. older. Risk fell by 20%. Smith et al. disagree? Yes."
    assert split_sentences(text) == ["Mean age was 61.5 years (vs. 58 in controls), e.g. older.", "Risk fell by 20%.", "Smith et al. disagree?", "Yes."]


def test_quote_prefers_the_answering_sentence_to_the_objective_that_restates_the_question() -> None:
    a = article(
        "1",
        ("OBJECTIVE", "To assess whether preoperative statins reduce atrial fibrillation after bypass grafting."),
        ("RESULTS", "Atrial fibrillation occurred in 12% of statin users and 24% of non-users after grafting."),
        ("CONCLUSIONS", "Preoperative statins reduce atrial fibrillation after coronary bypass grafting."),
    )
    quote = best_quote("Do preoperative statins reduce atrial fibrillation after coronary artery bypass grafting?", a)
    # the objective matches the question best word for word, yet the conclusion answers it; the
    # results sentence matches too little to be worth a second quote
    assert [s.label for s in quote.sentences] == ["CONCLUSIONS"]
    assert quote.text == "Preoperative statins reduce atrial fibrillation after coronary bypass grafting."


def test_quote_of_an_unlabelled_abstract_is_the_best_match_not_always_the_last_sentence() -> None:
    a = article(
        "1",
        (
            "",
            "Obesity is common worldwide. We followed 4,000 adults for ten years. "
            "Metformin users had a lower incidence of cancer than users of sulfonylureas in type 2 diabetes. "
            "Funding came from a national research council and the authors declare no conflicts.",
        ),
    )
    quote = best_quote(METFORMIN, a, max_sentences=1)
    assert quote.text.startswith("Metformin users had a lower incidence of cancer")


def test_non_adjacent_quoted_sentences_are_joined_with_an_ellipsis() -> None:
    a = article(
        "1",
        ("RESULTS", "Metformin users had fewer cancers in type 2 diabetes. Weight fell by 2 kg in both arms of the study."),
        ("CONCLUSIONS", "Metformin use is associated with a lower cancer incidence in type 2 diabetes."),
    )
    quote = best_quote(METFORMIN, a)
    assert quote.text == "Metformin users had fewer cancers in type 2 diabetes. … Metformin use is associated with a lower cancer incidence in type 2 diabetes."


# ------------------------------------------------------------------ the small preset over the real demo corpus


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> ClinfoAI:
    cache = tmp_path_factory.mktemp("cache")
    return ClinfoAI(llm="local", source="demo", cache_dir=cache, use_cache=False)


def test_small_preset_decides_relevance_from_coverage_without_the_model(offline: ClinfoAI) -> None:
    s = offline.settings
    assert (s.screening, s.planner, s.synthesis_mode) == ("retrieval", "keywords", "extractive")


def test_a_question_the_demo_corpus_cannot_answer_gets_the_honest_no_evidence_answer(offline: ClinfoAI) -> None:
    answer = offline.forward(METFORMIN)
    assert answer.no_evidence and answer.references == []
    assert answer.synthesis.startswith("No relevant evidence found.")
    assert "of the question's weighted terms" in answer.synthesis
    assert answer.trace.llm_calls == 0 and answer.trace.articles_screened > 0
    # what was screened says why each record fell short
    assert all(s.relevance_source == "retrieval" and "missing:" in s.reason for s in answer.irrelevant_articles)


def test_a_pubmedqa_question_cites_its_own_abstract_and_quotes_it(offline: ClinfoAI, shared_dir: Path) -> None:
    dev = json.loads((shared_dir / "data" / "pubmedqa" / "pqal_dev.json").read_text())
    pmid = "21881325"  # preoperative statins and atrial fibrillation after CABG; in the demo corpus
    answer = offline.forward(dev[pmid]["QUESTION"])
    assert not answer.no_evidence and answer.trace.llm_calls == 0
    assert answer.references[0].pmid == pmid and answer.references[0].cited
    gold = answer.article_summaries[0]
    assert gold.relevance_source == "retrieval" and gold.fields_requested == []
    quoted = answer.synthesis.splitlines()[2]
    sentence = quoted.split(" … ")[-1].split(" (Conclusions)")[0]
    assert sentence in " ".join(" ".join(s.text for s in gold.article.abstract_sections).split())
    assert quoted.endswith("[1]")
    assert "contain enough of the question's terms" in answer.tldr
