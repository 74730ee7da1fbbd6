"""``clinfo index build|upgrade|info`` and ``clinfo search`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinfo.cli import app
from tests.support.corpus import XmlSlice, pubmedqa_items, write_xml

runner = CliRunner()


def _err(result) -> str:  # noqa: ANN001 - click's Result
    try:
        return result.stderr
    except ValueError:  # older click mixes the streams
        return result.output


def test_index_build_prints_a_summary_and_info_reads_it(tmp_path: Path, slice21: XmlSlice) -> None:
    src = write_xml(tmp_path / "a.xml.gz", slice21.header, slice21.records[:60])
    db = tmp_path / "c.db"
    result = runner.invoke(app, ["index", "build", str(src), "--out", str(db), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "read 60 citations from 1 file(s)" in result.stdout and "no abstract" in result.stdout
    again = runner.invoke(app, ["index", "build", str(src), "--out", str(db), "-q"])
    assert again.exit_code == 0 and "1 file(s) already indexed" in again.stdout
    info = runner.invoke(app, ["index", "info", str(db)])
    assert info.exit_code == 0 and json.loads(info.stdout)["files"][0]["name"] == "a.xml.gz"


def test_search_json_lines(small_corpus: Path) -> None:
    result = runner.invoke(
        app, ["search", "cancer[tiab] AND patients", "--source", f"local:{small_corpus}", "-k", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 4 and all(set(r) == {"pmid", "score", "title"} for r in rows)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert all(isinstance(r["title"], str) for r in rows)


def test_search_table_and_warnings_on_stderr(small_corpus: Path) -> None:
    result = runner.invoke(app, ["search", "cancer AND english[la]", "--source", f"local:{small_corpus}", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert "hits" in result.stdout and "PMID" in result.stdout
    assert "warning: [la] ignored" in _err(result)


def test_search_stdin_one_line_per_query(small_corpus: Path) -> None:
    qa = pubmedqa_items()
    pmids = list(qa)[:20]
    lines = [qa[p]["QUESTION"] for p in pmids] + ["", "(unbalanced cancer AND x", "Humans[mh] AND 1970:1979[dp]"]
    result = runner.invoke(
        app, ["search", "--stdin", "--source", f"local:{small_corpus}", "-k", "5"], input="\n".join(lines) + "\n"
    )
    assert result.exit_code == 0, result.output  # a malformed query is searched as words, not an error
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 22
    assert sum(p in [r["pmid"] for r in o["results"]] for p, o in zip(pmids, out)) >= 18
    assert "error" not in out[20] and out[20]["results"]
    assert out[21]["results"] and all(set(r) == {"pmid", "score"} for r in out[21]["results"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["search", "x", "--source", "local:/nonexistent/corpus.db"], "no corpus at /nonexistent/corpus.db"),
        (["search", "x", "--source", "nonsense"], "unknown source"),
        (["search", "x", "--mode", "dense", "--source", "pubmed"], "needs a local corpus"),
        (["search", "x", "--mode", "sparse"], "unknown --mode"),
        (["search"], "give a QUERY or --stdin"),
        (["index", "build", "/nonexistent/file.xml.gz", "--out", "x.db"], "no such file"),
        (["index", "info", "/nonexistent.db"], "no corpus at"),
        (["index", "upgrade", "/nonexistent.db"], "no corpus at"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(small_corpus: Path, args: list[str], message: str) -> None:
    if args[0] == "search" and "--source" not in args and "--stdin" not in args and len(args) > 1:
        args = [*args, "--source", f"local:{small_corpus}"]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    err = _err(result).strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in result.output


def test_a_bad_setting_in_the_environment_is_one_line(small_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_SEARCH_MODE", "bogus")
    result = runner.invoke(app, ["search", "statins", "--source", f"local:{small_corpus}"])
    assert result.exit_code != 0
    err = _err(result).strip()
    assert "search_mode" in err and len(err.splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    "query,warning",
    [
        ("cancer[foo]", "unknown field tag [foo]"),
        ("(cancer AND x", "never closed"),
        (
            "Is EuroQol 5-Dimension Health Assessment (EQ-5D) [a widely used, simple instrument ...]"
            " a 5 question assessment?",
            "follows ')'",
        ),
    ],
)
def test_text_that_is_not_pubmed_syntax_is_searched_as_words(small_corpus: Path, query: str, warning: str) -> None:
    result = runner.invoke(app, ["search", query, "--source", f"local:{small_corpus}", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3
    err = _err(result)
    assert "warning: not PubMed syntax" in err and warning in err and "searched as plain words" in err


def test_corrupt_corpus_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "corpus.db"
    bad.write_bytes(b"not a database at all" * 200)
    result = runner.invoke(app, ["search", "cancer", "--source", f"local:{bad}"])
    assert result.exit_code != 0
    assert "not a readable clinfo corpus" in _err(result) and "Traceback" not in result.output
    result = runner.invoke(app, ["index", "build", str(bad), "--out", str(bad)])
    assert result.exit_code != 0 and len(_err(result).strip().splitlines()) == 1


def test_search_demo_source_in_cache_dir() -> None:
    qa = pubmedqa_items()
    pmid = list(qa)[3]
    result = runner.invoke(app, ["search", qa[pmid]["QUESTION"], "--source", "demo", "-k", "5", "--json"])
    assert result.exit_code == 0, result.output
    assert pmid in [json.loads(line)["pmid"] for line in result.stdout.splitlines()]
