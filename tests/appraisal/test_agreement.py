"""Agreement on yes/no questions: the question's form, each article's stance, the tally by design,
and where it shows (prompts, Markdown, eval). Scripted LLM and in-memory source (control flow and
parsing); the yes/no detector runs on the real PubMedQA and PubMedRS-200 questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinfo import ClinfoAI
from clinfo.appraisal.agreement import parse_stance, tally
from clinfo.appraisal.yes_no import is_yes_no_question
from clinfo.eval.datasets import load_pubmedqa, load_pubmedrs
from clinfo.eval.metrics import evidence_metrics
from clinfo.eval.report import markdown_table
from clinfo.llm.base import LLMRequest
from clinfo.models import ArticleSummary
from tests.support.scripted import MemorySource, ScriptedLLM, make_article

YES_NO = "Does magnesium supplementation improve sleep quality in older adults?"
OPEN = "What is the effect of magnesium supplementation on sleep quality in older adults?"
Q = "magnesium[tiab] AND sleep[tiab]"


# ---------------------------------------------------------------- the question's form
def test_every_pubmedqa_question_is_yes_no(shared_dir: Path) -> None:
    # PubMedQA's questions are answered yes/no/maybe by construction, whatever their form
    # ("Hearing loss: an unknown complication of pre-eclampsia?", "... in the ewe: potential involvement of AMPK?")
    for name in ("pqal_dev.json", "pqal_test_unlabeled.json"):
        questions = [item.question for item in load_pubmedqa(shared_dir / "data" / "pubmedqa" / name)]
        missed = [q for q in questions if not is_yes_no_question(q)]
        assert len(questions) == 500 and missed == [], missed


def test_pubmedrs_wh_questions_are_not_yes_no_and_auxiliary_ones_are(shared_dir: Path) -> None:
    items = load_pubmedrs(shared_dir / "data" / "pubmedrs200" / "PubMedRS-200.csv")
    wh = ("what", "how", "which", "when", "where", "why", "who")  # not the typo "Wehat": read as elliptical
    opening = {item.question: item.question.split()[0].lower() for item in items}
    asked_wh = [q for q, w in opening.items() if w in wh]
    asked_aux = [q for q, w in opening.items() if w in ("is", "are", "does", "do", "can", "could", "should")]
    assert len(asked_wh) >= 40 and len(asked_aux) >= 140
    assert [q for q in asked_wh if is_yes_no_question(q)] == []
    assert [q for q in asked_aux if not is_yes_no_question(q)] == []


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        # real PubMedRS-200 and PubMedQA questions whose form is not their first word
        ("Repair of rotator cuff tears in patients aged 75 years and older: Does it make sense?", True),
        ("Nutritional assessment of gluten-free diet. Is gluten-free diet deficient in some nutrient?", True),
        ("Bladder Cancer in HIV-infected Adults common?", True),
        ("Hearing loss: an unknown complication of pre-eclampsia?", True),
        ("Treating asthma with omega-3 fatty acids: where is the evidence?", False),
        ("Nifedipine or amlodipine for treating hypertension during pregnancy?", False),
        (
            "Management of spontaneous portosystemic shunts at the time of liver transplantation:"
            " treatment or observation?",
            False,
        ),
        ("Paediatric flexible flat foot: how are we measuring it and are we getting it right?", False),
        ("In adults with asthma, do inhaled corticosteroids reduce exacerbations?", True),
        ("does metformin reduce cancer risk", True),  # typed without its question mark
        ("metformin cancer risk", False),  # a search phrase
        ("Effect of metformin on cancer incidence", False),
        ("", False),
    ],
)
def test_question_forms(question: str, expected: bool) -> None:
    assert is_yes_no_question(question) is expected


# ---------------------------------------------------------------- reading the stance
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("supporting", "supporting"),
        ("Supports", "supporting"),
        ("SUPPORTING (the trial found fewer events)", "supporting"),
        ("yes", "supporting"),
        ("contradicting", "contradicting"),
        ("Contradicts.", "contradicting"),
        ("against", "contradicting"),
        ("mixed findings", "mixed"),
        ("Partly", "mixed"),
        ("not_answering", "not answering"),
        ("Not answering", "not answering"),
        ("does not answer", "not answering"),
        ("N/A", "not answering"),
        ("inconclusive", "not answering"),
        ("not judged", None),  # code's verdict, never taken from the model
        ("banana", None),
        ("", None),
        (None, None),
        (3, None),
        (["supporting"], None),
    ],
)
def test_stance_is_read_tolerantly(value: object, expected: str | None) -> None:
    assert parse_stance(value) == expected


# ---------------------------------------------------------------- the tally
def corpus() -> list:
    return [
        make_article(
            "201",
            "Magnesium and sleep: a trial",
            "Magnesium improved sleep quality in older adults.",
            publication_types=["Journal Article", "Randomized Controlled Trial"],
        ),
        make_article(
            "202", "Magnesium sleep cohort", "Magnesium intake was not associated with sleep.", mesh=["Cohort Studies"]
        ),
        make_article(
            "203",
            "Magnesium for sleep: pooled studies",
            "Pooled trials showed better sleep with magnesium.",
            publication_types=["Meta-Analysis"],
        ),
        make_article(
            "204", "Magnesium toxicity and sleep in one patient", "A case.", publication_types=["Case Reports"]
        ),
        make_article("205", "Statins and cholesterol", "Unrelated."),
    ]


# title word -> (relevance score, stance as a model might write it)
VERDICTS = {
    "trial": (9, "Supports"),
    "cohort": (8, "contradicting"),
    "pooled": (7, "SUPPORTING"),
    "patient": (6, "N/A"),
}


def screen(request: LLMRequest) -> str:
    prompt = request.messages[-1]["content"]
    title = prompt.split("Article: ", 1)[1].split("\n", 1)[0]
    found = [v for word, v in VERDICTS.items() if word in title.lower()]
    score, stance = found[0] if found else (1, "not answering")
    reply = {"relevant": bool(found), "score": score, "reason": "r", "summary": f"Summary of {title}."}
    reply |= {"design": "d", "sample_size": "n", "population": "p", "risk_of_bias": "b", "stance": stance}
    return json.dumps(reply)


def ask(question: str, **replies: object) -> tuple[object, ScriptedLLM]:
    llm = ScriptedLLM(
        {
            "plan": json.dumps({"queries": [Q]}),
            "screen": screen,
            "synthesize": "Magnesium may help [1].",
            "tldr": "Conflicting evidence.",
            **replies,
        }
    )
    source = MemorySource({Q: ["201", "202", "203", "204", "205"]}, corpus())
    answer = ClinfoAI(llm=llm, source=source, use_cache=False, num_queries=1).forward(question)
    return answer, llm


def prompt_of(llm: ScriptedLLM, step: str) -> str:
    (request,) = [c for c in llm.calls if c.step == step]
    return request.messages[-1]["content"]


def test_tally_by_design_and_level() -> None:
    summaries = [
        ArticleSummary(article=a, relevant=True, stance=stance)
        for a, stance in zip(corpus(), ["supporting", "contradicting", "supporting", "not answering", None])
    ]
    agreement = tally(summaries)
    assert agreement.counts == {
        "supporting": 2,
        "contradicting": 1,
        "mixed": 0,
        "not answering": 1,
        "not judged": 1,
    }
    # by stance, strongest design first within each
    assert [(c.stance, c.design, c.level, c.pmids) for c in agreement.cells] == [
        ("supporting", "meta-analysis", 1, ["203"]),
        ("supporting", "randomised trial", 2, ["201"]),
        ("contradicting", "cohort", 3, ["202"]),
        ("not answering", "case report/series", 4, ["204"]),
        ("not judged", "other", None, ["205"]),
    ]
    assert (agreement.strongest_design, agreement.strongest_level) == ("meta-analysis", 1)
    assert agreement.disagreement
    assert agreement.summary == (
        "2 support (1 meta-analysis, 1 randomised trial), 1 contradicts (1 cohort study),"
        " 1 does not answer it either way (1 case report/series), 1 without a stance from the model (1 other design)"
    )
    # the strongest design is taken among those that support or contradict only
    one_side = tally([summaries[1], summaries[3]])
    assert (one_side.strongest_design, one_side.disagreement) == ("cohort", False)
    assert (
        tally([summaries[3]]).summary
        == "none supports or contradicts it: 1 does not answer it either way (1 case report/series)"
    )
    assert tally([summaries[3]]).strongest_design is None
    unjudged = tally(summaries[:2], judged=False)
    assert unjudged.counts["not judged"] == 2 and unjudged.strongest_design is None
    assert unjudged.summary.startswith("not judged: relevance was decided from retrieval scores")


# ---------------------------------------------------------------- through the pipeline
def test_yes_no_question_screens_stances_and_the_prompts_carry_the_tally() -> None:
    answer, llm = ask(YES_NO)

    screening = [c for c in llm.calls if c.step == "screen"]
    assert screening and all(
        c.schema["properties"]["stance"]["enum"][:2] == ["supporting", "contradicting"] for c in screening
    )
    assert all("stance" in c.schema["required"] for c in screening)
    assert '"stance": "<supporting, contradicting, mixed or not answering>"' in screening[0].messages[-1]["content"]
    stances = {s.pmid: s.stance for s in answer.article_summaries}
    assert stances == {"201": "supporting", "202": "contradicting", "203": "supporting", "204": "not answering"}

    # citation numbers follow relevance rank; the blocks reach the LLM strongest design first
    assert [r.pmid for r in answer.references] == ["201", "202", "203", "204"]
    synthesis_prompt = prompt_of(llm, "synthesize")
    starts = [synthesis_prompt.index(f"\n[{n}] ") for n in (3, 1, 2, 4)]
    assert starts == sorted(starts)
    assert "[3] Magnesium for sleep: pooled studies" in synthesis_prompt
    assert "Level of evidence: meta-analysis (level 1 of 5, 1 strongest)." in synthesis_prompt
    assert "Answer to the question: contradicting." in synthesis_prompt
    # the tally and, the evidence disagreeing, the order to say so
    assert answer.agreement is not None and answer.agreement.disagreement
    assert f"Agreement on the question, as each article was classed at screening: {answer.agreement.summary}." in (
        synthesis_prompt
    )
    assert "The evidence disagrees: say so plainly" in synthesis_prompt
    # the TL;DR's hedge: the strongest design among those that support or contradict
    tldr_prompt = prompt_of(llm, "tldr")
    assert "Strongest design among the articles that support or contradict: meta-analysis (level 1 of 5" in tldr_prompt
    assert "The evidence disagrees." in tldr_prompt and "Hedge to the strongest design stated above" in tldr_prompt

    markdown = answer.to_markdown()
    assert (
        "**Agreement (yes/no question):** 2 support (1 meta-analysis, 1 randomised trial), 1 contradicts"
        " (1 cohort study), 1 does not answer it either way (1 case report/series)"
    ) in markdown
    assert markdown.index("**TL;DR:**") < markdown.index("**Agreement") < markdown.index("Magnesium may help")
    # the answer's JSON carries it, and the upstream dict keys still work
    again = type(answer).from_json(answer.to_json())
    assert again.agreement == answer.agreement
    assert answer["article_summaries"][0]["stance"] == "supporting" and "synthesis" in answer


def test_agreeing_evidence_is_not_told_to_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(VERDICTS, "cohort", (8, "supporting"))
    answer, llm = ask(YES_NO)
    assert answer.agreement is not None and not answer.agreement.disagreement
    assert answer.agreement.summary.startswith("3 support (1 meta-analysis, 1 randomised trial, 1 cohort study)")
    assert "The evidence disagrees" not in prompt_of(llm, "synthesize") + prompt_of(llm, "tldr")


def test_other_questions_get_no_stance_and_unchanged_prompts() -> None:
    answer, llm = ask(OPEN)
    screening = [c for c in llm.calls if c.step == "screen"]
    assert all("stance" not in c.schema["properties"] for c in screening)
    assert all("stance" not in c.messages[-1]["content"] for c in screening)
    assert all(s.stance is None for s in answer.article_summaries + answer.irrelevant_articles)
    assert answer.agreement is None and "Agreement" not in answer.to_markdown()
    assert "Agreement" not in prompt_of(llm, "synthesize")
    # the TL;DR still hedges to the strongest design given
    assert "Strongest design among these articles: meta-analysis (level 1 of 5" in prompt_of(llm, "tldr")


def test_missing_or_odd_stance_is_not_judged_and_said_so() -> None:
    def odd(request: LLMRequest) -> str:
        reply = json.loads(screen(request))
        if "trial" in reply["summary"]:
            reply.pop("stance")
        else:
            reply["stance"] = "banana"
        return json.dumps(reply)

    answer, _ = ask(YES_NO, screen=odd)
    assert {s.stance for s in answer.article_summaries} == {"not judged"}
    assert answer.agreement is not None and answer.agreement.judged
    assert answer.agreement.summary.startswith("4 without a stance from the model (1 meta-analysis")


def test_small_preset_says_stance_not_judged() -> None:
    words = "magnesium OR supplementation OR improve OR sleep OR quality OR older OR adults"
    articles = [
        make_article(
            "101",
            "Magnesium and sleep in elderly: an RCT",
            "Magnesium supplementation improved sleep quality in older adults.",
            publication_types=["Randomized Controlled Trial"],
        )
    ]
    llm = ScriptedLLM({})
    answer = ClinfoAI(
        llm=llm, source=MemorySource({words: ["101"]}, articles), preset="small", use_cache=False
    ).forward(YES_NO)
    assert llm.calls == []
    assert [s.stance for s in answer.article_summaries] == ["not judged"]
    assert answer.agreement is not None and not answer.agreement.judged
    assert answer.agreement.counts["not judged"] == 1 and answer.agreement.cells[0].design == "randomised trial"
    assert (
        "**Agreement (yes/no question):** not judged: relevance was decided from retrieval scores, not by a language"
        " model, so no article's finding was classed as supporting or contradicting"
    ) in answer.to_markdown()
    assert "no finding was classed as supporting or contradicting" in answer.tldr
    assert "strongest design quoted: randomised trial (level 2 of 5" in answer.tldr
    assert "1 trial(s) or systematic review(s) among those quoted" in answer.tldr


# ---------------------------------------------------------------- the app's chart and cards
def test_chart_spec_stacks_designs_strongest_first() -> None:
    from clinfo.app import view

    answer, _ = ask(YES_NO)
    spec = view.agreement_chart(answer.agreement)
    assert spec is not None
    rows = spec["data"]["values"]
    assert {(r["stance"], r["design"], r["articles"]) for r in rows} == {
        ("supporting", "meta-analysis (level 1)", 1),
        ("supporting", "randomised trial (level 2)", 1),
        ("contradicting", "cohort (level 3)", 1),
    }
    assert spec["encoding"]["color"]["sort"] == [
        "meta-analysis (level 1)",
        "randomised trial (level 2)",
        "cohort (level 3)",
    ]
    assert spec["encoding"]["y"]["sort"] == ["supporting", "contradicting", "mixed"]
    cards = {s.pmid: view.card_md(s) for s in answer.article_summaries}
    assert "**Stance:** contradicting (its finding says no)" in cards["202"]
    assert "**Stance:** not answering (neither yes nor no)" in cards["204"]
    assert view.agreement_chart(None) is None
    assert view.agreement_chart(answer.agreement.model_copy(update={"judged": False})) is None


# ---------------------------------------------------------------- evaluation
def test_eval_reports_the_design_mix_of_cited_evidence() -> None:
    answer, _ = ask(YES_NO, synthesize="Pooled trials [3] and one trial [1] support it; a cohort does not [2].")
    cited = [r.pmid for r in answer.references if r.cited]
    assert cited == ["201", "202", "203"]
    saved = answer.model_dump(mode="json")
    # an answer saved before designs were recorded: decided from its article record
    for summary in saved["article_summaries"]:
        summary["article"].pop("design")
    open_answer, _ = ask(OPEN, synthesize="A trial [1].")
    records = [{"answer": saved}, {"answer": open_answer.model_dump(mode="json")}]
    metrics = evidence_metrics(records)
    assert metrics is not None
    assert metrics["cited"] == 4 and metrics["answers_citing"] == 2
    assert metrics["design_mix"] == {"meta-analysis": 1, "randomised trial": 2, "cohort": 1}
    assert metrics["design_share"]["randomised trial"] == 0.5
    assert metrics["level_mix"] == {"1": 1, "2": 2, "3": 1}
    assert metrics["level_1_2_share"] == 0.75
    assert metrics["stance_questions"] == 1
    assert metrics["stances"]["supporting"] == 2 and metrics["stances"]["contradicting"] == 1
    table = markdown_table([("run", {"run": {"finished": 2}, "evidence": metrics})])
    assert "| cited: randomised trial | 0.500 |" in table
    assert "| cited at level 1-2 (reviews, trials) | 0.750 |" in table
    assert "| stance: contradicting | 1 |" in table
    assert "cited: guideline" not in table  # n/a everywhere: left out
    assert evidence_metrics([{"answer": {"references": [], "article_summaries": []}}]) is None
