"""A loopback OpenAI-compatible chat server with fixed latency, for benchmarks and runner tests.

It speaks the real wire protocol (``POST /v1/chat/completions``, JSON or SSE streaming with
usage, ``GET /v1/models``) so our OpenAI-compatible backend runs unchanged; only the
text is canned, derived from the prompt so that queries hit and citations are in range.
It is a stand-in for latency, not for model quality: the one real-model path is the llama.cpp
server in ``tests/support/llama_server.py``. ``reply=`` swaps the canned text for a script's own,
``reply(step, prompt) -> str`` (scripts/screenshot_evidence.py scripts stances and claims so).

    with OpenAIServer(latency=0.5, max_concurrency=32) as server:
        ClinfoAI(llm="openai:bench", base_url=server.base_url, ...)
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.loopback import ThreadedServer

_WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")
_STOP = {
    "evidence",
    "known",
    "does",
    "with",
    "what",
    "which",
    "that",
    "this",
    "from",
    "have",
    "than",
    "there",
    "their",
    "into",
    "about",
    "among",
    "after",
    "during",
    "improve",
    "effect",
    "effects",
    "patients",
    "adults",
}


def _question(prompt: str) -> str:
    match = re.search(r"Question:\s*(.+)", prompt)
    return match.group(1).strip() if match else prompt[:200]


def _keywords(text: str, n: int = 3) -> list[str]:
    seen: list[str] = []
    for w in _WORD.findall(text):
        lw = w.lower()
        if lw not in _STOP and lw not in seen:
            seen.append(lw)
    return seen[:n]


def canned_reply(step: str, prompt: str) -> str:
    question = _question(prompt)
    words = _keywords(question)
    if step == "plan":
        pair = words[:2]
        queries = [
            " AND ".join(f"{w}[tiab]" for w in pair),
            "(" + " OR ".join(f"{w}[tiab]" for w in pair) + ")",
            f'"{" ".join(pair)}"[tiab]',
        ]
        return json.dumps({"queries": [q for q in queries if q] or [question]})
    if step == "broaden":
        return json.dumps({"query": " OR ".join(f"{w}[tiab]" for w in words) or question})
    if step == "screen":
        article = prompt.split("Abstract:", 1)[-1].lower()
        hits = sum(w in article for w in words)
        relevant = hits >= max(1, len(words) // 2)
        return json.dumps(
            {
                "relevant": relevant,
                "score": min(10, 3 + 2 * hits),
                "reason": f"mentions {hits} of the question's key terms",
                "summary": "The study reports findings on the question's topic." if relevant else "",
                "design": "randomised controlled trial",
                "sample_size": "120",
                "population": "adults",
                "risk_of_bias": "moderate",
            }
        )
    if step == "classify":
        return json.dumps({"answer": "yes"})
    if step == "tldr":
        return "Limited evidence suggests a modest benefit; larger trials are needed."
    count = int(m.group(1)) if (m := re.search(r"Evidence \((\d+) articles", prompt)) else 1
    cites = ", ".join(str(i) for i in range(1, min(count, 3) + 1))
    return f"The retrieved studies suggest a modest effect [{cites}]. Evidence is limited and heterogeneous [1]."


def detect_step(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name")
    if name:
        return str(name)
    prompt = body["messages"][-1]["content"]
    for marker, step in (
        ("different PubMed queries", "plan"),
        ("could not be used", "plan"),
        ("returned 0 results", "broaden"),
        ("Does this article help", "screen"),
        ("Write a synthesis", "synthesize"),  # before "TL;DR": the synthesis prompt names it too
        ("TL;DR", "tldr"),
        ("yes, no or maybe", "classify"),
    ):
        if marker in prompt:
            return step
    return "synthesize"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _note(self) -> None:
        # what a test of key handling needs: every request that arrived, and its Authorization header
        with self.server.owner._lock:
            self.server.owner.seen.append((self.command, self.path, self.headers.get("Authorization")))

    def do_GET(self) -> None:
        self._note()
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "bench", "object": "model", "owned_by": "clinfo"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        self._note()
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": "not found"}})
            return
        owner = self.server.owner
        with owner._slots:  # the server's concurrency limit: extra requests queue here
            with owner._lock:
                owner.requests += 1
                owner.in_flight += 1
                owner.peak_in_flight = max(owner.peak_in_flight, owner.in_flight)
            try:
                time.sleep(owner.latency)
                step = detect_step(body)
                owner.steps.append(step)
                text = (owner.reply or canned_reply)(step, body["messages"][-1]["content"])
                usage = {
                    "prompt_tokens": sum(len(m["content"]) // 4 for m in body["messages"]),
                    "completion_tokens": len(text) // 4,
                }
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                if body.get("stream"):
                    self._stream(body, text, usage)
                else:
                    self._send(
                        200,
                        {
                            "id": "chatcmpl-bench",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": body.get("model", "bench"),
                            "choices": [
                                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                            ],
                            "usage": usage,
                        },
                    )
            finally:
                with owner._lock:
                    owner.in_flight -= 1

    def _stream(self, body: dict[str, Any], text: str, usage: dict[str, int]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        base = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "bench"),
        }
        pieces = [text[i : i + 12] for i in range(0, len(text), 12)]
        for piece in pieces:
            chunk = dict(base, choices=[{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        self.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(f"data: {json.dumps(dict(base, choices=[], usage=usage))}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the benchmark opens many connections at once
    owner: OpenAIServer


class OpenAIServer(ThreadedServer):
    def __init__(
        self, latency: float = 0.0, max_concurrency: int = 32, reply: Callable[[str, str], str] | None = None
    ) -> None:
        self.latency = latency
        self.reply = reply  # (step, prompt) -> text; None: canned_reply
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.steps: list[str] = []
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Authorization) of every request

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> OpenAIServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._serve(httpd, "openai-bench")
        return self
