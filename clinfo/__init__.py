"""clinfo: cited answers to clinical questions from the biomedical literature.

Heavy parts (LLM clients, sources, the pipeline) load on first use so ``import clinfo`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfo.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["ClinfoAI", "Answer", "Article", "ArticleSummary", "Reference", "Settings", "Event", "__version__"]

if TYPE_CHECKING:
    from clinfo.models import Answer, Article, ArticleSummary, Reference
    from clinfo.pipeline.assistant import ClinfoAI
    from clinfo.pipeline.events import Event
    from clinfo.settings import Settings

_LAZY = {
    "ClinfoAI": "clinfo.pipeline.assistant",
    "Event": "clinfo.pipeline.events",
    "Answer": "clinfo.models",
    "Article": "clinfo.models",
    "ArticleSummary": "clinfo.models",
    "Reference": "clinfo.models",
    "Settings": "clinfo.settings",
}


__getattr__ = lazy_exports("clinfo", _LAZY)
