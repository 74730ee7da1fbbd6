"""Offline evidence selection: question terms, coverage-based relevance, quotes, and the small
preset end to end over the real demo corpus (no LLM call at all)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clinfo import ClinfoAI
from clinfo.models import AbstractSection, Article
from clinfo.pipeline.quotes import best_quote, split_sentences
from clinfo.pipeline.relevance import THRESHOLDS, coverage, judge, similarities
from clinfo.terms import background, count_background, demo_texts, question_terms

METFORMIN = "Is metformin use associated with lower cancer incidence in people with type 2 diabetes?"


def article(pmid: str, *sections: tuple[str, str], title: str = "", mesh: list[str] | None = None) -> Article:
    return Article(
        pmid=pmid,
        title=title,
        abstract_sections=[AbstractSection(label=label, text=text) for label, text in sections],
        mesh=mesh or [],
    )


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
    cancer = article(
        "2", ("RESULTS", "Cancer incidence rose in people with type 2 diabetes; metformin users had fewer cancers.")
    )
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
    verdicts = judge(METFORMIN, [full, most, half], threshold=0.75, margin=0.15)
    assert [v.relevant for v in verdicts] == [True, False, False]
    assert verdicts[1].outmatched and "match the question clearly better" in verdicts[1].reason
    assert not verdicts[2].outmatched and "missing: cancer, incid" in verdicts[2].reason
    # alone, the partial match is judged on the threshold only
    assert [v.relevant for v in judge(METFORMIN, [most, half], threshold=0.75)] == [True, False]
    # without a threshold, the calibrated one for coverage alone applies
    assert [v.relevant for v in judge(METFORMIN, [most, half])] == [
        v.score >= THRESHOLDS["coverage"] for v in judge(METFORMIN, [most, half])
    ]


def test_similarity_joins_coverage_in_the_score_and_the_reason() -> None:
    a = article("1", ("", "Metformin in type 2 diabetes."))
    alone, with_sim = judge(METFORMIN, [a])[0], judge(METFORMIN, [a], similarity=[0.2])[0]
    assert alone.similarity is None and alone.score == alone.coverage
    assert with_sim.score == round((with_sim.coverage + 0.2) / 2, 4) and "similarity 0.20" in with_sim.reason
    # a paraphrase that shares few words can still pass on similarity; an unrelated record cannot
    assert judge(METFORMIN, [a], similarity=[0.95], threshold=0.65)[0].relevant
    assert not judge(METFORMIN, [a], similarity=[-0.3], threshold=0.65)[0].relevant


def test_similarities_come_from_the_real_encoder_and_rank_the_on_topic_record_first() -> None:
    on_topic = article(
        "1",
        (
            "RESULTS",
            "Among people with type 2 diabetes, metformin users developed fewer malignancies than sulfonylurea users.",
        ),
    )
    off_topic = article(
        "2", ("RESULTS", "Vaccines stored in clinic refrigerators were exposed to freezing temperatures.")
    )
    sims = similarities(METFORMIN, [on_topic, off_topic])
    assert sims is not None and len(sims) == 2
    assert sims[0] > 0.5 > sims[1]


def test_a_question_without_content_words_finds_nothing_relevant() -> None:
    assert judge("Is it?", [article("1", ("", "Anything at all."))])[0].relevant is False


# ------------------------------------------------------------------ quotes


def test_sentences_split_at_stops_but_not_at_abbreviations_or_decimals() -> None:
    text = "Mean age was 61.5 years (vs. 58 in controls), e.g. older. Risk fell by 20%. Smith et al. disagree? Yes."
    assert split_sentences(text) == [
        "Mean age was 61.5 years (vs. 58 in controls), e.g. older.",
        "Risk fell by 20%.",
        "Smith et al. disagree?",
        "Yes.",
    ]


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
            (
                "Obesity is common worldwide. We followed 4,000 adults for ten years. "
                "Metformin users had a lower incidence of cancer than users of sulfonylureas in type 2 diabetes. "
                "Funding came from a national research council and the authors declare no conflicts."
            ),
        ),
    )
    quote = best_quote(METFORMIN, a, max_sentences=1)
    assert quote.text.startswith("Metformin users had a lower incidence of cancer")


def test_non_adjacent_quoted_sentences_are_joined_with_an_ellipsis() -> None:
    a = article(
        "1",
        (
            "RESULTS",
            "Metformin users had fewer cancers in type 2 diabetes. Weight fell by 2 kg in both arms of the study.",
        ),
        ("CONCLUSIONS", "Metformin use is associated with a lower cancer incidence in type 2 diabetes."),
    )
    quote = best_quote(METFORMIN, a)
    assert (
        quote.text == "Metformin users had fewer cancers in type 2 diabetes. …"
        " Metformin use is associated with a lower cancer incidence in type 2 diabetes."
    )


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
    assert "none matched the question closely enough (term coverage and similarity)" in answer.synthesis
    assert answer.trace.llm_calls == 0 and answer.trace.articles_screened > 0
    # what was screened says why each record fell short
    assert all(s.relevance_source == "retrieval" and "similarity" in s.reason for s in answer.irrelevant_articles)
    # no demo record holds both metformin and cancer: each screened one is missing one of them, and says which
    missing = [s.reason.split("missing:")[1] for s in answer.irrelevant_articles if "missing:" in s.reason]
    assert len(missing) == len(answer.irrelevant_articles)
    assert all("metformin" in m or "cancer" in m for m in missing)


def test_a_pubmedqa_question_cites_its_own_abstract_and_quotes_it(offline: ClinfoAI, shared_dir: Path) -> None:
    dev = json.loads((shared_dir / "data" / "pubmedqa" / "pqal_dev.json").read_text())
    pmid = "21881325"  # preoperative statins and atrial fibrillation after CABG; in the demo corpus
    answer = offline.forward(dev[pmid]["QUESTION"])
    assert not answer.no_evidence and answer.trace.llm_calls == 0
    assert answer.references[0].pmid == pmid and answer.references[0].cited
    gold = answer.article_summaries[0]
    assert gold.relevance_source == "retrieval" and gold.fields_requested == []
    line = answer.synthesis.splitlines()[2]
    quoted = re.fullmatch(r"- (.+?)(?: \(([A-Za-z, ]+)\))? \[1\]", line)
    assert quoted, line
    abstract = " ".join(" ".join(s.text for s in gold.article.abstract_sections).split())
    assert all(part in abstract for part in quoted.group(1).split(" … "))  # verbatim, nothing generated
    assert "Conclusions" in (quoted.group(2) or "")  # the conclusion answers this question
    assert "match the question closely enough" in answer.tldr


def test_small_preset_answers_a_question_without_hits_with_no_model_call(tmp_path: Path) -> None:
    # BM25 alone: dense retrieval returns neighbours for any text, so only lexical search has zero hits
    bm25 = ClinfoAI(llm="local", source="demo", search_mode="bm25", cache_dir=tmp_path, use_cache=False)
    answer = bm25.forward("Zyxqwv flurbonic glimpases?")  # no word of it is in the corpus
    assert answer.no_evidence and answer.trace.zero_hit_queries == 1 and answer.trace.llm_calls == 0


def test_without_a_usable_similarity_model_relevance_rests_on_coverage_and_says_so(
    offline: ClinfoAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clinfo.corpus.encoders as encoders
    from clinfo.errors import ConfigError

    def broken(*args: object, **kwargs: object) -> None:
        raise ConfigError("model file damaged")

    monkeypatch.setattr(encoders, "get_encoder", broken)
    assert similarities(METFORMIN, [article("1", ("", "Metformin and cancer."))]) is None
    answer = offline.forward(METFORMIN)
    assert answer.no_evidence and "(term coverage)" in answer.synthesis
    assert any("term coverage only" in w for w in answer.trace.warnings)
    assert all("similarity" not in s.reason for s in answer.irrelevant_articles)
