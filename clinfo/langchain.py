"""LangChain adapter (extra ``[langchain]``): a retriever over any clinfo source, and the
pipeline as a Runnable. An adapter only: the core does not depend on LangChain.

    from clinfo.langchain import ClinfoRetriever, clinfo_runnable
    docs = ClinfoRetriever(source="demo", k=5).invoke("statins in the elderly")
    answer = clinfo_runnable(ClinfoAI(llm="local", source="demo")).invoke("Do statins ...?")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableLambda
except ImportError as exc:  # pragma: no cover - depends on the extra
    from clinfo.errors import ConfigError

    raise ConfigError("the LangChain adapter needs the extra: pip install 'clinfo[langchain]'") from exc

from pydantic import ConfigDict

from clinfo.appraisal.evidence_status import evidence_status, flags
from clinfo.models import Answer, Article
from clinfo.pipeline import run_sync
from clinfo.settings import load_settings
from clinfo.sources import DateRange, Source, create_source

if TYPE_CHECKING:
    from clinfo.pipeline import ClinfoAI


def article_document(article: Article, score: float | None = None) -> Document:
    metadata: dict[str, Any] = {
        "pmid": article.pmid,
        "title": article.title,
        "journal": article.journal,
        "year": article.year,
        "doi": article.doi,
        "url": article.url,
        "citation": article.citation,
        "mesh": article.mesh,
        "publication_types": article.publication_types,
        # expressions of concern and errata NLM links to the article (clinfo.appraisal.evidence_status)
        "notices": [f.text for f in flags(article)],
        # decided by code (clinfo.appraisal.design); flat values, as vector stores filter on them
        "design": article.design.kind,
        "design_level": article.design.level,
        "design_basis": article.design.basis,
        "human": article.design.human,
    }
    if score is not None:
        metadata["score"] = score
    return Document(page_content=f"{article.title}\n\n{article.abstract}".strip(), metadata=metadata)


class ClinfoRetriever(BaseRetriever):
    """Documents (one per article, PMID in metadata) for a PubMed-syntax or plain-text query.

    What is not evidence is left out, as the pipeline sets it aside: retracted work always;
    retraction notices, errata, comments, letters, editorials and news unless the setting
    ``admit_publication_kinds`` admits their kind (so fewer than ``k`` documents may come back)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # a spec ("pubmed", "demo", "local:/x.db", a plug-in's "prefix:arg") or a Source object
    source: str | Any = "pubmed"
    k: int = 10
    dates: DateRange | None = None
    search_mode: str | None = None  # local corpora: auto | bm25 | dense | hybrid (default: the setting)

    async def _search(self, query: str) -> list[Document]:
        settings = load_settings(search_mode=self.search_mode)
        own = isinstance(self.source, str)
        source: Source = create_source(self.source, settings) if own else self.source
        try:
            result = await source.search(query, limit=self.k, dates=self.dates)
            articles = await source.fetch(result.pmids)
        finally:
            if own:
                await source.aclose()
        scores = dict(zip(result.pmids, result.scores))
        admit = settings.admit_publication_kinds
        return [article_document(a, scores.get(a.pmid)) for a in articles if evidence_status(a, admit).evidence]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return run_sync(self._search(query))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        return await self._search(query)


def clinfo_runnable(clinfo: ClinfoAI) -> RunnableLambda:
    """The pipeline as a Runnable.

    Input: a question (str) or ``{"question": ..., "ignore": ..., "restriction_date": ...}``.
    """

    def split(value: Any) -> tuple[str, dict[str, Any]]:
        if isinstance(value, dict):
            data = dict(value)
            return data.pop("question", ""), data
        return value, {}

    def invoke(value: Any) -> Answer:
        question, kwargs = split(value)
        return clinfo.forward(question, **kwargs)

    async def ainvoke(value: Any) -> Answer:
        question, kwargs = split(value)
        return await clinfo.aforward(question, **kwargs)

    return RunnableLambda(invoke, afunc=ainvoke, name="clinfo")
