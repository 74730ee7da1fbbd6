"""Fusion of BM25 and dense rankings (clinfo.corpus.hybrid): score fusion and RRF, then the
fusion on the demo corpus with real PubMedQA questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinfo.corpus.hybrid import (
    DEFAULT_FUSION,
    FUSION_DEPTH,
    ModeChoice,
    describe,
    fuse_hybrid,
    label,
    normalise,
    score_fuse,
)
from clinfo.errors import ConfigError
from clinfo.rank_fusion import rrf

PQA_DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "pubmedqa" / "pqal_dev.json"


# ---------------------------------------------------------------- normalisation


def test_normalise_divides_by_the_top_score() -> None:
    assert normalise([8.0, 4.0, 2.0], depth=100) == [1.0, 0.5, 0.25]


def test_normalise_one_document_and_degenerate_tops_are_one_not_nan() -> None:
    assert normalise([3.7], depth=100) == [1.0]
    assert normalise([2.0, 2.0, 2.0], depth=3) == [1.0, 1.0, 1.0]
    assert normalise([0.0, 0.0], depth=100) == [1.0, 1.0]  # a filter-only query scores every match 0
    assert normalise([-0.1, -0.3], depth=100) == [1.0, 1.0]  # cosines all below 0: still a ranking, tied
    assert normalise([], depth=100) == []


def test_normalise_negative_scores_floor_at_zero_like_a_miss() -> None:
    assert normalise([0.5, 0.25, -0.2], depth=100) == [1.0, 0.5, 0.0]


def test_normalise_keeps_only_the_depth() -> None:
    assert normalise([4.0, 3.0, 2.0, 1.0], depth=2) == [1.0, 0.75]


# ---------------------------------------------------------------- score fusion


def test_score_fuse_weighs_scores_not_ranks() -> None:
    # BM25 is sure of "a" (far ahead); dense barely prefers "b" over "a": the margins decide, not the ranks
    bm25 = (["a", "b", "c"], [20.0, 2.0, 1.0])
    dense = (["b", "a", "c"], [0.61, 0.60, 0.20])
    items, scores = score_fuse([bm25, dense], [0.5, 0.5], limit=3, depth=100)
    assert items == ["a", "b", "c"]
    assert scores == sorted(scores, reverse=True)
    # only with BM25 all but ignored does dense's near tie decide
    assert score_fuse([bm25, dense], [0.05, 0.95], limit=3, depth=100)[0][:2] == ["a", "b"]
    assert score_fuse([bm25, dense], [0.01, 0.99], limit=3, depth=100)[0][:2] == ["b", "a"]


def test_score_fuse_document_in_both_beats_document_in_one() -> None:
    bm25 = (["x", "both"], [10.0, 9.0])
    dense = (["y", "both"], [0.9, 0.85])
    items, _ = score_fuse([bm25, dense], [0.3, 0.7], limit=3, depth=100)
    assert items[0] == "both"


def test_score_fuse_ties_keep_first_seen_order() -> None:
    bm25 = (["a", "b"], [1.0, 1.0])
    dense = (["c", "d"], [0.5, 0.5])
    items, scores = score_fuse([bm25, dense], [0.5, 0.5], limit=4, depth=100)
    assert items == ["a", "b", "c", "d"] and len(set(scores)) == 1
    assert score_fuse([bm25, dense], [0.5, 0.5], limit=4, depth=100) == (items, scores)  # deterministic


def test_score_fuse_one_document_ranking() -> None:
    # BM25 found a single (rare-word) match: it gets BM25's full share, no division by zero
    dense = (["d1", "d2", "rare"], [0.8, 0.7, 0.1])
    items, scores = score_fuse([(["rare"], [4.2]), dense], [0.3, 0.7], limit=3, depth=3)
    assert scores[items.index("rare")] == pytest.approx(0.3 + 0.7 * 0.1 / 0.8)
    assert items[0] == "d1"
    # BM25's lone match counts as much as the top of any BM25 ranking, not more
    weak = score_fuse([(["rare"], [0.4]), dense], [0.3, 0.7], 3, 3)
    assert weak == score_fuse([(["rare"], [40.0]), dense], [0.3, 0.7], 3, 3)


def test_score_fuse_missing_dense_is_bm25_order() -> None:
    bm25 = (["a", "b", "c"], [3.0, 2.0, 1.0])
    items, scores = score_fuse([bm25, ([], [])], [0.3, 0.7], limit=10)
    assert items == ["a", "b", "c"]
    assert scores[0] == pytest.approx(0.3)


def test_score_fuse_ranking_without_scores_counts_by_rank() -> None:
    items, _ = score_fuse([(["a", "b", "c"], []), (["c"], [0.9])], [0.5, 0.5], limit=3, depth=100)
    assert items == ["c", "a", "b"]


def test_score_fuse_limit_and_weights() -> None:
    items, scores = score_fuse([(list("abcdef"), [6, 5, 4, 3, 2, 1])], [1.0], limit=2, depth=100)
    assert items == ["a", "b"] and len(scores) == 2
    with pytest.raises(ValueError):
        score_fuse([(["a"], [1.0])], [0.5, 0.5], limit=1)


def test_confidence_is_how_far_the_head_stands_out() -> None:
    from clinfo.corpus.hybrid import confidence

    assert confidence([10.0, 9.0, 9.0, 9.0, 9.0, 9.0]) == pytest.approx(0.1)  # a flat head
    assert confidence([10.0, 2.0, 1.0, 1.0, 1.0]) == pytest.approx(0.9)  # one clear winner
    assert confidence([3.0, 2.0]) == 1.0  # fewer results than the rank looked at
    assert confidence([]) == 0.0
    assert confidence([0.0, 0.0, 0.0, 0.0, 0.0]) == 0.0  # all tied (a filter-only query)


def test_confidence_weight_moves_the_share_towards_the_surer_ranking() -> None:
    from clinfo.corpus.hybrid import CONFIDENCE_PRIOR_BM25, confidence_weight

    peaked, flat = [10.0, 2.0, 1.0, 1.0, 1.0], [1.0, 0.95, 0.95, 0.95, 0.95]
    assert confidence_weight(flat, flat) == pytest.approx(CONFIDENCE_PRIOR_BM25)  # equal confidence: the prior
    assert confidence_weight(peaked, flat) > 0.5 > CONFIDENCE_PRIOR_BM25 > confidence_weight(flat, peaked)
    assert confidence_weight([], []) == CONFIDENCE_PRIOR_BM25  # nothing to go on: no division by zero
    assert confidence_weight([], peaked) == 0.0 and confidence_weight(peaked, []) == 1.0


def test_fuse_hybrid_score_lets_a_verbatim_bm25_match_win() -> None:
    from clinfo.corpus.hybrid import fuse_hybrid

    # BM25 has one document far ahead (a pasted conclusion); dense has a flat head without it.
    bm25 = (["exact", "b", "c", "d", "e", "f"], [40.0, 8.0, 7.0, 7.0, 6.0, 6.0])
    dense = (["near", "b", "c", "d", "e", "exact"], [0.80, 0.79, 0.78, 0.78, 0.77, 0.60])
    assert fuse_hybrid(bm25, dense, 2, fusion="score")[0][0] == "exact"
    # with a fixed BM25 share of 0.1 the flat dense head buries it
    assert fuse_hybrid(bm25, dense, 2, fusion="score", weight_bm25=0.1)[0][0] != "exact"


def test_fuse_hybrid_dispatches_on_fusion() -> None:
    bm25 = (["a", "b", "c"], [20.0, 2.0, 1.0])
    dense = (["b", "a", "c"], [0.61, 0.60, 0.20])
    assert fuse_hybrid(bm25, dense, 3, fusion="score", weight_bm25=0.5)[0] == ["a", "b", "c"]
    # RRF: ranks only; a and b tie (1st + 2nd each) and a was seen first
    assert fuse_hybrid(bm25, dense, 3, fusion="rrf")[0] == rrf([bm25[0], dense[0]], 10)[:3]
    with pytest.raises(ConfigError, match="unknown fusion"):
        fuse_hybrid(bm25, dense, 3, fusion="max")


def test_describe_and_label_name_the_fusion() -> None:
    assert DEFAULT_FUSION == "score"
    assert label(ModeChoice("hybrid")) == "hybrid (score fusion)"
    assert label(ModeChoice("hybrid", fusion="rrf")) == "hybrid (rrf fusion)"
    assert label(ModeChoice("bm25")) == "bm25"
    assert describe(ModeChoice("hybrid", fusion="rrf")) == {"mode": "hybrid", "fusion": "rrf"}
    assert describe(ModeChoice("bm25")) == {"mode": "bm25"}
    assert FUSION_DEPTH >= 10


# ---------------------------------------------------------------- on the demo corpus


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the built demo corpus (with its shipped vectors)."""
    pytest.importorskip("onnxruntime")  # the [local] extra encodes questions of the shipped vectors
    from clinfo.corpus.demo import demo_corpus_path
    from clinfo.settings import Settings

    cache = tmp_path_factory.mktemp("cache")
    demo_corpus_path(Settings(cache_dir=cache))
    return cache


