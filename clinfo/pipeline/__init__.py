"""The pipeline: plan queries -> search -> fetch -> prefilter -> screen + summarise -> synthesise.

Async at the core (every independent call runs concurrently, bounded by one semaphore per
question); ``ClinfoAI.forward`` is the thin sync facade. One module per job:

- ``assistant``: ``ClinfoAI`` (the public entry point) and ``run_sync``
- ``answer``: the steps of one question in order, building the ``Answer``
- ``run``: ``QuestionRun``, one question's state, and the LLM call every step makes
- ``plan``, ``search`` (+ fetch, prefilter), ``screen``, ``synthesis``: the steps
- ``schemas``: the JSON replies the steps ask the LLM for
- ``relevance``, ``quotes``, ``citations``: retrieval screening, quote choice, citation checking
- ``events``: progress ``Event``s; ``inputs``: checks of the question, ignored PMIDs, cut-off date

Names load on first use, so importing a step helper (``clinfo.pipeline.citations``) does not
load the LLM and source machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfo.lazy import lazy_exports

__all__ = ["ClinfoAI", "Event", "EventCallback", "QuestionRun", "run_sync"]

if TYPE_CHECKING:
    from clinfo.pipeline.assistant import ClinfoAI, run_sync
    from clinfo.pipeline.events import Event, EventCallback
    from clinfo.pipeline.run import QuestionRun

_LAZY = {
    "ClinfoAI": "clinfo.pipeline.assistant",
    "run_sync": "clinfo.pipeline.assistant",
    "Event": "clinfo.pipeline.events",
    "EventCallback": "clinfo.pipeline.events",
    "QuestionRun": "clinfo.pipeline.run",
}


__getattr__ = lazy_exports("clinfo.pipeline", _LAZY)
