"""OpenAI and every OpenAI-compatible server (vLLM, llama.cpp, Ollama): the chat completions endpoint over httpx.

Two specs share this module: ``openai:<model>`` (api.openai.com unless a base URL is set) and
``vllm:<model>`` (a vLLM server, ``DEFAULT_VLLM_BASE_URL`` unless a base URL is set). This module
chooses the structured output dialect the server speaks, streams, counts tokens and cost, and turns
failures into clinfo's typed errors without ever carrying the API key.

The one endpoint clinfo calls is spoken directly with httpx (which the E-utilities source uses
too) rather than through the ``openai`` SDK: importing the SDK builds some two thousand pydantic
models (0.6 s of CPU), paid before the first step of every ``clinfo ask`` could start. Transient
failures (408, 409, 429, 5xx, timeouts, connection errors) are retried by tenacity with the SDK's
policy: the server's ``Retry-After`` when it gives one (up to 60 s), else 0.5 s doubling to 8 s
with jitter; ``x-should-retry`` overrides the status.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from clinfo.errors import ConfigError, LLMError, LLMUnavailable, one_line
from clinfo.llm.base import Completion, LLMRequest, TokenCallback
from clinfo.llm.pricing import cost_usd
from clinfo.redact import MIN_SECRET_LEN, redact
from clinfo.settings import DEFAULT_VLLM_BASE_URL
from clinfo.urls import scrub_url, url_secrets

if TYPE_CHECKING:
    from clinfo.settings import Settings

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Sent when no key is set: some servers expect an Authorization header whatever its value, and an
# obviously fake value can never be mistaken for a leaked credential.
PLACEHOLDER_KEY = "not-needed"
# Order in which "auto" tries the dialects: OpenAI/vLLM strict schema, then llama-cpp-python's
# {"type": "json_object", "schema": ...}, then plain text (the caller parses tolerantly).
AUTO_ORDER = ("json_schema", "json_object", "none")
_RETRYABLE = {408, 409, 429}
MAX_RETRY_AFTER = 60.0  # a server asking for a longer pause is answered with an error instead
_BACKOFF_START, _BACKOFF_MAX = 0.5, 8.0


class _StatusError(Exception):
    """The server answered with an error status (or an error event inside a stream)."""

    def __init__(self, status_code: int, body: Any, headers: httpx.Headers | None = None) -> None:
        # OpenAI's error bodies wrap the detail in {"error": {...}}; others send {"detail": ...} or text
        self.body = body.get("error", body) if isinstance(body, dict) else body
        self.status_code = status_code
        self.code = self.body.get("code") if isinstance(self.body, dict) else None
        self.headers = headers if headers is not None else httpx.Headers()
        super().__init__(f"HTTP {status_code}")


class _ConnectionFailed(Exception):
    """The server could not be reached, or the connection broke before an answer came."""

    def __init__(self, cause: BaseException, timeout: bool = False) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause = cause
        self.timeout = timeout


def _should_retry(exc: BaseException) -> bool:
    if isinstance(exc, _ConnectionFailed):
        return True
    if not isinstance(exc, _StatusError):
        return False
    told = exc.headers.get("x-should-retry", "").lower()
    if told in ("true", "false"):
        return told == "true"
    return exc.status_code in _RETRYABLE or exc.status_code >= 500


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms`` or ``retry-after`` in seconds), if reasonable."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers.get(name, "")) * scale
        except ValueError:
            continue
        if 0 < seconds <= MAX_RETRY_AFTER:
            return seconds
    return None


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    asked = _retry_after(exc.headers) if isinstance(exc, _StatusError) else None
    if asked is not None:
        return asked
    backoff = min(_BACKOFF_START * 2 ** (state.attempt_number - 1), _BACKOFF_MAX)
    return backoff * (1 - 0.25 * random.random())


def _estimate_tokens(text: str) -> int:
    # about four characters per token for English with BPE vocabularies; only used when a
    # server reports no usage, and then flagged as an estimate
    return math.ceil(len(text) / 4) if text else 0


class OpenAICompatLLM:
    """One OpenAI-compatible endpoint and model. Safe to share between concurrent tasks."""

    def __init__(
        self,
        *,
        backend: str,
        model: str,
        base_url: str,
        api_key: str | None,
        timeout: float,
        retries: int,
        structured_output: str = "auto",
        free: bool = False,
    ) -> None:
        self.backend = backend
        self.model = model
        self.spec = f"{backend}:{model}"
        self.base_url = base_url.rstrip("/")
        self.shown_url = scrub_url(self.base_url)  # for messages and reprs: no user:password@, no ?api_key=
        self._api_key = api_key or PLACEHOLDER_KEY
        # masked in error text: a server message may echo the key it was sent, or its URL's
        self._secrets = [api_key] if api_key else []
        self._secrets += [s for s in url_secrets(self.base_url) if len(s) >= MIN_SECRET_LEN]
        self._timeout = timeout
        self._retries = retries
        self._free = free
        # "auto" is settled by the first structured call that succeeds; None means not yet
        self._mode: str | None = None if structured_output == "auto" else structured_output
        self._stream_usage = True  # ask for usage in streams until a server rejects the option
        # A connection pool belongs to the event loop it was used on; a sync facade that
        # calls asyncio.run() per question would otherwise reuse sockets of a closed loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None
        self._probe_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatLLM(spec={self.spec!r}, base_url={self.shown_url!r})"

    def identity(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url}

    @property
    def structured_mode(self) -> str | None:
        """The structured-output dialect in use (None while "auto" has not found one yet)."""
        return self._mode

    # --- clients

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout),
                headers={"Authorization": f"Bearer {self._api_key}", "User-Agent": "clinfo"},
            )
            self._probe_lock = asyncio.Lock()
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is not None and not self._loop.is_closed():
            try:
                await client.aclose()
            except RuntimeError:  # closed from another loop: its sockets die with that loop
                pass
        self._loop = None

    # --- the wire: one POST to /chat/completions, retried when the failure is transient

    async def _post(self, params: dict[str, Any], retries: int) -> httpx.Response:
        """The response to ``params`` with its status checked; a streamed one is returned unread (close it)."""
        url = f"{self.base_url}/chat/completions"
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retries + 1), wait=_wait, retry=retry_if_exception(_should_retry), reraise=True
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(url, params)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _send(self, url: str, params: dict[str, Any]) -> httpx.Response:
        client = self._http()
        try:
            request = client.build_request("POST", url, json=params)
            response = await client.send(request, stream=bool(params.get("stream")))
        except httpx.TimeoutException as exc:
            raise _ConnectionFailed(exc, timeout=True) from None
        except httpx.TransportError as exc:
            raise _ConnectionFailed(exc) from None
        if response.status_code >= 400:
            try:
                raw = await response.aread()
            except httpx.HTTPError:
                raw = b""
            finally:
                await response.aclose()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            raise _StatusError(response.status_code, body, response.headers)
        return response

    # --- requests

    def _params(self, request: LLMRequest, mode: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in request.messages],
            "temperature": request.temperature,
        }
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        if request.schema is not None:
            if mode == "json_schema":
                name = re.sub(r"[^A-Za-z0-9_-]", "_", request.schema_name or "output")[:64]
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": request.schema, "strict": True},
                }
            elif mode == "json_object":
                params["response_format"] = {"type": "json_object", "schema": request.schema}
        return params

    async def complete(self, request: LLMRequest, on_token: TokenCallback | None = None) -> Completion:
        self._http()
        if request.schema is None:
            return await self._guarded(request, "none", on_token)
        if self._mode is None:
            assert self._probe_lock is not None
            # one probe at a time, so N concurrent first calls cost the fallback once, not N times
            async with self._probe_lock:
                if self._mode is None:
                    return await self._probe(request, on_token)
        return await self._guarded(request, self._mode, on_token)

    async def _probe(self, request: LLMRequest, on_token: TokenCallback | None) -> Completion:
        rejected: _StatusError | None = None
        streamed = False

        def relay(piece: str) -> None:
            nonlocal streamed
            streamed = True
            assert on_token is not None
            on_token(piece)

        for mode in AUTO_ORDER:
            try:
                # the probe must not wait through the backoff on a rejection that llama.cpp
                # reports as HTTP 500: a try without retries, transient failures retried after
                completion = await self._call(request, mode, relay if on_token else None, retries=0)
            except _StatusError as exc:
                if _rejects_format(exc) and not streamed:
                    rejected = exc
                    continue
                if (exc.status_code in _RETRYABLE or exc.status_code >= 500) and not streamed:
                    completion = await self._guarded(request, mode, on_token)
                else:
                    self._fail(exc)
            except _ConnectionFailed as exc:
                if streamed:  # a retry would send the caller the same opening twice
                    self._fail(exc)
                completion = await self._guarded(request, mode, on_token)
            # remembered only on success: a request that fails in every dialect (say, too long
            # for the context) says nothing about which dialect the server speaks
            self._mode = mode
            return completion
        assert rejected is not None
        self._fail(rejected)

    async def _guarded(self, request: LLMRequest, mode: str, on_token: TokenCallback | None) -> Completion:
        try:
            return await self._call(request, mode, on_token, retries=self._retries)
        except (_StatusError, _ConnectionFailed) as exc:
            self._fail(exc)

    async def _call(self, request: LLMRequest, mode: str, on_token: TokenCallback | None, retries: int) -> Completion:
        params = self._params(request, mode)
        if on_token is not None:
            completion = await self._stream(params, on_token, retries)
        else:
            response = await self._post(params, retries)
            data = self._json(response.content)
            choices = data.get("choices") or []
            choice = choices[0] if choices and isinstance(choices[0], dict) else None
            message = (choice or {}).get("message") or {}
            completion = Completion(text=message.get("content") or "", model=data.get("model") or self.model)
            completion.extra["finish_reason"] = choice.get("finish_reason") if choice else None
            if not self._usage(completion, data.get("usage")):
                self._estimate(completion, params, None)
        if request.schema is not None:
            completion.extra["structured_output"] = mode
        completion.cost_usd = cost_usd(
            completion.model or self.model, completion.prompt_tokens, completion.completion_tokens, free=self._free
        )
        return completion

    async def _stream(self, params: dict[str, Any], on_token: TokenCallback, retries: int) -> Completion:
        try:
            extra = {"stream_options": {"include_usage": True}} if self._stream_usage else {}
            response = await self._post({**params, "stream": True, **extra}, retries)
        except _StatusError as exc:
            if not (self._stream_usage and exc.status_code in (400, 422) and "stream_options" in _body_text(exc)):
                raise
            self._stream_usage = False
            response = await self._post({**params, "stream": True}, retries)
        parts: list[str] = []
        chunks = 0
        usage = None
        model = ""
        finish = None
        try:
            async for chunk in self._events(response):
                model = chunk.get("model") or model
                if chunk.get("usage") is not None:
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        parts.append(piece)
                        chunks += 1
                        on_token(piece)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        finally:
            await response.aclose()
        completion = Completion(text="".join(parts), model=model or self.model)
        completion.extra["finish_reason"] = finish
        if not self._usage(completion, usage):
            self._estimate(completion, params, chunks)
        return completion

    async def _events(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        """The JSON objects of a server-sent event stream, up to ``[DONE]``; an error event raises."""
        data: list[str] = []
        try:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                    continue
                if line or not data:  # another field ("event:", ": comment"), or a blank line with no data
                    continue
                text, data = "\n".join(data), []
                if text.strip() == "[DONE]":
                    return
                event = self._json(text.encode())
                if "error" in event:
                    raise _StatusError(response.status_code, event)
                yield event
        except httpx.TimeoutException as exc:
            raise _ConnectionFailed(exc, timeout=True) from None
        except httpx.TransportError as exc:
            raise _ConnectionFailed(exc) from None

    def _json(self, raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise LLMError(f"LLM server at {self.shown_url} answered with something other than a JSON object")
        return data

    @staticmethod
    def _usage(completion: Completion, usage: Any) -> bool:
        """Token counts from a reply's ``usage``; False when it reports none."""
        if not isinstance(usage, dict) or usage.get("completion_tokens") is None:
            return False
        completion.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion.completion_tokens = int(usage["completion_tokens"])
        return True

    @staticmethod
    def _estimate(completion: Completion, params: dict[str, Any], chunks: int | None) -> None:
        # a few tokens of chat-template framing per message
        completion.prompt_tokens = sum(_estimate_tokens(str(m.get("content") or "")) + 4 for m in params["messages"])
        # servers send about one token per stream chunk, a better count than characters
        completion.completion_tokens = chunks if chunks else _estimate_tokens(completion.text)
        completion.extra["tokens_estimated"] = True

    # --- errors

    def _fail(self, exc: Exception) -> NoReturn:
        err = self._error(exc)
        if isinstance(exc, _StatusError) and exc.status_code in (401, 403):
            raise err from None  # the server's message may echo part of the key
        raise err from exc

    def _error(self, exc: Exception) -> LLMError:
        url = self.shown_url
        if isinstance(exc, _ConnectionFailed):
            if exc.timeout:
                return LLMUnavailable(f"cannot reach LLM server at {url}: no answer within {self._timeout:g}s")
            reason = one_line(redact(str(exc), self._secrets), 200)
            return LLMUnavailable(f"cannot reach LLM server at {url}: {reason}")
        if isinstance(exc, _StatusError):
            status = exc.status_code
            if status in (401, 403):
                return LLMUnavailable(f"LLM server at {url} rejected the API key (HTTP {status})")
            detail = one_line(redact(_body_text(exc), self._secrets), 200)
            if status == 404:
                if "model" in detail.lower() or exc.code == "model_not_found":
                    return LLMError(f"model '{self.model}' not found at {url}")
                return LLMError(f"no chat completions endpoint at {url} (HTTP 404; does the base URL end in /v1?)")
            if status == 429:
                return LLMUnavailable(
                    f"LLM server at {url} is rate limiting (HTTP 429) after {self._retries} retries: {detail}"
                )
            return LLMError(f"LLM server at {url} answered HTTP {status}: {detail}")
        return LLMError(f"LLM call to {url} failed: {one_line(redact(str(exc), self._secrets), 200)}")


