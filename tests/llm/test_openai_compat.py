"""The OpenAI-compatible backend end to end against a real llama.cpp server on loopback.

The model is a 135M-parameter one: tests assert on shape (non-empty, parses, validates,
counts add up, which calls reached the server), never on its wording. A few failure paths a
llama.cpp server cannot produce (404 model, 429) use a scripted loopback HTTP stub.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from clinfo.cache import Cache
from clinfo.errors import ConfigError, LLMError, LLMUnavailable
from clinfo.llm import CachedLLM, LLMRequest, create_llm
from clinfo.llm.openai_compat import OpenAICompatLLM
from clinfo.settings import DEFAULT_VLLM_BASE_URL, Settings
from tests.support.llama_server import LlamaServer

# maxLength bounds the reason so the grammar closes the object well inside max_tokens
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"relevant": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 80}},
    "required": ["relevant", "reason"],
    "additionalProperties": False,
}
SECRET = "sk-test-DO-NOT-LEAK-0123456789abcdef"


def ask(text: str, **kw: Any) -> LLMRequest:
    kw.setdefault("max_tokens", 24)
    return LLMRequest(messages=({"role": "user", "content": text},), **kw)


def screening(**kw: Any) -> LLMRequest:
    kw.setdefault("max_tokens", 64)
    return ask(
        "Question: does aspirin prevent stroke? Abstract: aspirin reduced stroke in a trial. "
        "Is the abstract relevant? Answer in JSON with keys relevant and reason.",
        schema=SCHEMA,
        schema_name="screen",
        **kw,
    )


def assert_valid(text: str) -> dict[str, Any]:
    data = json.loads(text)
    assert isinstance(data, dict) and set(data) == {"relevant", "reason"}
    assert isinstance(data["relevant"], bool)
    assert isinstance(data["reason"], str) and len(data["reason"]) <= 80
    return data


def backend(server: LlamaServer, **settings: Any) -> OpenAICompatLLM:
    settings.setdefault("llm_retries", 0)
    llm = create_llm(f"openai:{server.model}", Settings(base_url=server.base_url, **settings))
    assert isinstance(llm, OpenAICompatLLM)
    return llm


async def test_plain_completion_has_text_and_token_counts(llama_server: LlamaServer) -> None:
    llm = backend(llama_server)
    try:
        c = await llm.complete(ask("Name one use of aspirin."))
    finally:
        await llm.aclose()
    assert c.text.strip()
    assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= 24
    assert "tokens_estimated" not in c.extra  # llama.cpp reports usage on plain calls
    assert c.model == llama_server.model and not c.cached
    assert c.cost_usd is None  # openai: with a model the price table does not know


async def test_streaming_chunks_add_up_to_the_final_text(llama_server: LlamaServer) -> None:
    llm = backend(llama_server)
    chunks: list[str] = []
    try:
        c = await llm.complete(ask("Write a sentence about the heart."), on_token=chunks.append)
    finally:
        await llm.aclose()
    assert len(chunks) > 1
    assert "".join(chunks) == c.text and c.text.strip()
    # llama.cpp sends no usage in streams (it ignores stream_options): counts are estimated
    assert c.completion_tokens > 0 and c.prompt_tokens > 0
    assert c.extra.get("tokens_estimated") is True


async def test_auto_structured_output_falls_back_to_json_object_once(llama_server: LlamaServer) -> None:
    llm = backend(llama_server)  # structured_output defaults to "auto"
    before = len(llama_server.requests())
    try:
        first = await asyncio.gather(*(llm.complete(screening()) for _ in range(3)))
        again = await llm.complete(screening())
    finally:
        await llm.aclose()
    for c in (*first, again):
        assert_valid(c.text)
        assert c.extra["structured_output"] == "json_object"
    assert llm.structured_mode == "json_object"
    # llama-cpp-python's server rejects response_format json_schema (with HTTP 500); the three
    # concurrent first calls share one probe, so exactly one request was refused
    statuses = llama_server.requests()[before:]
    assert sorted(statuses) == [200, 200, 200, 200, 500]
    assert statuses[0] == 500


async def test_structured_output_streams_valid_json(llama_server: LlamaServer) -> None:
    llm = backend(llama_server, structured_output="json_object")
    chunks: list[str] = []
    try:
        c = await llm.complete(screening(), on_token=chunks.append)
    finally:
        await llm.aclose()
    assert "".join(chunks) == c.text
    assert_valid(c.text)


async def test_explicit_json_schema_mode_reports_the_server_refusal(llama_server: LlamaServer) -> None:
    llm = backend(llama_server, structured_output="json_schema")
    try:
        with pytest.raises(LLMError) as info:
            await llm.complete(screening())
    finally:
        await llm.aclose()
    message = str(info.value)
    assert not isinstance(info.value, LLMUnavailable)
    assert "HTTP 500" in message and llama_server.base_url in message and "\n" not in message


async def test_none_mode_sends_no_response_format(llama_server: LlamaServer) -> None:
    llm = backend(llama_server, structured_output="none")
    before = len(llama_server.requests())
    try:
        c = await llm.complete(screening(max_tokens=8))
    finally:
        await llm.aclose()
    assert c.extra["structured_output"] == "none"
    assert llama_server.requests()[before:] == [200]


async def test_unreachable_server_is_llm_unavailable_with_the_url() -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    llm = create_llm("openai:any-model", Settings(base_url=url, llm_retries=0))
    try:
        with pytest.raises(LLMUnavailable) as info:
            await llm.complete(ask("hi"))
        with pytest.raises(LLMUnavailable):  # the structured probe maps it the same way
            await llm.complete(screening())
    finally:
        await llm.aclose()
    assert str(info.value).startswith(f"cannot reach LLM server at {url}")
    assert "\n" not in str(info.value)


def test_openai_without_key_or_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        create_llm("openai:gpt-4o-mini", Settings())
    # a key alone, or a base URL alone (a local server), is enough
    real = create_llm("openai:gpt-4o-mini", Settings(openai_api_key=SECRET))
    assert real.identity() == {"backend": "openai", "model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1"}
    assert SECRET not in repr(real) and SECRET not in json.dumps(real.identity())
    loopback = create_llm("openai:x", Settings(base_url="http://127.0.0.1:1/v1"))
    assert loopback.identity()["base_url"] == "http://127.0.0.1:1/v1"


def test_openai_base_url_env_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:2/v1")
    assert create_llm("openai:m", Settings()).identity()["base_url"] == "http://127.0.0.1:2/v1"
    # CLINFO_BASE_URL (settings.base_url) wins over OPENAI_BASE_URL
    monkeypatch.setenv("CLINFO_BASE_URL", "http://127.0.0.1:3/v1")
    assert create_llm("openai:m", Settings()).identity()["base_url"] == "http://127.0.0.1:3/v1"


async def test_vllm_backend_is_free_and_defaults_to_local_server(llama_server: LlamaServer) -> None:
    assert create_llm("vllm:m", Settings()).identity()["base_url"] == DEFAULT_VLLM_BASE_URL.rstrip("/")
    llm = create_llm(f"vllm:{llama_server.model}", Settings(base_url=llama_server.base_url, llm_retries=0))
    try:
        c = await llm.complete(ask("Say hello.", max_tokens=8))
    finally:
        await llm.aclose()
    assert llm.identity()["backend"] == "vllm"
    assert c.cost_usd == 0.0 and c.text.strip()


async def test_cached_llm_serves_repeats_without_the_server_and_stores_no_key(
    llama_server: LlamaServer, tmp_path: Any
) -> None:
    # a key is sent (the keyless server ignores it): it must reach neither cache nor identity
    llm = backend(llama_server, openai_api_key=SECRET)
    cache = Cache(tmp_path / "cache.sqlite3")
    cached = CachedLLM(llm, cache)
    before = len(llama_server.requests())
    try:
        first = await cached.complete(screening())
        tokens: list[str] = []
        second = await cached.complete(screening(), on_token=tokens.append)
    finally:
        await cached.aclose()
        cache.close()
    assert not first.cached and second.cached
    assert second.text == first.text and tokens == [first.text]
    assert_valid(second.text)
    # the probe's refused json_schema call and one real answer; nothing for the repeat
    assert llama_server.requests()[before:] == [500, 200]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("cache.sqlite3"))
    assert json.dumps(first.text)[1:-1].encode() in raw  # the file really holds the answer...
    assert SECRET.encode() not in raw  # ...and never the key


def test_backend_survives_a_new_event_loop_per_call(llama_server: LlamaServer) -> None:
    # a sync facade may call asyncio.run() once per question with the same backend object
    llm = backend(llama_server)
    texts = [asyncio.run(llm.complete(ask("Say hi.", max_tokens=4))).text for _ in range(2)]
    asyncio.run(llm.aclose())
    assert all(t.strip() for t in texts)


def test_wrong_api_key_is_llm_unavailable_without_the_key() -> None:
    with LlamaServer(api_key="right-key-123456", n_ctx=512) as server:

        async def go() -> None:
            good = backend(server, openai_api_key="right-key-123456")
            bad = backend(server, openai_api_key=SECRET)
            try:
                assert (await good.complete(ask("hi", max_tokens=4))).text is not None
                for request in (ask("hi", max_tokens=4), screening()):
                    with pytest.raises(LLMUnavailable) as info:
                        await bad.complete(request)
                    message = str(info.value)
                    assert message == f"LLM server at {server.base_url} rejected the API key (HTTP 401)"
                    assert info.value.__cause__ is None and info.value.__suppress_context__
            finally:
                await good.aclose()
                await bad.aclose()

        asyncio.run(go())


# --- failures a llama.cpp server cannot produce: a scripted stub on loopback


class Stub:
    """Answers every POST with the next scripted (status, body) and records the request bodies.
    A list body is sent as a server-sent event stream; status 0 holds the request unanswered."""

    def __init__(self, script: list[tuple[int, Any]]) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []
        self.release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                stub.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status, body = stub.script.pop(0) if stub.script else (500, {"error": {"message": "script ended"}})
                if status == 0:  # a server that never answers in time
                    stub.release.wait(body)
                    return
                sse = isinstance(body, list)
                data = (
                    "".join(f"data: {json.dumps(c)}\n\n" for c in body) + "data: [DONE]\n\n"
                    if sse
                    else json.dumps(body)
                )
                raw = data.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream" if sse else "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Any]:
    stubs: list[Stub] = []

    def make(*script: tuple[int, Any]) -> Stub:
        stubs.append(Stub(list(script)))
        return stubs[-1]

    yield make
    for s in stubs:
        s.close()


def chunk(content: str | None = None, finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    choices = [] if usage else [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}]
    out: dict[str, Any] = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": choices,
    }
    if usage:
        out["usage"] = usage
    return out


def reply(text: str, usage: dict[str, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }  # fmt: skip
    if usage:
        out["usage"] = usage
    return out


async def run_stub(url: str, request: LLMRequest, on_token: Any = None, **settings: Any) -> Any:
    settings.setdefault("llm_retries", 0)
    llm = create_llm("openai:gpt-4o-mini", Settings(base_url=url, **settings))
    try:
        return await llm.complete(request, on_token)
    finally:
        await llm.aclose()


async def test_status_errors_map_to_typed_one_line_errors(stub: Any) -> None:
    s = stub(
        (404, {"error": {"message": "The model `gpt-4o-mini` does not exist", "code": "model_not_found"}}),
        (404, {"detail": "Not Found"}),
        (429, {"error": {"message": "Rate limit reached"}}),
        (500, {"error": {"message": f"boom\nTraceback line with {SECRET}"}}),
    )
    with pytest.raises(LLMError, match=r"^model 'gpt-4o-mini' not found at http://127\.0\.0\.1:\d+/v1$"):
        await run_stub(s.url, ask("hi"))
    with pytest.raises(LLMError, match="no chat completions endpoint"):
        await run_stub(s.url, ask("hi"))
    with pytest.raises(LLMUnavailable, match="rate limiting"):
        await run_stub(s.url, ask("hi"))
    with pytest.raises(LLMError) as info:
        await run_stub(s.url, ask("hi"), openai_api_key=SECRET)
    assert "HTTP 500" in str(info.value) and "\n" not in str(info.value) and SECRET not in str(info.value)


async def test_a_server_that_does_not_answer_in_time_is_unavailable(stub: Any) -> None:
    s = stub((0, 30))
    with pytest.raises(LLMUnavailable, match=r"^cannot reach LLM server at .*: no answer within 0.2s$"):
        await run_stub(s.url, ask("hi"), llm_timeout=0.2)


async def test_transient_failures_are_retried(stub: Any) -> None:
    s = stub((503, {"error": {"message": "busy"}}), (200, reply("ok", {"prompt_tokens": 3, "completion_tokens": 1})))
    c = await run_stub(s.url, ask("hi"), llm_retries=1)
    assert c.text == "ok" and len(s.bodies) == 2
    # gpt-4o-mini is in the price table: 3 input and 1 output token
    assert c.cost_usd == pytest.approx((3 * 0.15 + 1 * 0.60) / 1e6)
    # a streamed call is retried the same way, before any token reached the caller
    s = stub((429, {"error": {"message": "slow down"}}), (200, [chunk("ok"), chunk(finish="stop")]))
    tokens: list[str] = []
    c = await run_stub(s.url, ask("hi"), tokens.append, llm_retries=1)
    assert tokens == ["ok"] and c.text == "ok" and len(s.bodies) == 2 and s.bodies[1]["stream"] is True


async def test_an_error_event_inside_a_stream_is_a_typed_error(stub: Any) -> None:
    s = stub((200, [chunk("Hel"), {"error": {"message": f"overloaded, key {SECRET}"}}]))
    tokens: list[str] = []
    with pytest.raises(LLMError, match="overloaded") as info:
        await run_stub(s.url, ask("hi"), tokens.append, openai_api_key=SECRET)
    assert tokens == ["Hel"] and SECRET not in str(info.value) and "\n" not in str(info.value)


async def test_a_reply_that_is_not_json_is_a_typed_error(stub: Any) -> None:
    s = stub((200, "<html>proxy login</html>"))
    with pytest.raises(LLMError, match="something other than a JSON object"):
        await run_stub(s.url, ask("hi"))


async def test_auto_falls_back_to_plain_text_when_every_format_is_refused(stub: Any) -> None:
    refused = (400, {"error": {"message": "response_format is not supported"}})
    s = stub(refused, refused, (200, reply('{"relevant": true, "reason": "x"}')))
    c = await run_stub(s.url, screening())
    assert [b.get("response_format", {}).get("type") for b in s.bodies] == ["json_schema", "json_object", None]
    assert s.bodies[0]["response_format"]["json_schema"]["strict"] is True
    assert s.bodies[1]["response_format"]["schema"] == SCHEMA
    assert c.extra["structured_output"] == "none"
    assert c.extra["tokens_estimated"] is True  # the stub reported no usage


async def test_auto_does_not_settle_on_a_dialect_when_every_attempt_fails(stub: Any) -> None:
    too_long = (400, {"error": {"message": "context length exceeded"}})
    s = stub(too_long, too_long, too_long, (200, reply("{}")))
    llm = create_llm("openai:gpt-4o-mini", Settings(base_url=s.url, llm_retries=0))
    try:
        with pytest.raises(LLMError, match="context length exceeded"):
            await llm.complete(screening())
        assert llm.structured_mode is None
        await llm.complete(screening())  # the next call probes again, starting with json_schema
        assert s.bodies[-1]["response_format"]["type"] == "json_schema"
        assert llm.structured_mode == "json_schema"
    finally:
        await llm.aclose()


async def test_stream_uses_reported_usage_and_drops_refused_stream_options(stub: Any) -> None:
    stream = [
        chunk("Hel"),
        chunk("lo"),
        chunk(finish="stop"),
        chunk(usage={"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}),
    ]
    s = stub((200, stream), (400, {"error": {"message": "Unknown field stream_options"}}), (200, stream[:3]))
    llm = create_llm("openai:gpt-4o-mini", Settings(base_url=s.url, llm_retries=0))
    try:
        tokens: list[str] = []
        c = await llm.complete(ask("hi"), on_token=tokens.append)
        assert tokens == ["Hel", "lo"] and c.text == "Hello"
        assert (c.prompt_tokens, c.completion_tokens) == (7, 2) and "tokens_estimated" not in c.extra
        assert s.bodies[0]["stream_options"] == {"include_usage": True}
        c = await llm.complete(ask("hi"), on_token=tokens.append)
        assert c.text == "Hello" and c.extra["tokens_estimated"] is True and c.completion_tokens == 2
        assert "stream_options" not in s.bodies[-1]
    finally:
        await llm.aclose()
