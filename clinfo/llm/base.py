"""The one small protocol every LLM backend implements, and the caching wrapper around it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from clinfo.cache import Cache

TokenCallback = Callable[[str], None]


@dataclass(frozen=True)
class LLMRequest:
    messages: tuple[dict[str, str], ...]
    schema: dict[str, Any] | None = None  # JSON schema the reply must follow (structured output)
    schema_name: str = "output"
    max_tokens: int | None = None
    temperature: float = 0.0
    step: str = ""  # pipeline step, for traces only (not part of the cache key)

    def key(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("step")
        return data


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    cached: bool = False
    cost_usd: float | None = None  # None when the model's price is unknown
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LLM(Protocol):
    spec: str  # the spec it was made from, e.g. "openai:gpt-4o-mini"

    async def complete(self, request: LLMRequest, on_token: TokenCallback | None = None) -> Completion:
        """Answer one chat request. With ``on_token`` the reply is streamed through it as it comes."""
        ...

    def identity(self) -> dict[str, Any]:
        """What determines this backend's output (backend, model, server): the cache key's prefix."""
        ...

    async def aclose(self) -> None: ...


class CachedLLM:
    """Serves repeated requests from the on-disk cache; a hit streams the whole text at once."""

    def __init__(self, inner: LLM, cache: Cache) -> None:
        self.inner = inner
        self.cache = cache
        self.spec = inner.spec

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    async def complete(self, request: LLMRequest, on_token: TokenCallback | None = None) -> Completion:
        key = {"llm": self.inner.identity(), "request": request.key()}
        hit = self.cache.get("llm", key)
        if hit is not None:
            data = json.loads(hit)
            if on_token and data["text"]:
                on_token(data["text"])
            return Completion(text=data["text"], model=data.get("model", ""), cached=True, cost_usd=0.0)
        completion = await self.inner.complete(request, on_token)
        if completion.text.strip():
            self.cache.set("llm", key, json.dumps({"text": completion.text, "model": completion.model}))
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()


def with_cache(llm: LLM, cache: Cache) -> LLM:
    """``llm`` behind the on-disk cache when the cache is on and the backend can name itself
    (its ``identity()`` is part of every cache key); otherwise ``llm`` itself."""
    return CachedLLM(llm, cache) if cache.enabled and hasattr(llm, "identity") else llm