@pytest.fixture(scope="module")
def demo_db(demo_cache: Path) -> Path:
    from clinfo.corpus.demo import demo_corpus_path
    from clinfo.settings import Settings

    return demo_corpus_path(Settings(cache_dir=demo_cache))


# Real PubMedQA PQA-L dev questions (as typed) whose gold abstract plain BM25 leaves out of its top 10
# over the demo corpus; found by searching all 500 (3 such questions; the third, "Would a man smell a
# rose then throw it away?", no mode finds).
BM25_MISSES = ["23356465", "10759659"]


@pytest.mark.asyncio
async def test_hybrid_score_finds_gold_that_bm25_misses(demo_db: Path) -> None:
    from clinfo.sources.corpus import LocalSource

    dev = json.loads(PQA_DEV.read_text())
    bm25 = LocalSource(demo_db, mode="bm25")
    hybrid = LocalSource(demo_db, mode="hybrid", fusion="score")
    try:
        assert hybrid.describe()["fusion"] == "score"
        for pmid in BM25_MISSES:
            question = dev[pmid]["QUESTION"]
            assert pmid not in (await bm25.search(question, limit=10)).pmids
            result = await hybrid.search(question, limit=10)
            assert pmid in result.pmids, question
            assert result.mode == "hybrid (score fusion)"
            assert result.scores == sorted(result.scores, reverse=True)
        assert (await bm25.search(dev[BM25_MISSES[0]]["QUESTION"], limit=10)).mode == "bm25"
    finally:
        await bm25.aclose()
        await hybrid.aclose()


