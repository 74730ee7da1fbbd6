"""Exports of an answer: BibTeX and RIS from article metadata, Markdown that stays inert, JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from clinfo import Answer, ClinfoAI
from clinfo.app import export
from clinfo.app.export import bibtex_escape, to_bibtex, to_json, to_markdown, to_ris
from clinfo.models import Reference
from tests.support.scripted import MemorySource, ScriptedLLM, make_article, screen_reply

QUESTION = "Does magnesium improve sleep in older adults?"
Q1 = "magnesium[tiab] AND sleep[tiab]"
EVIL = "<script>alert(1)</script> *Bold* [x](javascript:alert(1)) magnesium"


def pipeline_answer() -> Answer:
    """A real Answer from the pipeline (scripted LLM, in-memory records)."""
    articles = [
        make_article(
            "101",
            "Magnesium & sleep: 50% better? {A} trial_1 #1 $5 ~x ^y \\z",
            "Magnesium helped older adults sleep.",
            authors=["van der Berg JA", "Abbasi B", "Müller K", "WHO Sleep Study Group"],
            doi="10.1000/mg_(2012).1",
            year=2012,
            journal="J Sleep Res",
            mesh=["Magnesium", "Sleep"],
        ),
        make_article("102", "Statins in middle age", "Cholesterol."),
        make_article("103", EVIL, "Magnesium intake\nand sleep duration.", authors=["Smith A"], year=2019, doi=None),
    ]
    llm = ScriptedLLM(
        {
            "plan": json.dumps({"queries": [Q1]}),
            "screen": screen_reply(lambda title: "magnesium" in title.lower()),
            "synthesize": "Magnesium helped [1]. A cohort agrees [2]. Both [1, 2].",
            "tldr": "Limited evidence.",
        }
    )
    source = MemorySource({Q1: ["101", "102", "103"]}, articles)
    return ClinfoAI(llm=llm, source=source, use_cache=False).forward(QUESTION)


@pytest.fixture(scope="module")
def answer() -> Answer:
    a = pipeline_answer()
    assert [r.pmid for r in a.references] == ["101", "103"]
    return a


# ---------------------------------------------------------------- BibTeX
def entries(text: str) -> list[str]:
    return [e for e in re.split(r"\n(?=@)", text.strip()) if e]


def unescaped_brace_depths(entry: str) -> list[int]:
    depth, depths, i = 0, [], 0
    while i < len(entry):
        ch = entry[i]
        if ch == "\\":
            i += 2  # an escaped character is text
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        depths.append(depth)
        i += 1
    return depths


def fields(entry: str) -> dict[str, str]:
    return dict(re.findall(r"^  (\w+) = \{(.*)\},?$", entry, flags=re.M))


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("A & B", r"A \& B"),
        ("50%", r"50\%"),
        ("$5", r"\$5"),
        ("#1", r"\#1"),
        ("a_b", r"a\_b"),
        ("{x}", r"\{x\}"),
        ("x^2", r"x\^{}2"),
        ("~", r"\~{}"),
        ("back\\slash", r"back\textbackslash{}slash"),
        ("two\n  lines", "two lines"),
        ("Müller", "Müller"),
    ],
)
def test_bibtex_escape(raw: str, escaped: str) -> None:
    assert bibtex_escape(raw) == escaped


def test_bibtex_entries_from_article_metadata(answer: Answer) -> None:
    text = to_bibtex(answer)
    first, second = entries(text)
    assert first.startswith("@article{vanderberg2012pmid101,\n")
    assert second.startswith("@article{smith2019pmid103,\n")
    f = fields(first)
    assert f["author"] == r"van der Berg, J. A. and Abbasi, B. and Müller, K. and {WHO Sleep Study Group}"
    assert f["title"] == r"Magnesium \& sleep: 50\% better? \{A\} trial\_1 \#1 \$5 \~{}x \^{}y \textbackslash{}z"
    assert f["journal"] == "J Sleep Res"
    assert f["year"] == "2012"
    assert f["doi"] == r"10.1000/mg\_(2012).1"
    assert f["pmid"] == "101"
    assert f["url"] == "https://pubmed.ncbi.nlm.nih.gov/101/"
    assert "doi" not in fields(second)
    for entry in (first, second):
        depths = unescaped_brace_depths(entry)
        assert min(depths) >= 0 and depths[-1] == 0  # braces balance once escapes are skipped


def test_bibtex_falls_back_to_reference_when_record_missing() -> None:
    a = Answer(
        question="q", references=[Reference(n=1, pmid="555", citation="X. PMID: 555", url="u", title="Lonely title")]
    )
    (entry,) = entries(to_bibtex(a))
    assert entry.startswith("@article{pmid555,")
    assert fields(entry) == {"title": "Lonely title", "pmid": "555", "url": "https://pubmed.ncbi.nlm.nih.gov/555/"}


# ---------------------------------------------------------------- RIS
RIS_LINE = re.compile(r"^[A-Z][A-Z0-9]  - .*$")


def test_ris_records_have_valid_tags_and_metadata(answer: Answer) -> None:
    text = to_ris(answer)
    assert text.endswith("ER  - \n")
    records = [r.splitlines() for r in text.rstrip("\n").split("\n\n")]
    assert len(records) == 2
    for lines in records:
        assert all(RIS_LINE.match(line) for line in lines), lines
        assert lines[0] == "TY  - JOUR" and lines[-1] == "ER  - "
    first = records[0]
    assert [line for line in first if line.startswith("AU")] == [
        "AU  - van der Berg, J.A.",
        "AU  - Abbasi, B.",
        "AU  - Müller, K.",
        "AU  - WHO Sleep Study Group",
    ]
    assert "PY  - 2012" in first and "AN  - 101" in first and "DO  - 10.1000/mg_(2012).1" in first
    assert "UR  - https://pubmed.ncbi.nlm.nih.gov/101/" in first
    assert "KW  - Magnesium" in first and "JO  - J Sleep Res" in first
    second = records[1]
    assert f"TI  - {EVIL}" in second  # RIS is plain text: kept verbatim
    assert "AB  - Magnesium intake and sleep duration." in second  # one line, never continued
    assert not any(line.startswith("DO") for line in second)


def test_no_references_exports_nothing() -> None:
    a = Answer(question="q", no_evidence=True, synthesis="No relevant evidence found.")
    assert to_bibtex(a) == "" and to_ris(a) == ""


# ---------------------------------------------------------------- Markdown and JSON
def test_markdown_is_cited_escaped_and_carries_the_disclaimer(answer: Answer) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    text = to_markdown(answer)
    assert text.startswith(f"# {QUESTION}\n")
    assert "**TL;DR:** Limited evidence." in text
    assert "Magnesium helped \\[[1](https://pubmed.ncbi.nlm.nih.gov/101/ " in text
    assert "\\[[1](https://pubmed.ncbi.nlm.nih.gov/101/" in text and "[2](https://pubmed.ncbi.nlm.nih.gov/103/" in text
    assert "does not diagnose" in text
    assert f"`{Q1}` (3 hits)" in text

    md = markdown_it.MarkdownIt("commonmark", {"html": True})
    md.validateLink = lambda url: True
    html = md.render(text)
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "<em>Bold</em>" not in html
    assert all(
        h.startswith(("https://pubmed.ncbi.nlm.nih.gov/", "https://doi.org/"))
        for h in re.findall(r'href="([^"]*)"', html)
    )


def test_one_layout_for_the_terminal_and_the_export(answer: Answer) -> None:
    from clinfo.render import answer_markdown

    noted = answer.model_copy(deep=True)
    noted.queries[0].note = "broadened after *zero* hits"
    plain, escaped = answer_markdown(noted), to_markdown(noted)
    heads = [[line for line in text.splitlines() if line.startswith("#")] for text in (plain, escaped)]
    assert heads[0] == [f"## {QUESTION}", "### References", "### Searches"]
    assert heads[1] == [f"# {QUESTION}", "## References", "## Searches"]
    assert "— broadened after *zero* hits" in plain and "— broadened after \\*zero\\* hits" in escaped
    # the terminal shows text as written; the export escapes it (inside link titles it is inert already)
    assert "\\<script" not in plain and EVIL in plain and "\\<script\\>" in escaped
    # the CLI streams the synthesis, then adds the rest from the same builder
    tail = answer_markdown(noted, sections=("trace", "tldr", "references"))
    assert tail.startswith("**TL;DR:**") and "### References" in tail and tail.splitlines()[-1].startswith("_")
    assert QUESTION not in tail and noted.synthesis not in tail and "Searches" not in tail
    with pytest.raises(ValueError, match="unknown answer section"):
        answer_markdown(noted, sections=("summary",))


def test_json_round_trips(answer: Answer) -> None:
    assert Answer.from_json(to_json(answer)) == answer


def test_file_names() -> None:
    a = Answer(question="Does Müller's magnesium (Mg²⁺) help?  Sleep/older adults")
    assert export.file_name(a, "bibtex") == "clinfo-does-muller-s-magnesium-mg2-help-sleep-older-adu.bib"
    assert export.file_name(Answer(question="???"), "ris") == "clinfo-answer.ris"


# ---------------------------------------------------------------- article cards (clinfo.app.view)
def summary_of(article: Any = None, **fields: Any) -> Any:
    from clinfo.models import ArticleSummary

    return ArticleSummary(article=article or make_article("7", "Zinc and colds"), relevant=True, **fields)


def test_card_of_untitled_record_shows_its_opening_words_marked() -> None:
    from clinfo.app.view import card_md, irrelevant_md

    words = "Zinc lozenges given within a day of symptom onset shortened colds by about two days in adults."
    untitled = make_article("8", "", words)
    card = card_md(summary_of(untitled, score=7, reason="zinc and colds"), n=2)
    first = card.split("\n")[0]
    assert first.startswith("**\\[2\\] Zinc lozenges given within a day of symptom onset shortened colds by…")
    assert "_(untitled; opening words of the abstract)_" in first and "no title" not in card
    assert "Zinc lozenges" in irrelevant_md(summary_of(untitled))
    # the reference names it the same way, marked, instead of "[Untitled abstract]"
    assert untitled.citation.startswith("[Untitled; abstract begins: Zinc lozenges given within a day of symptom onset")
    assert make_article("9", "", "").citation.startswith("[Untitled]")


def test_card_says_how_relevance_was_decided() -> None:
    from clinfo.app.view import card_md, irrelevant_md

    retrieval = card_md(summary_of(relevance_source="retrieval", fields_requested=[]))
    assert "**Relevance:** from retrieval scores" in retrieval and "/10" not in retrieval
    with_reason = card_md(summary_of(relevance_source="retrieval", reason="covers zinc and colds"))
    assert "**Relevance:** from retrieval scores. covers zinc and colds" in with_reason
    # the model's verdict: its score when it gave one, never "score 0/10"
    assert "**Relevance:** judged by the model, score 8/10. fits" in card_md(summary_of(score=8, reason="fits"))
    unscored = card_md(summary_of(score=0, reason="Not reported"))
    assert "**Relevance:** judged by the model\n" in unscored + "\n" and "0/10" not in unscored
    assert "Not reported" not in unscored  # a placeholder is not a reason
    assert "below the retrieval-score threshold" in irrelevant_md(summary_of(relevance_source="retrieval"))
    assert "no reason given" in irrelevant_md(summary_of())


def test_card_shows_only_the_fields_that_were_asked_for() -> None:
    from clinfo.app.view import card_md

    none_asked = card_md(summary_of(score=6, fields_requested=[]))
    assert "- **" not in none_asked and "not reported" not in none_asked
    some = card_md(summary_of(design="RCT", fields_requested=["design", "sample_size", "summary"]))
    assert "- **Design (as summarised):** RCT" in some and "- **Sample size:** _not reported_" in some
    assert "Population" not in some and "Risk of bias" not in some
    # answers saved before fields_requested existed: a run that asked filled at least one field
    legacy_asked = card_md(summary_of(design="cohort"))
    assert "- **Population:** _not reported_" in legacy_asked
    legacy_not_asked = card_md(summary_of(score=5))
    assert "- **" not in legacy_not_asked


# ---------------------------------------------------------------- design and level (decided by code)
def designed_answer() -> Answer:
    """A real pipeline answer over a trial NLM typed and a cohort study it has not indexed yet."""
    articles = [
        make_article(
            "201",
            "Magnesium for sleep in older adults",
            "Magnesium improved sleep.",
            publication_types=["Journal Article", "Randomized Controlled Trial"],
            mesh=["Humans", "Magnesium", "Sleep"],
        ),
        make_article("202", "Magnesium intake and sleep: a prospective cohort study", "Magnesium and sleep."),
    ]
    llm = ScriptedLLM(
        {
            "plan": json.dumps({"queries": [Q1]}),
            "screen": screen_reply(lambda title: True),
            "synthesize": "Magnesium helped [1]. A cohort agrees [2].",
            "tldr": "Limited evidence.",
        }
    )
    return ClinfoAI(llm=llm, source=MemorySource({Q1: ["201", "202"]}, articles), use_cache=False).forward(QUESTION)


def test_references_and_exports_carry_design_and_level() -> None:
    answer = designed_answer()
    trial, cohort = answer.references
    assert (trial.design.kind, trial.design.level, trial.design.basis) == ("randomised trial", 2, "publication type")
    assert (cohort.design.kind, cohort.design.level, cohort.design.basis) == ("cohort", 3, "title/abstract")

    markdown = to_markdown(answer)
    assert "PMID 201](https://pubmed.ncbi.nlm.nih.gov/201/) · _randomised trial, level 2_" in markdown
    assert "PMID 202](https://pubmed.ncbi.nlm.nih.gov/202/) · _cohort, level 3_" in markdown
    assert "<https://pubmed.ncbi.nlm.nih.gov/201/> (randomised trial, level 2)" in answer.to_markdown()

    first, second = entries(to_bibtex(answer))
    assert fields(first)["note"] == "Design: randomised trial, level 2 (from publication type; clinfo)"
    assert fields(second)["note"] == "Design: cohort, level 3 (from title/abstract; clinfo)"
    ris = [r.splitlines() for r in to_ris(answer).rstrip("\n").split("\n\n")]
    assert "N1  - Design: randomised trial, level 2 (from publication type; clinfo)" in ris[0]
    assert "N1  - Design: cohort, level 3 (from title/abstract; clinfo)" in ris[1]

    data = json.loads(to_json(answer))
    assert data["references"][0]["design"]["level"] == 2
    assert data["article_summaries"][1]["article"]["design"]["kind"] == "cohort"
    assert Answer.from_json(to_json(answer)).references[1].design == cohort.design


def test_card_shows_the_design_badge_and_the_llm_design_apart() -> None:
    from clinfo.app.view import card_md

    trial = make_article("301", "Zinc for colds: a randomised controlled trial", "Zinc shortened colds.")
    card = card_md(summary_of(trial, design="RCT", fields_requested=["design"]))
    assert "**Design:** randomised trial · level 2 (from title/abstract)" in card
    assert "- **Design (as summarised):** RCT" in card
    typed = make_article("302", "Zinc", "x", publication_types=["Practice Guideline"], mesh=["Humans"])
    assert "**Design:** guideline · not graded (from NLM's publication types)" in card_md(summary_of(typed))
    assert "**Design:** other · not graded (no design stated)" in card_md(summary_of())
