"""OpenAI and every OpenAI-compatible server (vLLM, llama.cpp, Ollama) through the ``openai`` SDK.

Two specs share this module: ``openai:<model>`` (api.openai.com unless a base URL is set) and
``vllm:<model>`` (a vLLM server, ``DEFAULT_VLLM_BASE_URL`` unless a base URL is set). The SDK
does the retrying with backoff (429, 5xx, connection errors); this module chooses the structured
output dialect the server speaks, streams, counts tokens and cost, and turns SDK exceptions
into clinfo's typed errors without ever carrying the API key.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import TYPE_CHECKING, Any, NoReturn

import openai

from clinfo.errors import ConfigError, LLMError, LLMUnavailable, one_line
from clinfo.llm.base import Completion, LLMRequest, TokenCallback
from clinfo.llm.pricing import cost_usd
from clinfo.redact import redact
from clinfo.settings import DEFAULT_VLLM_BASE_URL

if TYPE_CHECKING:
    from clinfo.settings import Settings

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Sent when the server needs no key: the SDK refuses to build a client without one, and an
# obviously fake value can never be mistaken for a leaked credential.
PLACEHOLDER_KEY = "not-needed"
# Order in which "auto" tries the dialects: OpenAI/vLLM strict schema, then llama-cpp-python's
# {"type": "json_object", "schema": ...}, then plain text (the caller parses tolerantly).
AUTO_ORDER = ("json_schema", "json_object", "none")
_RETRYABLE = {408, 409, 429}


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
        self._api_key = api_key or PLACEHOLDER_KEY
        # masked in error text: an SDK or server message may echo the key it was sent
        self._secrets = [api_key] if api_key else []
        self._timeout = timeout
        self._retries = retries
        self._free = free
        # "auto" is settled by the first structured call that succeeds; None means not yet
        self._mode: str | None = None if structured_output == "auto" else structured_output
        self._stream_usage = True  # ask for usage in streams until a server rejects the option
        # The SDK's connection pool belongs to the event loop it was used on; a sync facade that
        # calls asyncio.run() per question would otherwise reuse sockets of a closed loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._probe_client: openai.AsyncOpenAI | None = None
        self._probe_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatLLM(spec={self.spec!r}, base_url={self.base_url!r})"

    def identity(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url}

    @property
    def structured_mode(self) -> str | None:
        """The structured-output dialect in use (None while "auto" has not found one yet)."""
        return self._mode

    # --- clients

    def _clients(self) -> tuple[openai.AsyncOpenAI, openai.AsyncOpenAI]:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key, base_url=self.base_url, timeout=self._timeout, max_retries=self._retries
            )
            # the probe of "auto" must not wait through the SDK's backoff on a rejection that
            # llama.cpp reports as HTTP 500; transient failures are retried by hand instead
            self._probe_client = self._client.with_options(max_retries=0)
            self._probe_lock = asyncio.Lock()
            self._loop = loop
        assert self._probe_client is not None
        return self._client, self._probe_client

    async def aclose(self) -> None:
        client, self._client, self._probe_client = self._client, None, None
        if client is not None and self._loop is not None and not self._loop.is_closed():
            try:
                await client.close()
            except RuntimeError:  # closed from another loop: its sockets die with that loop
                pass
        self._loop = None

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
        client, probe_client = self._clients()
        if request.schema is None:
            return await self._guarded(client, request, "none", on_token)
        if self._mode is None:
            assert self._probe_lock is not None
            # one probe at a time, so N concurrent first calls cost the fallback once, not N times
            async with self._probe_lock:
                if self._mode is None:
                    return await self._probe(client, probe_client, request, on_token)
        return await self._guarded(client, request, self._mode, on_token)

    async def _probe(
        self,
        client: openai.AsyncOpenAI,
        probe_client: openai.AsyncOpenAI,
        request: LLMRequest,
        on_token: TokenCallback | None,
    ) -> Completion:
        rejected: openai.APIStatusError | None = None
        streamed = False

        def relay(piece: str) -> None:
            nonlocal streamed
            streamed = True
            assert on_token is not None
            on_token(piece)

        for mode in AUTO_ORDER:
            try:
                completion = await self._call(probe_client, request, mode, relay if on_token else None)
            except openai.APIStatusError as exc:
                if _rejects_format(exc) and not streamed:
                    rejected = exc
                    continue
                if (exc.status_code in _RETRYABLE or exc.status_code >= 500) and not streamed:
                    completion = await self._guarded(client, request, mode, on_token)
                else:
                    self._fail(exc)
            except openai.APIConnectionError as exc:
                if streamed:  # a retry would send the caller the same opening twice
                    self._fail(exc)
                completion = await self._guarded(client, request, mode, on_token)
            except openai.OpenAIError as exc:
                self._fail(exc)
            # remembered only on success: a request that fails in every dialect (say, too long
            # for the context) says nothing about which dialect the server speaks
            self._mode = mode
            return completion
        assert rejected is not None
        self._fail(rejected)

    async def _guarded(
        self, client: openai.AsyncOpenAI, request: LLMRequest, mode: str, on_token: TokenCallback | None
    ) -> Completion:
        try:
            return await self._call(client, request, mode, on_token)
        except openai.OpenAIError as exc:
            self._fail(exc)

    async def _call(
        self, client: openai.AsyncOpenAI, request: LLMRequest, mode: str, on_token: TokenCallback | None
    ) -> Completion:
        params = self._params(request, mode)
        if on_token is not None:
            completion = await self._stream(client, params, on_token)
        else:
            response = await client.chat.completions.create(**params)
            choice = response.choices[0] if response.choices else None
            text = (choice.message.content or "") if choice else ""
            completion = Completion(text=text, model=response.model or self.model)
            completion.extra["finish_reason"] = choice.finish_reason if choice else None
            usage = response.usage
            if usage is not None and usage.completion_tokens is not None:
                completion.prompt_tokens = usage.prompt_tokens or 0
                completion.completion_tokens = usage.completion_tokens
            else:
                self._estimate(completion, params, None)
        if request.schema is not None:
            completion.extra["structured_output"] = mode
        completion.cost_usd = cost_usd(
            completion.model or self.model, completion.prompt_tokens, completion.completion_tokens, free=self._free
        )
        return completion

    async def _stream(self, client: openai.AsyncOpenAI, params: dict[str, Any], on_token: TokenCallback) -> Completion:
        try:
            extra = {"stream_options": {"include_usage": True}} if self._stream_usage else {}
            stream = await client.chat.completions.create(**params, stream=True, **extra)
        except openai.APIStatusError as exc:
            if not (self._stream_usage and exc.status_code in (400, 422) and "stream_options" in _body_text(exc)):
                raise
            self._stream_usage = False
            stream = await client.chat.completions.create(**params, stream=True)
        parts: list[str] = []
        chunks = 0
        usage = None
        model = ""
        finish = None
        async with stream:
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.delta is not None and choice.delta.content:
                        parts.append(choice.delta.content)
                        chunks += 1
                        on_token(choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        completion = Completion(text="".join(parts), model=model or self.model)
        completion.extra["finish_reason"] = finish
        if usage is not None and usage.completion_tokens is not None:
            completion.prompt_tokens = usage.prompt_tokens or 0
            completion.completion_tokens = usage.completion_tokens
        else:
            self._estimate(completion, params, chunks)
        return completion

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
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            raise err from None  # the SDK's message may echo part of the key
        raise err from exc

    def _error(self, exc: Exception) -> LLMError:
        url = self.base_url
        if isinstance(exc, openai.APITimeoutError):
            return LLMUnavailable(f"cannot reach LLM server at {url}: no answer within {self._timeout:g}s")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            reason = (str(cause) or type(cause).__name__) if cause else "connection error"
            return LLMUnavailable(f"cannot reach LLM server at {url}: {one_line(redact(reason, self._secrets), 200)}")
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return LLMUnavailable(f"LLM server at {url} rejected the API key (HTTP {exc.status_code})")
        if isinstance(exc, openai.APIStatusError):
            detail = one_line(redact(_body_text(exc), self._secrets), 200)
            if isinstance(exc, openai.NotFoundError):
                if "model" in detail.lower() or getattr(exc, "code", None) == "model_not_found":
                    return LLMError(f"model '{self.model}' not found at {url}")
                return LLMError(f"no chat completions endpoint at {url} (HTTP 404; does the base URL end in /v1?)")
            if isinstance(exc, openai.RateLimitError):
                return LLMUnavailable(
                    f"LLM server at {url} is rate limiting (HTTP 429) after {self._retries} retries: {detail}"
                )
            return LLMError(f"LLM server at {url} answered HTTP {exc.status_code}: {detail}")
        return LLMError(f"LLM call to {url} failed: {one_line(redact(str(exc), self._secrets), 200)}")


def _body_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if message:
            return str(message)
    if body:
        return str(body)
    return exc.message or ""


def _rejects_format(exc: openai.APIStatusError) -> bool:
    """Whether the server refused the request's response_format rather than failing otherwise."""
    if exc.status_code in (400, 415, 422):
        return True
    # llama-cpp-python's server reports request validation errors as HTTP 500
    return exc.status_code >= 500 and "response_format" in _body_text(exc)


def _key(settings: Settings) -> str | None:
    return settings.openai_api_key.get_secret_value() if settings.openai_api_key is not None else None


def create_openai(model: str, settings: Settings) -> OpenAICompatLLM:
    base_url = settings.base_url or settings.openai_base_url
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
