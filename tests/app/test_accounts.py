"""The operator's accounts and choices: `clinfo hash-password`, scrypt verification, the config file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinfo.app.accounts import hash_password, load_accounts, verify_password
from clinfo.app.allowed import load_allowed
from clinfo.errors import ConfigError
from clinfo.settings import Settings


def run_cli(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clinfo", *args], input=stdin, capture_output=True, text=True, env=os.environ, timeout=60
    )


def test_hash_password_line_goes_into_the_config_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_cli("hash-password", "Ann  Lee", stdin="a long enough passphrase\n")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith('"ann lee" = "scrypt$') and "passphrase" not in line
    config = tmp_path / "app.toml"
    config.write_text(f"[accounts]\n{line}\n")
    monkeypatch.setenv("CLINFO_APP_CONFIG", str(config))
    stored = load_accounts()["ann lee"]
    assert verify_password("a long enough passphrase", stored)
    assert not verify_password("a long enough passphrase!", stored)


def test_hash_password_refuses_short_passwords_in_one_line() -> None:
    result = run_cli("hash-password", "ann", stdin="short\n")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: the password must be at least 8 characters"


def test_each_hash_is_salted_and_a_broken_hash_never_matches() -> None:
    a, b = hash_password("same password", n=2**10), hash_password("same password", n=2**10)
    assert a != b and verify_password("same password", a) and verify_password("same password", b)
    for broken in ("", "scrypt$1$2$3", "bcrypt$x$y$z$a$b", a[:-4]):
        assert not verify_password("same password", broken)


def test_config_accounts_need_real_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "app.toml"
    config.write_text('[accounts]\nann = "plaintext password"\n')
    monkeypatch.setenv("CLINFO_APP_CONFIG", str(config))
    with pytest.raises(ConfigError, match="needs a hash made by 'clinfo hash-password'"):
        load_accounts()


def test_choices_come_from_the_file_else_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINFO_APP_CONFIG", raising=False)
    monkeypatch.setenv("CLINFO_APP_LLMS", "local, openai:gpt-4o-mini")
    allowed = load_allowed(Settings(llm="vllm:m", source="local:/srv/x/pubmed.db"))
    assert [c.spec for c in allowed.llms] == ["vllm:m", "local", "openai:gpt-4o-mini"]
    assert [c.label for c in allowed.sources] == ["Local index (pubmed.db)", "Demo corpus (offline)"]
    # a label nobody was offered falls back to the operator's first choice, never to what was sent
    assert allowed.llm("openai:x@http://evil/v1").spec == "vllm:m"

    config = tmp_path / "app.toml"
    config.write_text('[[llm]]\nlabel = "In-house"\nspec = "vllm:q"\nbase_url = "http://llm-lb:8000/v1"\n')
    monkeypatch.setenv("CLINFO_APP_CONFIG", str(config))
    allowed = load_allowed(Settings(llm="vllm:m", source="pubmed"))
    assert [(c.label, c.spec, c.base_url) for c in allowed.llms] == [("In-house", "vllm:q", "http://llm-lb:8000/v1")]
    assert [c.spec for c in allowed.sources] == ["pubmed", "demo"]  # not in the file: from the environment
