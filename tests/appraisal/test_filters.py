"""Study filters (designs, human studies) in every layer: names and settings, PubMed syntax sent to a
loopback E-utilities server serving real records, the local corpus's filtered ranking, the pipeline's
check of each fetched record's derived design, what the answer says, and the CLI / eval entry points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinfo import ClinfoAI
from clinfo.appraisal.filters import DESIGN_GROUPS, StudyFilter, design_kinds
from clinfo.cli.root import app
from clinfo.errors import ConfigError, InvalidArgument
from clinfo.models import Answer, Article
from clinfo.pubmed.query import parse, validate
from clinfo.pubmed.vocabulary import HUMANS_ONLY
from clinfo.pubmed.xml import parse_efetch
from clinfo.settings import Settings
from clinfo.sources.corpus import LocalSource
from tests.support.eutils import EFETCH_HEAD, EFETCH_TAIL, EUtilsServer
from tests.support.openai_server import OpenAIServer
from tests.support.scripted import MemorySource, ScriptedLLM, make_article, screen_reply

TRIALS_AND_REVIEWS = ("meta-analysis", "systematic review", "randomised trial")
QUESTION = "Do parenting interventions improve outcomes in children?"


def scripted(query: str) -> ScriptedLLM:
    return ScriptedLLM(
        {
            "plan": json.dumps({"queries": [query]}),
            "screen": screen_reply(lambda title: True),
            "synthesize": "The trials found a benefit [1].",
            "tldr": "Some evidence of benefit.",
        }
    )


def records(server: EUtilsServer, pmids: list[str]) -> list[Article]:
    """The records as the pipeline parses them from efetch."""
    return parse_efetch(EFETCH_HEAD + b"".join(server.corpus[p].xml for p in pmids) + EFETCH_TAIL, Article)


def screened(answer: Answer) -> list[Article]:
    return [s.article for s in answer.article_summaries + answer.irrelevant_articles]


# ---------------------------------------------------------------- names, settings, PubMed form


def test_design_names_in_any_spelling_and_groups() -> None:
    assert design_kinds(["Randomized Trial", "rct", "systematic_review"]) == ("systematic review", "randomised trial")
    assert design_kinds("trials-and-reviews") == TRIALS_AND_REVIEWS == DESIGN_GROUPS["trials-and-reviews"]
    assert design_kinds("cohort, case-report-series") == ("cohort", "case report/series")
    assert design_kinds('["animal-in-vitro"]') == ("animal/in-vitro",)
    assert design_kinds(None) == design_kinds([]) == design_kinds(" ") == ()
    with pytest.raises(ValueError, match="unknown study design 'crossover'.*randomised-trial.*trials-and-reviews"):
        design_kinds(["cohort", "crossover"])


def test_settings_read_designs_and_humans_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_DESIGNS", "trials-and-reviews,cohort")
    monkeypatch.setenv("CLINFO_HUMANS_ONLY", "true")
    settings = Settings()
    assert settings.designs == ["meta-analysis", "systematic review", "randomised trial", "cohort"]
    assert settings.humans_only is True
    assert settings.public_dict()["designs"] == settings.designs  # what eval's config.json records
    monkeypatch.setenv("CLINFO_DESIGNS", "bogus")
    with pytest.raises(ConfigError, match="^invalid setting designs=.*unknown study design 'bogus'"):
        Settings.resolve()


def test_pubmed_form_of_a_filter() -> None:
    assert StudyFilter.of(None, True).apply("children") == f"(children) {HUMANS_ONLY}"
    assert HUMANS_ONLY == "NOT (animals[mh] NOT humans[mh])"
    trials = StudyFilter.of(["randomised-trial"]).apply("asthma[tiab] OR wheeze")
    assert trials.startswith('(asthma[tiab] OR wheeze) AND ("randomized controlled trial"[pt] OR ')
    # PubMed Clinical Queries-style text words, so that a trial NLM has not indexed yet is found
    assert trials.endswith(" OR randomized[tiab] OR randomised[tiab] OR randomly[tiab])")
    validate(trials)  # clinfo's own query language accepts what it sends
    both = StudyFilter.of("trials-and-reviews", True).apply("children")
    for term in ('"meta-analysis"[pt]', "meta-analysis[tiab]", '"systematic review"[pt]', '"systematic review"[tiab]'):
        assert term in both
    assert both.endswith(f") {HUMANS_ONLY}")
    parse(both)
    # "other" has no PubMed form: no design clause (the derived design decides after fetch)
    assert StudyFilter.of(["other", "cohort"]).apply("x") == "x"
    assert StudyFilter().apply("x") == "x" and not StudyFilter().active


def test_filter_decides_on_the_derived_design_of_real_records() -> None:
    server = EUtilsServer()
    rct = next(r.pmid for r in server.corpus.values() if "randomized controlled trial" in r.pubtypes)
    animal = next(r.pmid for r in server.corpus.values() if "animals" in r.mesh and "humans" not in r.mesh)
    trial, mice = records(server, [rct, animal])
    trials, humans = StudyFilter.of(["randomised-trial"]), StudyFilter.of(None, True)
    assert trials.admits(trial) and trials.reason(mice) == f"design: {mice.design.kind}"
    assert humans.reason(mice) == "not a human study" and mice.design.human is False
    assert StudyFilter.of(["animal-in-vitro"]).admits(mice)


# ---------------------------------------------------------------- online: loopback E-utilities


def test_loopback_esearch_evaluates_the_humans_clause_on_mesh() -> None:
    server = EUtilsServer()
    term = StudyFilter.of(None, True).apply("children")
    everything = server.expected_pmids("children", 10_000)

    def animal_only(p: str) -> bool:
        mesh = server.corpus[p].mesh
        return "animals" in mesh and "humans" not in mesh

    assert server.expected_pmids(term, 10_000) == [p for p in everything if not animal_only(p)]


def online(server: EUtilsServer, tmp_path: Path, llm: ScriptedLLM, **settings) -> Answer:
    clinfo = ClinfoAI(
        llm=llm,
        source="pubmed",
        use_cache=False,
        cache_dir=tmp_path,
        eutils_base_url=server.base_url,
        eutils_rate_scope="process",
        eutils_retries=0,
        results_per_query=100,
        prefilter_k=100,
        max_concurrency=8,
        **settings,
    )
    return clinfo.forward(QUESTION)


def test_online_filter_is_pubmed_syntax_then_the_derived_design(eutils_server: EUtilsServer, tmp_path: Path) -> None:
    answer = online(eutils_server, tmp_path, scripted("children"), designs=["trials-and-reviews"], humans_only=True)
    f = StudyFilter(TRIALS_AND_REVIEWS, True)
    [search] = [r for r in eutils_server.requests if r.endpoint == "esearch"]
    assert search.params["term"] == f.apply("children")
    assert search.params["term"].startswith('(children) AND ("meta-analysis"[pt] OR ')
    assert answer.queries[0].query == "children"  # the planned query, as the LLM wrote it

    found = eutils_server.expected_pmids(f.apply("children"), 100)
    fetched = records(eutils_server, found)
    outside = [a for a in fetched if not f.admits(a)]
    # the text words over-match (reviews NLM typed "Review", editorials saying "randomized"): dropped
    # after fetch on the derived design, and counted
    assert outside and answer.trace.study_filter is not None
    assert answer.trace.study_filter.left_out == len(outside)
    assert answer.trace.study_filter.pubmed == f.pubmed()
    seen = screened(answer)
    assert seen and all(f.admits(a) for a in seen)
    assert {a.pmid for a in seen} <= {a.pmid for a in fetched} - {a.pmid for a in outside}
    # trials NLM has not indexed yet (only "Journal Article") are found through their words
    assert any(a.design.kind == "randomised trial" and a.design.basis == "title/abstract" for a in seen)

    text = answer.to_markdown()
    assert (
        "Restricted to meta-analyses, systematic reviews or randomised trials; human studies only (PubMed syntax"
        f" added to each query, then each record's design as decided by code; {len(outside)} retrieved records"
        " outside the filter left out)." in text
    )
    assert f"Added to each PubMed query: `{f.pubmed()}`" in text
    assert "restricted to meta-analyses, systematic reviews or randomised trials" in text  # the trace line too


def test_online_humans_only_leaves_animal_studies_out(eutils_server: EUtilsServer, tmp_path: Path) -> None:
    answer = online(eutils_server, tmp_path, scripted("sepsis"), humans_only=True)
    [search] = [r for r in eutils_server.requests if r.endpoint == "esearch"]
    assert search.params["term"] == "(sepsis) NOT (animals[mh] NOT humans[mh])"
    found = records(eutils_server, eutils_server.expected_pmids(search.params["term"], 100))
    # untagged rat studies pass PubMed's sensitive form; their derived design leaves them out
    rats = [a for a in found if a.design.kind == "animal/in-vitro"]
    assert rats and answer.trace.study_filter.left_out == len(rats)
    assert all(a.design.kind != "animal/in-vitro" and a.design.human is not False for a in screened(answer))


def test_a_source_without_the_filter_gets_pubmed_syntax_and_the_check(tmp_path: Path) -> None:
    rct = make_article("1", "Magnesium and sleep: a trial", publication_types=["Randomized Controlled Trial"])
    rats = make_article("2", "Magnesium and sleep in rats", mesh=["Animals", "Rats"])
    note = make_article("3", "Magnesium and sleep: our view", publication_types=["Editorial"])
    f = StudyFilter(("randomised trial",), True)
    source = MemorySource({f.apply("magnesium"): ["1", "2", "3"]}, [rct, rats, note])
    answer = ClinfoAI(llm=scripted("magnesium"), source=source, use_cache=False).forward(
        QUESTION, designs=["randomised-trial"], humans_only=True
    )
    assert [q for q, _, _ in source.searches] == [f.apply("magnesium")]
    assert [a.pmid for a in screened(answer)] == ["1"]
    assert answer.trace.study_filter.left_out == 2


def test_per_call_filter_overrides_the_settings_and_bad_values_are_typed() -> None:
    source = MemorySource({}, [])
    clinfo = ClinfoAI(llm=scripted("magnesium"), source=source, use_cache=False, designs=["cohort"])
    answer = clinfo.forward(QUESTION, designs=["reviews"])
    assert answer.trace.study_filter.designs == ["meta-analysis", "systematic review"]
    assert clinfo.forward(QUESTION).trace.study_filter.designs == ["cohort"]
    assert clinfo.forward(QUESTION, designs=[]).trace.study_filter is None  # explicitly every design
    with pytest.raises(InvalidArgument, match="designs: unknown study design 'bogus'"):
        clinfo.forward(QUESTION, designs=["bogus"])
    with pytest.raises(InvalidArgument, match="humans_only"):
        clinfo.forward(QUESTION, humans_only="yes")
    with pytest.raises(ConfigError, match="unknown study design 'bogus'"):
        ClinfoAI(llm=scripted("x"), source=source, designs=["bogus"])


# ---------------------------------------------------------------- offline: the local corpus


def test_local_source_filters_on_the_derived_design_keeping_rank_and_limit(
    small_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = LocalSource(small_corpus, mode="bm25")
    f = StudyFilter(TRIALS_AND_REVIEWS, True)
    full = src.search_sync("patients", limit=1000)
    articles = {a.pmid: a for a in src.fetch_sync(full.pmids)}
    passing = [p for p in full.pmids if f.admits(articles[p])]
    assert len(passing) >= 6 and len(full.pmids) < 1000  # the whole ranking, some of it admitted
    score = dict(zip(full.pmids, full.scores))

    # a narrow first look forces several widening rounds before five records pass
    monkeypatch.setattr(LocalSource, "STUDY_MIN_DEPTH", 3)
    monkeypatch.setattr(LocalSource, "STUDY_OVERFETCH", 2)
    result = src.search_sync("patients", limit=5, studies=f)
    assert result.pmids == passing[:5]  # limit met, in the unfiltered order
    assert result.scores == [score[p] for p in result.pmids]
    above = full.pmids[: full.pmids.index(result.pmids[-1])]
    assert result.left_out == [p for p in above if p not in passing] and result.left_out
    assert "study filter" in result.translation

    everything = src.search_sync("patients", limit=1000, studies=f)
    assert everything.pmids == passing and everything.count == len(passing)
    # an untyped trial (only "Journal Article") is kept on its title and abstract
    assert any(articles[p].design.basis == "title/abstract" for p in passing)


def test_offline_answer_says_it_was_restricted(small_corpus: Path) -> None:
    answer = ClinfoAI(
        llm=scripted("patients"),
        source=f"local:{small_corpus}",
        search_mode="bm25",
        use_cache=False,
        designs=["randomised-trial"],
        humans_only=True,
        prefilter_k=50,
    ).forward(QUESTION)
    note = answer.trace.study_filter
    assert note is not None and note.pubmed == "" and note.left_out > 0
    assert note.designs == ["randomised trial"] and note.humans_only
    seen = screened(answer)
    assert seen and all(a.design.kind == "randomised trial" for a in seen)
    text = answer.to_markdown()
    assert "Restricted to randomised trials; human studies only (on each record's design as decided by code;" in text
    assert "Added to each PubMed query" not in text


# ---------------------------------------------------------------- command line and eval


def test_cli_bad_design_is_one_line_and_non_zero() -> None:
    result = CliRunner().invoke(app, ["ask", "--design", "randomised-trial", "--design", "trial-ish", "Q?"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: invalid setting designs=")
    assert "unknown study design 'trial-ish'" in lines[0]


def test_cli_ask_and_eval_take_the_filter(small_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    for var in ("CLINFO_DESIGNS", "CLINFO_HUMANS_ONLY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLINFO_CACHE_DIR", str(tmp_path / "cache"))
    filters = ["--design", "randomised-trial", "--design", "systematic-review", "--humans-only"]
    with OpenAIServer(latency=0.0) as llm:
        common = ["--llm", "openai:bench", "--base-url", llm.base_url, "--source", f"local:{small_corpus}"]
        question = "Does stent implantation reduce restenosis?"
        result = CliRunner().invoke(app, ["ask", question, "--json", "--quiet", *common, *filters])
        assert result.exit_code == 0, result.output
        answer = Answer.model_validate_json(result.stdout)
        assert answer.trace.study_filter.designs == ["systematic review", "randomised trial"]
        assert answer.trace.study_filter.humans_only
        kinds = {a.design.kind for a in screened(answer)}
        assert kinds and kinds <= {"systematic review", "randomised trial"}

        data = tmp_path / "qs.jsonl"
        data.write_text(json.dumps({"id": "q1", "question": question}) + "\n")
        out = tmp_path / "run"
        result = CliRunner().invoke(app, ["eval", "run", str(data), "--out", str(out), "--quiet", *common, *filters])
        assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["designs"] == ["systematic review", "randomised trial"]
    assert config["settings"]["humans_only"] is True
    [prediction] = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert (
        prediction["answer"]["trace"]["study_filter"]["label"]
        == "systematic reviews or randomised trials; human studies only"
    )


def test_an_eval_run_from_before_the_filter_settings_resumes_unless_they_change() -> None:
    from clinfo.eval.run_dir import config_differences

    def config(**settings) -> dict:
        return {"dataset": {"sha256": "abc", "format": "jsonl"}, "limit": None, "seed": 0, "settings": settings}

    old = config(llm="openai:x")  # written before designs and humans_only existed
    assert config_differences(old, config(llm="openai:x", designs=None, humans_only=False)) == []
    assert config_differences(old, config(llm="openai:x", designs=["cohort"], humans_only=True)) == [
        "designs None -> ['cohort']",
        "humans_only False -> True",
    ]
