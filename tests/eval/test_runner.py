"""Runner control flow with a scripted LLM and an in-memory source: concurrency, errors, resume."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from clinfo.errors import ConfigError, LLMUnavailable
from clinfo.eval import RunAborted, RunError, run_eval
from clinfo.eval.classify import CLASSIFY_SCHEMA, read_label
from tests.support.eval_data import questions_jsonl, scripted_llm, scripted_source


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(data: Path, out: Path, n: int, llm=None, **kw):
    kw.setdefault("use_cache", False)
    return run_eval(data, out, llm=llm or scripted_llm(), source=scripted_source(n), **kw)


def test_each_question_gets_one_complete_line_and_a_reproducible_config(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 4)
    llm = scripted_llm()
    result = run(data, tmp_path / "run", 4, llm=llm, concurrency=2)
    assert (result.total, result.completed, result.errors, result.already_done) == (4, 4, 0, 0)
    records = lines(tmp_path / "run/predictions.jsonl")
    assert sorted(r["id"] for r in records) == ["q0", "q1", "q2", "q3"]
    r = records[0]
    assert r["error"] is None and r["gold_label"] == "yes" and r["gold_pmids"] == ["101"]
    assert r["answer"]["references"][0]["pmid"] == "100" and r["answer"]["tldr"].startswith("Limited evidence")
    assert r["predicted_label"] == "yes" and r["classification"]["method"] == "llm"
    # the classification call is constrained to the three labels, through the run's LLM
    classify = [c for c in llm.calls if c.step == "classify"]
    assert len(classify) == 4 and classify[0].schema == CLASSIFY_SCHEMA
    assert "Limited evidence suggests magnesium" in classify[0].messages[-1]["content"]
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["dataset"]["sha256"] and config["dataset"]["format"] == "jsonl"
    assert config["settings"]["llm"] == "scripted:test" and config["settings"]["source"] == "memory"
    assert config["clinfo_version"] and config["seed"] == 0 and config["limit"] is None
    sessions = lines(tmp_path / "run/sessions.jsonl")
    assert sessions[0]["completed"] == 4 and sessions[0]["status"] == "finished"


def test_questions_run_concurrently_up_to_the_limit(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 9)
    llm = scripted_llm()
    inner = llm.complete
    active = peak = 0

    async def slow_plan(request, on_token=None):
        nonlocal active, peak
        if request.step == "plan":  # exactly one per question, its first call
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1
        return await inner(request, on_token)

    llm.complete = slow_plan  # type: ignore[method-assign]
    run(data, tmp_path / "run", 9, llm=llm, concurrency=3)
    assert peak == 3
    assert len(lines(tmp_path / "run/predictions.jsonl")) == 9


def test_a_failing_question_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 5, fail=(2,))
    result = run(data, tmp_path / "run", 5, concurrency=2)
    assert (result.completed, result.errors) == (5, 1)
    by_id = {r["id"]: r for r in lines(tmp_path / "run/predictions.jsonl")}
    assert by_id["q2"]["error"] == "the server answered HTTP 500: boom" and by_id["q2"]["error_type"] == "LLMError"
    assert by_id["q2"]["answer"] is None and by_id["q2"]["gold_label"] == "yes"
    assert all(by_id[k]["error"] is None for k in ("q0", "q1", "q3", "q4"))

    # resuming tries the failed question again (and only it)
    llm = scripted_llm()
    data.write_text(data.read_text())  # same content, same sha256
    result = run(data, tmp_path / "run", 5, llm=llm, retry_errors=True, concurrency=2)
    assert (result.already_done, result.completed) == (4, 1)
    assert llm.steps().count("plan") == 1
    records = lines(tmp_path / "run/predictions.jsonl")
    assert sorted(r["id"] for r in records) == ["q0", "q1", "q2", "q3", "q4"]
    assert [r["error"] for r in records if r["id"] == "q2"] == [
        "the server answered HTTP 500: boom"
    ]  # still fails: FAIL is in the question


def test_keep_errors_does_not_retry(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 3, fail=(0,))
    run(data, tmp_path / "run", 3)
    llm = scripted_llm()
    result = run(data, tmp_path / "run", 3, llm=llm, retry_errors=False)
    assert result.completed == 0 and llm.calls == []


def test_resume_after_a_partial_trailing_line(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 5)
    out = tmp_path / "run"
    run(data, out, 5, concurrency=1)
    path = out / "predictions.jsonl"
    raw = path.read_bytes().splitlines(keepends=True)
    # as if killed while writing the third line
    path.write_bytes(b"".join(raw[:2]) + raw[2][: len(raw[2]) // 2])
    llm = scripted_llm()
    result = run(data, out, 5, llm=llm, concurrency=2)
    assert (result.already_done, result.completed) == (2, 3)
    assert llm.steps().count("plan") == 3
    final = path.read_bytes()
    assert final.startswith(b"".join(raw[:2])) and final.endswith(b"\n")
    ids = [r["id"] for r in lines(path)]
    assert sorted(ids) == ["q0", "q1", "q2", "q3", "q4"] and len(ids) == 5

    # a finished run started again does nothing
    llm = scripted_llm()
    result = run(data, out, 5, llm=llm)
    assert (result.already_done, result.completed) == (5, 0) and llm.calls == []


def test_resume_refuses_another_configuration_but_allows_transport_changes(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 3)
    out = tmp_path / "run"
    run(data, out, 3, prefilter_k=8)
    with pytest.raises(RunError) as info:
        run(data, out, 3, prefilter_k=5)
    assert "another configuration (prefilter_k 8 -> 5)" in str(info.value)
    with pytest.raises(RunError, match="limit None -> 2"):
        run(data, out, 3, prefilter_k=8, limit=2)
    data.write_text(data.read_text() + '{"id": "x", "question": "new?"}\n')
    with pytest.raises(RunError, match="dataset sha256"):
        run(data, out, 3, prefilter_k=8)
    data.write_text("\n".join(data.read_text().splitlines()[:3]) + "\n")
    # concurrency, timeouts and endpoints do not change answers
    result = run(data, out, 3, prefilter_k=8, concurrency=7, llm_timeout=5, base_url="http://elsewhere:1/v1")
    assert result.completed == 0


def test_unknown_ids_in_the_predictions_file_are_refused(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 2)
    out = tmp_path / "run"
    run(data, out, 2)
    with (out / "predictions.jsonl").open("a") as f:
        f.write('{"id": "zzz"}\n')
    with pytest.raises(RunError, match="id 'zzz' is not among the questions"):
        run(data, out, 2)


def test_a_config_error_stops_the_run_at_once(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 4)
    with pytest.raises(ConfigError, match="prompt directory"):
        run(data, tmp_path / "run", 4, prompt_dir=tmp_path / "missing")
    assert (tmp_path / "run/predictions.jsonl").read_text() == ""


def test_unknown_llm_fails_before_the_run_directory_is_made(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 2)
    with pytest.raises(ConfigError, match="unknown LLM backend 'nope'"):
        run_eval(data, tmp_path / "run", llm="nope:model", source=scripted_source(2))
    assert not (tmp_path / "run").exists()


def test_an_unreachable_backend_aborts_then_resumes(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 8)

    def down(request):
        raise LLMUnavailable("cannot reach LLM server at http://127.0.0.1:9/v1: connection refused")

    with pytest.raises(RunAborted, match="3 questions in a row failed: cannot reach LLM server"):
        run(data, tmp_path / "run", 8, llm=scripted_llm(plan=down), concurrency=1)
    assert len(lines(tmp_path / "run/predictions.jsonl")) == 3
    result = run(data, tmp_path / "run", 8, concurrency=3)
    assert (result.already_done, result.completed, result.errors) == (0, 8, 0)
    assert len(lines(tmp_path / "run/predictions.jsonl")) == 8


def test_rerunning_a_finished_configuration_costs_no_llm_call(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 3)
    cache = tmp_path / "cache"
    first = scripted_llm()
    run(data, tmp_path / "a", 3, llm=first, use_cache=True, cache_dir=cache)
    assert first.calls
    again = scripted_llm()
    run(data, tmp_path / "b", 3, llm=again, use_cache=True, cache_dir=cache)
    assert again.calls == []
    a = {r["id"]: r for r in lines(tmp_path / "a/predictions.jsonl")}
    b = {r["id"]: r for r in lines(tmp_path / "b/predictions.jsonl")}
    assert {k: v["answer"]["synthesis"] for k, v in a.items()} == {k: v["answer"]["synthesis"] for k, v in b.items()}
    assert all(r["classification"]["cached"] for r in b.values())


def test_limit_and_seed_pick_the_same_questions(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 10)
    run(data, tmp_path / "a", 10, limit=4, seed=3)
    run(data, tmp_path / "b", 10, limit=4, seed=3)
    ids = lambda d: sorted(r["id"] for r in lines(tmp_path / d / "predictions.jsonl"))  # noqa: E731
    assert ids("a") == ids("b") and len(ids("a")) == 4


def test_no_evidence_answers_are_maybe_without_a_call(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 1)
    llm = scripted_llm(screen='{"relevant": false, "score": 0, "reason": "off topic"}')
    run(data, tmp_path / "run", 1, llm=llm)
    (record,) = lines(tmp_path / "run/predictions.jsonl")
    assert record["answer"]["no_evidence"] and record["predicted_label"] == "maybe"
    assert record["classification"]["method"] == "no_evidence" and "classify" not in llm.steps()


@pytest.mark.parametrize(
    "reply, label",
    [
        ('{"answer": "no"}', "no"),
        ('```json\n{"answer": "Maybe"}\n```', "maybe"),
        ("Yes, it does.", "yes"),
        ("unclear", None),
    ],
)
def test_read_label(reply: str, label: str | None) -> None:
    assert read_label(reply) == label


def test_secrets_never_reach_the_run_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-123")
    monkeypatch.setenv("NCBI_API_KEY", "ncbi-SECRET-456")

    def leaky(request):
        raise LLMUnavailable("rejected key sk-test-SECRET-123")

    data = questions_jsonl(tmp_path / "qs.jsonl", 2)
    run(data, tmp_path / "run", 2, llm=scripted_llm(plan=leaky))
    for name in ("config.json", "predictions.jsonl", "sessions.jsonl"):
        text = (tmp_path / "run" / name).read_text()
        assert "SECRET" not in text, name
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["settings"]["openai_api_key_set"] is True


def test_a_second_writer_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 2)
    out = tmp_path / "run"
    llm = scripted_llm()
    inner = llm.complete
    seen: list[str] = []

    async def meanwhile(request, on_token=None):
        if request.step == "plan" and not seen:
            seen.append("tried")
            # while this run holds the directory, a second run on it must not start
            with pytest.raises(RunError, match="another clinfo eval run is writing to"):
                await asyncio.to_thread(run, data, out, 2)
            seen.append("refused")
        return await inner(request, on_token)

    llm.complete = meanwhile  # type: ignore[method-assign]
    run(data, out, 2, llm=llm)
    assert seen == ["tried", "refused"] and len(lines(out / "predictions.jsonl")) == 2


def test_extractive_answers_are_classified_from_their_quoted_conclusions(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 1)
    llm = scripted_llm()
    run(data, tmp_path / "run", 1, llm=llm, synthesis_mode="extractive")
    (classify,) = [c for c in llm.calls if c.step == "classify"]
    prompt = classify.messages[-1]["content"]
    # the quotes themselves (the synthesis), not the fixed TL;DR about how many were quoted
    assert "Sentences quoted from the" in prompt and "weigh the quoted sentences" not in prompt


def test_config_records_the_settings_a_preset_resolved(tmp_path: Path) -> None:
    data = questions_jsonl(tmp_path / "qs.jsonl", 1)
    run(data, tmp_path / "run", 1, preset="small", prefilter_k=3)
    settings = json.loads((tmp_path / "run/config.json").read_text())["settings"]
    assert settings["synthesis_mode"] == "extractive" and settings["planner"] == "keywords"
    assert settings["prefilter_k"] == 3  # what the user set wins over the preset
