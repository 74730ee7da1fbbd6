"""Fixtures every area uses."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's keys or cache, or talks to the real NCBI/OpenAI."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "NCBI_API_KEY", "NCBI_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    for name in list(__import__("os").environ):
        if name.startswith("CLINFO_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLINFO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CLINFO_EUTILS_BASE_URL", "http://127.0.0.1:9/unreachable/")


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; tests need the project's shared data")
    return SHARED
