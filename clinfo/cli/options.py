"""Options shared by the commands that run the pipeline or open a source, declared once.

``ask`` and ``eval run`` take the same pipeline options (LLM, source, search mode, server URL,
query and screening sizes, prompts, cache, study designs and species). They are declared here once as the fields of
:class:`PipelineOptions`; a command asks for them with a ``opts: PipelineOptions`` parameter
and :func:`pipeline_options`, and :func:`settings_overrides` is the one place that maps option
values to :class:`~clinfo.settings.Settings` fields.

An option that sets a setting takes its help from that setting's description
(:func:`setting_help`), the text the README's settings table shows too, so the two cannot drift.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from clinfo.settings import Settings, env_names

F = TypeVar("F", bound=Callable[..., Any])


def setting_help(name: str, *, sets: str = "", usage: str = "") -> str:
    """The help of an option that sets the setting ``name``: the setting's own description, then
    what the option sets it to when that is not the value given (``sets``), how the option is
    given (``usage``, e.g. "repeatable") and the environment variables of the setting."""
    text = " ".join((Settings.model_fields[name].description or "").split())
    where = f"sets {name}={sets}" if sets else f"setting {name}"
    envs = " or ".join(env_names(name))
    return f"{text[:1].upper()}{text[1:]} ({', '.join(filter(None, (usage, where)))}; env {envs})."


LLM_OPT = typer.Option(None, "--llm", help=setting_help("llm"))
SOURCE_OPT = typer.Option(None, "--source", help=setting_help("source"))
SEARCH_MODE_OPT = typer.Option(None, "--search-mode", help=setting_help("search_mode"))
BASE_URL_OPT = typer.Option(None, "--base-url", help=setting_help("base_url"))
NUM_QUERIES_OPT = typer.Option(None, "--num-queries", help=setting_help("num_queries"))
RESULTS_PER_QUERY_OPT = typer.Option(None, "--results-per-query", help=setting_help("results_per_query"))
PREFILTER_K_OPT = typer.Option(None, "--prefilter-k", help=setting_help("prefilter_k"))
PROMPT_DIR_OPT = typer.Option(None, "--prompt-dir", help=setting_help("prompt_dir"))
NO_CACHE_OPT = typer.Option(False, "--no-cache", help=setting_help("use_cache", sets="false"))
DESIGN_OPT = typer.Option(None, "--design", help=setting_help("designs", usage="repeatable"))
HUMANS_ONLY_OPT = typer.Option(False, "--humans-only", help=setting_help("humans_only", sets="true"))


def settings_overrides(
    *,
    llm: str | None = None,
    source: str | None = None,
    search_mode: str | None = None,
    base_url: str | None = None,
    num_queries: int | None = None,
    results_per_query: int | None = None,
    prefilter_k: int | None = None,
    prompt_dir: Path | None = None,
    no_cache: bool = False,
    designs: list[str] | None = None,
    humans_only: bool = False,
) -> dict[str, Any]:
    """Command-line values as ``Settings`` overrides; an option left out (None) keeps the setting,
    so the environment and the preset still decide it."""
    values: dict[str, Any] = {
        "llm": llm,
        "source": source,
        "search_mode": search_mode,
        "base_url": base_url,
        "num_queries": num_queries,
        "results_per_query": results_per_query,
        "prefilter_k": prefilter_k,
        "prompt_dir": prompt_dir,
        # --no-cache turns the cache off; its absence must not turn it on over CLINFO_USE_CACHE
        "use_cache": False if no_cache else None,
        "designs": list(designs) if designs else None,
        # like --no-cache: the flag's absence leaves CLINFO_HUMANS_ONLY in force
        "humans_only": True if humans_only else None,
    }
    return {k: v for k, v in values.items() if v is not None}


def _option(default: Any, option: Any) -> Any:
    return dataclasses.field(default=default, metadata={"option": option})


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """The options of ``ask`` and ``eval run``: each field with its command-line option."""

    llm: str | None = _option(None, LLM_OPT)
    source: str | None = _option(None, SOURCE_OPT)
    search_mode: str | None = _option(None, SEARCH_MODE_OPT)
    base_url: str | None = _option(None, BASE_URL_OPT)
    num_queries: int | None = _option(None, NUM_QUERIES_OPT)
    results_per_query: int | None = _option(None, RESULTS_PER_QUERY_OPT)
    prefilter_k: int | None = _option(None, PREFILTER_K_OPT)
    prompt_dir: Path | None = _option(None, PROMPT_DIR_OPT)
    no_cache: bool = _option(False, NO_CACHE_OPT)
    designs: list[str] | None = _option(None, DESIGN_OPT)
    humans_only: bool = _option(False, HUMANS_ONLY_OPT)

    def overrides(self) -> dict[str, Any]:
        """These options as ``Settings`` overrides (see :func:`settings_overrides`)."""
        return settings_overrides(**dataclasses.asdict(self))


_FIELDS = dataclasses.fields(PipelineOptions)
_HINTS = typing.get_type_hints(PipelineOptions)


def pipeline_options(func: F) -> F:
    """Gives ``func``'s ``opts: PipelineOptions`` parameter to typer as the separate options.

    typer reads a command's options from its signature, so the command is shown to typer with
    the fields of :class:`PipelineOptions` in place of ``opts`` (same position in ``--help``),
    and called with them gathered back into one ``PipelineOptions``.
    """
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func)
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        if p.name == "opts":
            params.extend(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, default=f.metadata["option"], annotation=_HINTS[f.name]
                )
                for f in _FIELDS
            )
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)))
    if "opts" not in sig.parameters:
        raise TypeError(f"{func.__name__} takes no 'opts' parameter")

    names = {f.name for f in _FIELDS}

    def command(**kwargs: Any) -> Any:
        opts = PipelineOptions(**{k: kwargs.pop(k) for k in names})
        return func(opts=opts, **kwargs)

    command.__name__ = func.__name__
    command.__qualname__ = func.__qualname__
    command.__doc__ = func.__doc__
    command.__module__ = func.__module__
    command.__signature__ = sig.replace(parameters=params, return_annotation=hints.get("return", None))  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command  # type: ignore[return-value]
