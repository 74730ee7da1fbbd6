"""README's configuration table against ``clinfo.Settings``: they cannot drift apart.

The table is read from README.md as a reader sees it, then checked three ways: it holds exactly
the fields of Settings, each documented environment variable really sets its field, and the
whole table is what scripts/settings_table.py prints (defaults and descriptions included). The
CLI options that set a setting show the same description as their help.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from clinfo.settings import Settings, env_names

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SCRIPT = ROOT / "scripts" / "settings_table.py"
STANDARD_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "NCBI_API_KEY", "NCBI_EMAIL")


def readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- settings table:")
    start = text.index("\n", start) + 1
    return text[start : text.index("<!-- end of settings table -->", start)].strip()


def unescape(cell: str) -> str:
    return re.sub(r"\\(.)", r"\1", cell)


def readme_rows() -> dict[str, dict[str, str]]:
    """``{field name: {"env": [...], "default": ..., "description": ...}}`` from the README table."""
    lines = readme_table().splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "setting",
        "environment variable",
        "default",
        "description",
    ]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        assert len(cells) == 4, line
        name = cells[0].strip("`")
        assert name not in rows, f"{name} documented twice"
        env = [e.strip("`") for e in cells[1].split(" or ")]
        rows[name] = {"env": env, "default": cells[2], "description": unescape(cells[3])}
    return rows


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert missing == []


def test_the_readme_documents_every_setting_and_nothing_else() -> None:
    documented = readme_rows()
    assert list(documented) == list(Settings.model_fields)  # same names, in declaration order
    for name, row in documented.items():
        assert row["description"] == " ".join(Settings.model_fields[name].description.split()), name


def test_documented_defaults_are_the_defaults() -> None:
    defaults = Settings.model_construct()  # no environment read: the declared defaults
    for name, row in readme_rows().items():
        value = getattr(defaults, name)
        if value is None:
            assert row["default"] == "—", name
            continue
        shown = row["default"].strip("`")
        if isinstance(value, bool):
            assert shown == str(value).lower(), name
        elif isinstance(value, (int, float)):
            assert float(shown) == value, name
        elif isinstance(value, Path):
            assert Path(shown).expanduser() == value, name
        else:
            assert shown == str(value), name


def _sample(name: str, field: FieldInfo) -> tuple[str, Any]:
    """An environment value for ``field`` other than its default, and what Settings makes of it."""
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    kind = args[0] if args and typing.get_origin(annotation) not in (typing.Literal, list) else annotation
    default = field.get_default(call_default_factory=True)
    if typing.get_origin(annotation) is typing.Literal:
        choice = next(c for c in typing.get_args(annotation) if c != default)
        return choice, choice
    if kind is bool:
        return str(not default).lower(), not default
    if kind in (int, float):
        low = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), 0)
        high = next((m.le for m in field.metadata if getattr(m, "le", None) is not None), None)
        value = (default if default is not None else low) + 1
        if high is not None and value > high:
            value = low
        return str(value), kind(value)
    if typing.get_origin(kind) is list:  # a JSON list, as pydantic-settings reads one; a Literal item takes its first
        item = typing.get_args(kind)[0]
        choice = typing.get_args(item)[0] if typing.get_origin(item) is typing.Literal else "probe"
        return json.dumps([choice]), [choice]
    if kind is SecretStr:
        if name == "database_url":  # a secret that must also be a database URL
            return (
                "postgresql://probe:probe-secret-value@db.example/x",
                "postgresql://probe:probe-secret-value@db.example/x",
            )
        return "probe-secret-value", "probe-secret-value"
    if kind is Path:
        return "/tmp/clinfo-probe", Path("/tmp/clinfo-probe")
    if kind is dt.date:
        return "2020-01-02", dt.date(2020, 1, 2)
    assert kind is str, f"{name}: no sample for {annotation}"
    return "https://probe.example/x/", "https://probe.example/x/"


def test_each_documented_variable_sets_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("CLINFO_") or var in STANDARD_ENV:
            monkeypatch.delenv(var)
    rows = readme_rows()
    assert {var for row in rows.values() for var in row["env"]} >= set(STANDARD_ENV)
    for name, row in rows.items():
        field = Settings.model_fields[name]
        raw, expected = _sample(name, field)
        for var in row["env"]:
            with monkeypatch.context() as env:
                env.setenv(var, raw)
                value = getattr(Settings(), name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            assert value == expected, f"{var}={raw} gave {name}={value!r}"


def test_the_readme_table_is_what_the_script_prints() -> None:
    printed = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert readme_table() == printed, "README.md is stale: run python scripts/settings_table.py --write"


# ---------------------------------------------------------------- CLI help from the same descriptions


def _command(*path: str) -> Any:
    """The click command (typer's own copy of click) of ``clinfo <path>``."""
    from clinfo.cli.root import app

    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def _option_settings() -> dict[str, str]:
    """Each field of PipelineOptions -> the setting it really sets (read from settings_overrides)."""
    from clinfo.cli.options import PipelineOptions, settings_overrides

    samples = {str: "x", int: 1, Path: Path("x"), bool: True}
    mapping = {}
    for field in dataclasses.fields(PipelineOptions):
        hint = typing.get_type_hints(PipelineOptions)[field.name]
        kind = next(a for a in (*typing.get_args(hint), hint) if a is not type(None))
        sample = ["x"] if typing.get_origin(kind) is list else samples[kind]
        (setting,) = settings_overrides(**{field.name: sample})  # exactly one setting per option
        mapping[field.name] = setting
    return mapping


def test_every_option_that_sets_a_setting_shows_its_description() -> None:
    pipeline = _option_settings()
    assert pipeline["prefilter_k"] == "prefilter_k" and pipeline["no_cache"] == "use_cache"
    cases = [(("ask",), param, setting) for param, setting in pipeline.items()]
    cases += [(("eval", "run"), param, setting) for param, setting in pipeline.items()]
    cases += [(("ask",), "restriction_date", "restriction_date")]
    cases += [(("search",), "source", "source"), (("search",), "mode", "search_mode")]
    for path, param_name, setting in cases:
        params = {p.name: p for p in _command(*path).params}
        shown = " ".join((params[param_name].help or "").split())
        description = " ".join(Settings.model_fields[setting].description.split())
        where = f"clinfo {' '.join(path)} {params[param_name].opts[0]}"
        assert shown.startswith(description[:1].upper() + description[1:]), f"{where}: {shown!r}"
        assert f"{setting}" in shown.removeprefix(description[:1].upper() + description[1:]), where
        for env in env_names(setting):
            assert env in shown, f"{where} does not name {env}"


def test_the_help_says_what_the_readme_table_says(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from clinfo.cli.root import app

    monkeypatch.setenv("COLUMNS", "4000")  # one line per option
    out = CliRunner().invoke(app, ["ask", "--help"]).output
    line = next(row for row in out.splitlines() if "--prefilter-k" in row)
    assert readme_rows()["prefilter_k"]["description"][1:] in line and "screened by the LLM" not in line
