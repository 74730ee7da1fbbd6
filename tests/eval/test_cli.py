"""`clinfo eval` end to end with real parts: the openai backend against the loopback
OpenAI-compatible server, PubMed over E-utilities against the loopback E-utilities server.

The resume guarantee is tested by SIGKILLing a real `clinfo eval run` process mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinfo.cli import app
from tests.support.eutils import EUtilsServer
from tests.support.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[OpenAIServer, EUtilsServer]]:
    with OpenAIServer(latency=0.05, max_concurrency=32) as llm, EUtilsServer(latency=0.0) as eutils:
        yield llm, eutils


def write_questions(path: Path, eutils: EUtilsServer, n: int) -> Path:
    terms = eutils.sample_terms(n=n, min_hits=4)
    assert len(terms) == n, "the loopback corpus offers fewer sample terms than the test needs"
    with path.open("w") as f:
        for i, term in enumerate(terms):
            row = {
                "id": f"t{i}",
                "question": f"What is the evidence on {term}?",
                "label": "yes",
                "gold_pmids": eutils.expected_pmids(term)[:3],
            }
            f.write(json.dumps(row) + "\n")
    return path


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path: Path, servers) -> None:
    llm, eutils = servers
    data = write_questions(tmp_path / "qs.jsonl", eutils, 10)
    out = tmp_path / "runs" / "killed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINFO_")}
    env.update(
        NCBI_API_KEY="fake-key-for-10-per-second",
        CLINFO_EUTILS_BASE_URL=eutils.base_url,
        CLINFO_CACHE_DIR=str(tmp_path / "cache"),
    )
    cmd = [
        sys.executable,
        "-m",
        "clinfo",
        "eval",
        "run",
        str(data),
        "--out",
        str(out),
        "--llm",
        "openai:bench",
        "--base-url",
        llm.base_url,
        "--source",
        "pubmed",
        "--concurrency",
        "3",
        "--quiet",
    ]
    predictions = out / "predictions.jsonl"

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if predictions.exists() and predictions.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1].decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = predictions.read_bytes()
    complete_before = before[: before.rfind(b"\n") + 1]
    done_before = complete_before.count(b"\n")
    assert 3 <= done_before < 10
    # whatever the kill left, also leave a torn line as a crash inside write() would
    with predictions.open("ab") as f:
        f.write(b'{"id": "t9", "question": "What is the ev')

    finished = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert (
        f"10/10 questions done ({10 - done_before} now, {done_before} from earlier sessions; 0 failed)"
        in finished.stderr
    )
    after = predictions.read_bytes()
    assert after.startswith(complete_before) and after.endswith(b"\n")
    records = [json.loads(line) for line in after.splitlines()]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 10 and set(ids) == {f"t{i}" for i in range(10)}
    assert all(r["error"] is None and r["answer"]["question"] == r["question"] for r in records)
    assert "fake-key" not in (out / "config.json").read_text() + after.decode()


def test_each_format_runs_and_reports_side_by_side(
    tmp_path: Path, servers, shared_dir: Path, bioasq_file: Path, monkeypatch
) -> None:
    llm, eutils = servers
    monkeypatch.setenv("NCBI_API_KEY", "fake-key")
    monkeypatch.setenv("CLINFO_EUTILS_BASE_URL", eutils.base_url)
    jsonl = write_questions(tmp_path / "qs.jsonl", eutils, 2)
    csv_file = tmp_path / "qs.csv"
    csv_file.write_text(
        "id,question,answer,gold_pmids\n"
        + "".join(
            f'{r["id"]},"{r["question"]}",Evidence is limited.,"{" ".join(r["gold_pmids"])}"\n'
            for r in map(json.loads, jsonl.read_text().splitlines())
        )
    )
    datasets = {
        "pubmedqa": shared_dir / "data/pubmedqa/pqal_dev.json",
        "pubmedrs": shared_dir / "data/pubmedrs200/PubMedRS-200.csv",
        "bioasq": bioasq_file,
        "jsonl": jsonl,
        "csv": csv_file,
    }
    runner = CliRunner()
    runs = []
    for fmt, path in datasets.items():
        out = tmp_path / "runs" / fmt
        args = [
            "eval",
            "run",
            str(path),
            "--format",
            fmt,
            "--out",
            str(out),
            "--llm",
            "openai:bench",
            "--base-url",
            llm.base_url,
            "--source",
            "pubmed",
            "--limit",
            "2",
            "--seed",
            "1",
            "--quiet",
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (fmt, result.output)
        records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert len(records) == 2 and all(r["error"] is None for r in records), fmt
        config = json.loads((out / "config.json").read_text())
        assert config["dataset"]["format"] == fmt and config["limit"] == 2 and config["seed"] == 1
        runs.append(str(out))
    rs = [json.loads(line) for line in (tmp_path / "runs/pubmedrs/predictions.jsonl").read_text().splitlines()]
    assert all(r["ignore"] == [r["id"]] and r["restriction_date"] for r in rs)

    result = runner.invoke(app, ["eval", "report", *runs])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "metric" in line)
    assert all(name in header for name in datasets)
    for run in runs:
        assert (Path(run) / "report.md").exists() and (Path(run) / "metrics.json").exists()
    jsonl_metrics = json.loads((tmp_path / "runs/jsonl/metrics.json").read_text())
    assert jsonl_metrics["retrieval"]["candidates"]["recall@10"] > 0  # the loopback corpus does hold the gold PMIDs
    assert jsonl_metrics["yesno"]["accuracy"] == 1.0  # the loopback server always classifies "yes"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "xml"], "error: unknown dataset format 'xml'; use one of pubmedqa, pubmedrs, bioasq, jsonl, csv"),
        (["--llm", "nope:x"], "error: unknown LLM backend 'nope'"),
        (
            ["--source", "nowhere", "--llm", "vllm:m", "--base-url", "http://127.0.0.1:9/v1"],
            "error: unknown source 'nowhere'",
        ),
        (["--llm", "openai:gpt-4o-mini"], "error: OPENAI_API_KEY is not set"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    data = tmp_path / "qs.jsonl"
    data.write_text('{"question": "Do statins help?"}\n')
    result = CliRunner().invoke(app, ["eval", "run", str(data), "--out", str(tmp_path / "run"), "--quiet", *args])
    assert result.exit_code == 1
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_bad_dataset_line_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "qs.jsonl"
    data.write_text('{"question": "a?"}\nnot json\n')
    result = CliRunner().invoke(app, ["eval", "run", str(data), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and result.stderr == "error: qs.jsonl: not JSON at line 2: Expecting value\n"