# ---------------------------------------------------------------- the answer's trace names the mode


def _scripted(model: str, settings: object) -> object:
    from tests.support.scripted import ScriptedLLM, screen_reply

    return ScriptedLLM(
        {
            "plan": json.dumps({"queries": ["nurse cystoscopist flexible cystoscopy"]}),
            "broaden": json.dumps({"query": "cystoscopy"}),
            "screen": screen_reply(lambda title: True),
            "synthesize": "Nurses performed flexible cystoscopy safely [1].",
            "tldr": "Nurse cystoscopists appear feasible.",
        },
        spec=f"h5script:{model}",
    )


@pytest.mark.parametrize("mode, shown", [("hybrid", "hybrid (score fusion)"), ("bm25", "bm25")])
def test_ask_json_trace_names_the_search_mode(demo_cache: Path, mode: str, shown: str) -> None:
    from typer.testing import CliRunner

    from clinfo.cli import app
    from clinfo.llm import register

    register("h5script", _scripted)
    env = {"CLINFO_CACHE_DIR": str(demo_cache), "CLINFO_USE_CACHE": "false"}
    base = ["ask", "The nurse cystoscopist: a feasible option?", "--llm", "h5script:x", "--source", "demo",
            "--search-mode", mode, "--num-queries", "1", "--prefilter-k", "3", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, [*base, "--json"], env=env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["trace"]["search_modes"] == [shown]
    assert answer["queries"] and answer["references"]
    text = CliRunner().invoke(app, [*base, "--no-stream"], env=env)
    assert text.exit_code == 0, text.output
    assert f"search: {shown}" in text.stdout


def test_trace_line_without_a_mode_says_nothing_of_it() -> None:
    from clinfo.models import Answer
    from clinfo.render import trace_line

    answer = Answer(question="q")
    assert "search:" not in trace_line(answer)
    answer.trace.search_modes.append("bm25")
    assert trace_line(answer).endswith("· search: bm25")
