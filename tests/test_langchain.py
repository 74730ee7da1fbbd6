"""The LangChain adapter: retriever documents carry PMIDs; the pipeline runs as a Runnable."""

from __future__ import annotations

import asyncio

from clinfo import ClinfoAI
from clinfo.appraisal.design import LEVELS
from tests.pipeline.test_control_flow import QUESTION, make_llm, make_source


def test_retriever_returns_documents_with_pmid_metadata() -> None:
    from clinfo.langchain import ClinfoRetriever

    retriever = ClinfoRetriever(source=make_source(), k=2)
    docs = retriever.invoke("magnesium[tiab] AND sleep[tiab]")
    assert [d.metadata["pmid"] for d in docs] == ["101", "102"]
    assert docs[0].page_content.startswith("Magnesium and sleep in elderly")
    assert docs[0].metadata["url"] == "https://pubmed.ncbi.nlm.nih.gov/101/"
    # the design decided by code, as flat values a vector store can filter on
    design = docs[0].metadata["design"], docs[0].metadata["design_level"], docs[0].metadata["design_basis"]
    assert design == ("randomised trial", 2, "title/abstract")  # "...: an RCT", not indexed
    assert docs[0].metadata["human"] is None and LEVELS[docs[1].metadata["design"]] == docs[1].metadata["design_level"]
    adocs = asyncio.run(retriever.ainvoke("magnesium[tiab] AND sleep[tiab]"))
    assert [d.metadata["pmid"] for d in adocs] == ["101", "102"]


def test_pipeline_as_runnable() -> None:
    from clinfo.langchain import clinfo_runnable

    runnable = clinfo_runnable(ClinfoAI(llm=make_llm(), source=make_source(), use_cache=False))
    answer = runnable.invoke(QUESTION)
    assert [r.pmid for r in answer.references] == ["101", "103"]
    answer = runnable.invoke({"question": QUESTION, "ignore": "101"})
    assert [r.pmid for r in answer.references] == ["103"]
    batch = runnable.batch([QUESTION, QUESTION])
    assert all(a.references for a in batch)
