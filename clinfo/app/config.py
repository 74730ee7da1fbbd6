"""The operator's app config file (``$CLINFO_APP_CONFIG``, TOML): allowed LLMs and sources
(:mod:`clinfo.app.allowed`) and accounts (:mod:`clinfo.app.accounts`). Users never write it."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from clinfo.errors import ConfigError, one_line

ENV_CONFIG = "CLINFO_APP_CONFIG"


def config_path() -> Path | None:
    configured = os.environ.get(ENV_CONFIG, "").strip()
    return Path(configured).expanduser() if configured else None


def read_config() -> tuple[Path | None, dict[str, Any]]:
    """(the file, its tables); ``(None, {})`` when no file is configured. Unreadable: ConfigError."""
    path = config_path()
    if path is None:
        return None, {}
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{ENV_CONFIG}={path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{ENV_CONFIG}={path}: not valid TOML: {one_line(exc, 200)}") from None
