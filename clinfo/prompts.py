"""Prompt files: one TOML file per step with ``system`` and ``user`` texts, ``$name`` placeholders.

The defaults live in ``prompts/`` at the repository root (shipped inside the wheel as
``clinfo/prompts``); ``Settings.prompt_dir`` points to a directory of overrides, where any
file present replaces the default of the same name.
"""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from clinfo.errors import ConfigError

_PACKAGED = Path(__file__).parent / "prompts"  # inside an installed wheel
_SOURCE_TREE = Path(__file__).parent.parent / "prompts"  # editable install / checkout

# Outside text (titles, abstracts, journals, and what the LLM wrote from them) goes into the screening
# and synthesis prompts between <article>...</article> or <evidence>...</evidence>, and their system
# texts say that what is fenced is data, not instructions. A fence tag inside such text would close
# the fence early, so that what follows reads as the prompt's own words: ``as_data`` defuses it.
FENCE_TAGS = ("article", "evidence")
_FENCE_TAG = re.compile(r"<(\s*/?\s*(?:article|evidence)\b)", re.IGNORECASE)


def as_data(text: object) -> str:
    """``text`` for a place between fence tags: every tag that could open or close a fence loses its
    ``<`` (``</article>`` becomes ``‹/article>``), so the text cannot leave its fence."""
    return _FENCE_TAG.sub("\u2039\\1", str(text))


def default_prompt_dir() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _SOURCE_TREE


@dataclass(frozen=True)
class Prompt:
    name: str
    system: str
    user: str

    def messages(self, **values: object) -> tuple[dict[str, str], ...]:
        try:
            user = string.Template(self.user).substitute({k: str(v) for k, v in values.items()})
        except KeyError as exc:
            raise ConfigError(f"prompt {self.name!r} uses ${exc.args[0]}, which this step does not provide") from None
        return ({"role": "system", "content": self.system.strip()}, {"role": "user", "content": user.strip()})


@lru_cache(maxsize=64)
def _load(path: Path) -> Prompt:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read prompt file {path}: {exc}") from None
    if not isinstance(data.get("user"), str):
        raise ConfigError(f"prompt file {path} needs a 'user' text")
    return Prompt(name=path.stem, system=str(data.get("system", "")), user=data["user"])


def load_prompt(name: str, prompt_dir: Path | str | None = None) -> Prompt:
    if prompt_dir is not None:
        custom_dir = Path(prompt_dir).expanduser()
        if not custom_dir.is_dir():
            raise ConfigError(f"prompt directory {custom_dir} does not exist")
        custom = custom_dir / f"{name}.toml"
        if custom.is_file():
            return _load(custom.resolve())
    default = default_prompt_dir() / f"{name}.toml"
    if not default.is_file():
        raise ConfigError(f"no prompt file {name}.toml in {default.parent}")
    return _load(default)