def _body_text(exc: _StatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if message:
            return str(message)
    if body:
        return str(body)
    return ""


def _rejects_format(exc: _StatusError) -> bool:
    """Whether the server refused the request's response_format rather than failing otherwise."""
    if exc.status_code in (400, 415, 422):
        return True
    # llama-cpp-python's server reports request validation errors as HTTP 500
    return exc.status_code >= 500 and "response_format" in _body_text(exc)


def _key(settings: Settings) -> str | None:
    return settings.openai_api_key.get_secret_value() if settings.openai_api_key is not None else None


def create_openai(model: str, settings: Settings) -> OpenAICompatLLM:
    base_url = settings.base_url
    key = _key(settings)
    if not base_url and not key:
        raise ConfigError(
            "OPENAI_API_KEY is not set: export it, or point at a compatible server with "
            "CLINFO_BASE_URL / OPENAI_BASE_URL (e.g. http://127.0.0.1:8080/v1)"
        )
    return OpenAICompatLLM(
        backend="openai",
        model=model,
        base_url=base_url or OPENAI_BASE_URL,
        api_key=key,
        timeout=settings.llm_timeout,
        retries=settings.llm_retries,
        structured_output=settings.structured_output,
    )


def create_vllm(model: str, settings: Settings) -> OpenAICompatLLM:
    return OpenAICompatLLM(
        backend="vllm",
        model=model,
        base_url=settings.base_url or DEFAULT_VLLM_BASE_URL,
        api_key=_key(settings),  # a vLLM server started with --api-key needs it; otherwise ignored
        timeout=settings.llm_timeout,
        retries=settings.llm_retries,
        structured_output=settings.structured_output,
        free=True,
    )
