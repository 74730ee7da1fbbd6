"""USD per million tokens (input, output) for models whose price is public; others cost None."""

from __future__ import annotations

PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o4-mini": (1.10, 4.40),
}


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int, free: bool = False) -> float | None:
    """Cost of one call; ``free`` for self-hosted backends (vLLM, llama.cpp, embedded)."""
    if free:
        return 0.0
    # dated snapshots ("gpt-4o-mini-2024-07-18") cost what their family costs
    name = model
    while name and name not in PRICES:
        if "-" not in name:
            return None
        name = name.rsplit("-", 1)[0]
    if not name:
        return None
    inp, out = PRICES[name]
    return (prompt_tokens * inp + completion_tokens * out) / 1_000_000
