"""Settings: presets and their resolution, and renamed settings.

Renamed settings: the old names are still read, with a DeprecationWarning naming the new one.

``http_timeout``/``http_retries`` became ``eutils_timeout``/``eutils_retries`` (only E-utilities
used them) and ``openai_base_url`` became ``base_url`` (two fields for one job); keyword
arguments, overrides, saved configurations and environment variables under the old names keep
working, and the new name wins where both are given.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from clinfo import ClinfoAI
from clinfo.errors import ConfigError, InvalidArgument
from clinfo.eval.run_dir import config_differences
from clinfo.llm import create_llm
from clinfo.settings import Settings, load_settings
from tests.support.scripted import MemorySource, ScriptedLLM

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CLINFO_HTTP_TIMEOUT",
        "CLINFO_HTTP_RETRIES",
        "CLINFO_EUTILS_TIMEOUT",
        "CLINFO_EUTILS_RETRIES",
        "CLINFO_BASE_URL",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_old_keyword_names_are_honoured_with_a_warning_naming_the_new_one() -> None:
    with pytest.warns(DeprecationWarning, match="http_timeout is deprecated: use eutils_timeout"):
        assert Settings(http_timeout=5).eutils_timeout == 5.0
    with pytest.warns(DeprecationWarning, match="http_retries is deprecated: use eutils_retries"):
        assert Settings(http_retries=1).eutils_retries == 1
    with pytest.warns(DeprecationWarning, match="openai_base_url is deprecated: use base_url"):
        settings = Settings(openai_base_url="http://127.0.0.1:7/v1")
    assert settings.base_url == "http://127.0.0.1:7/v1"
    assert "openai_base_url" not in settings.public_dict()
    # and the LLM is called there
    assert create_llm("openai:m", settings).identity()["base_url"] == "http://127.0.0.1:7/v1"


def test_the_new_name_wins_over_the_old_one() -> None:
    with pytest.warns(DeprecationWarning):
        settings = Settings(http_retries=9, eutils_retries=2, openai_base_url="http://old/v1", base_url="http://new/v1")
    assert (settings.eutils_retries, settings.base_url) == (2, "http://new/v1")


def test_old_names_in_overrides_and_saved_configs() -> None:
    with pytest.warns(DeprecationWarning, match="use eutils_retries"):
        assert Settings.resolve(Settings(), http_retries=0).eutils_retries == 0
    with pytest.warns(DeprecationWarning, match="use eutils_timeout"):
        assert load_settings(http_timeout=7).eutils_timeout == 7.0
    with pytest.warns(DeprecationWarning, match="use eutils_timeout"):
        assert Settings().with_overrides(http_timeout=8).eutils_timeout == 8.0
    # the settings of an eval run's config.json written before the rename
    old = {"http_timeout": 12, "http_retries": 1, "openai_base_url": "http://old-run/v1"}
    with pytest.warns(DeprecationWarning):
        restored = Settings.model_validate(old)
    assert (restored.eutils_timeout, restored.eutils_retries, restored.base_url) == (12.0, 1, "http://old-run/v1")


def test_old_environment_variables_are_read_below_the_new_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_HTTP_TIMEOUT", "11")
    monkeypatch.setenv("CLINFO_HTTP_RETRIES", "3")
    with pytest.warns(DeprecationWarning) as caught:
        settings = Settings()
    assert {str(w.message) for w in caught} == {
        "CLINFO_HTTP_TIMEOUT is deprecated: use CLINFO_EUTILS_TIMEOUT",
        "CLINFO_HTTP_RETRIES is deprecated: use CLINFO_EUTILS_RETRIES",
    }
    assert (settings.eutils_timeout, settings.eutils_retries) == (11.0, 3)
    monkeypatch.setenv("CLINFO_EUTILS_RETRIES", "5")
    with pytest.warns(DeprecationWarning):
        assert Settings().eutils_retries == 5
    with pytest.warns(DeprecationWarning):  # a keyword argument still wins over any variable
        assert Settings(eutils_timeout=2).eutils_timeout == 2.0


def test_the_new_names_warn_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_EUTILS_TIMEOUT", "9")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:2/v1")  # the OpenAI SDK's variable: not deprecated
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings = Settings(eutils_retries=1)
        assert (settings.eutils_timeout, settings.eutils_retries, settings.base_url) == (
            9.0,
            1,
            "http://127.0.0.1:2/v1",
        )
        monkeypatch.setenv("CLINFO_BASE_URL", "http://127.0.0.1:3/v1")
        assert Settings().base_url == "http://127.0.0.1:3/v1"  # CLINFO_BASE_URL wins


def test_an_old_runs_config_resumes_under_the_new_names(tmp_path: Path) -> None:
    new = {"dataset": {"sha256": "0", "format": "jsonl"}, "limit": None, "seed": 0}
    new["settings"] = {**Settings().public_dict(), "eutils_timeout": 60.0, "base_url": "http://moved:1/v1"}
    old = json.loads(json.dumps(new))
    for key in ("eutils_timeout", "eutils_retries", "base_url"):
        old["settings"].pop(key)
    old["settings"].update(http_timeout=30.0, http_retries=4, openai_base_url="http://was-here/v1")
    assert config_differences(old, new) == []  # where a run goes, not what it answers


# Presets and resolution (moved from the pipeline's control-flow tests)


def test_small_preset_for_the_embedded_llama_cpp_backend_keeps_explicit_choices(monkeypatch) -> None:
    small = ClinfoAI(llm="local", source="demo").settings
    assert (small.planner, small.synthesis_mode, small.prefilter_k, small.num_queries) == (
        "keywords",
        "extractive",
        5,
        1,
    )
    assert ClinfoAI(llm="local", source="demo", prefilter_k=8).settings.prefilter_k == 8
    monkeypatch.setenv("CLINFO_SYNTHESIS_MODE", "llm")
    assert ClinfoAI(llm="local", source="demo").settings.synthesis_mode == "llm"
    assert ClinfoAI(llm="local", source="demo", preset="default").settings.planner == "llm"
    assert ClinfoAI(llm=ScriptedLLM({}), source=MemorySource({}, [])).settings.planner == "llm"


def test_presets_see_through_copied_settings() -> None:
    from clinfo.settings import load_settings

    copied = load_settings().with_overrides(llm="local", source="demo", results_per_query=30)
    settings = ClinfoAI(settings=copied).settings
    assert settings.synthesis_mode == "extractive" and settings.results_per_query == 30


def test_settings_resolve_once_for_every_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinfo.settings import Settings

    monkeypatch.setenv("CLINFO_PREFILTER_K", "9")  # set in the environment: the preset leaves it
    resolved = Settings.resolve(llm="local", source="demo", num_queries=2)
    assert (resolved.planner, resolved.synthesis_mode, resolved.screening) == ("keywords", "extractive", "retrieval")
    assert resolved.num_queries == 2 and resolved.prefilter_k == 9  # what someone set beats the preset
    assert Settings.resolve(resolved) == resolved  # resolving resolved settings changes nothing
    assert ClinfoAI(llm="local", source="demo", num_queries=2).settings == resolved
    assert Settings.resolve(llm="openai:gpt-4o-mini").planner == "llm"
    with pytest.raises(InvalidArgument, match=r"unknown setting\(s\): prefilter, sorce"):
        Settings.resolve(prefilter=3, sorce="demo")
    with pytest.raises(ConfigError, match="restriction_date"):
        Settings.resolve(restriction_date="last year")
