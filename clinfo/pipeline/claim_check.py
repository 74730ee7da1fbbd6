"""After the synthesis: each sentence that cites ``[n]`` checked against the abstracts it cites.

``Settings.claim_check``: ``mark`` records a :class:`~clinfo.models.ClaimCheck` per citing sentence
(the renderers mark the unsupported ones); ``recheck`` also sends the unsupported sentences back
to the LLM once, each with the closest sentence of every article it cites (and of any listed
article that matches it better), to be rewritten or dropped, then checks the new text; ``off``
skips it. Scoring is :mod:`clinfo.claims`; quotes written by code arrive already checked (exact).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from clinfo.claims import check_synthesis, plain_text, support
from clinfo.jsonout import parse_json
from clinfo.models import Article, ArticleSummary, ClaimCheck, Support
from clinfo.pipeline.citations import check_citations
from clinfo.pipeline.run import QuestionRun
from clinfo.pipeline.schemas import RECHECK_SCHEMA
from clinfo.pipeline.synthesis import Synthesis
from clinfo.prompts import as_data


async def check_claims(
    run: QuestionRun, written: Synthesis, used: list[ArticleSummary]
) -> tuple[str, list[ClaimCheck], list[int]]:
    """(synthesis text, its claim checks, reference numbers it cites) after the check and any recheck.

    ``used``: the articles the synthesis drew on, article ``n`` being reference ``[n]``."""
    text, cited = written.text, written.cited
    if run.settings.claim_check == "off":
        return text, [], cited
    articles = {n: s.article for n, s in enumerate(used, start=1)}
    claims = written.claims
    if claims is None:
        # the encoder is CPU work: off the event loop, so a cancelled question still stops promptly
        claims = await asyncio.to_thread(check_synthesis, text, articles)
    if run.settings.claim_check == "recheck" and any(not c.supported for c in claims):
        revised = await _recheck(run, text, claims, articles)
        if revised != text:
            text = revised
            cited = check_citations(text, len(used))[2]
            claims = await asyncio.to_thread(check_synthesis, text, articles)
    trace = run.trace
    trace.claims_checked = len(claims)
    trace.unsupported_claims = sum(not c.supported for c in claims)
    supported = trace.claims_checked - trace.unsupported_claims
    run.emit(
        "claims",
        f"{supported} of {len(claims)} citing sentences supported by the abstracts they cite",
        checked=len(claims),
        unsupported=trace.unsupported_claims,
    )
    return text, claims, cited


def _alternatives(claims: list[ClaimCheck], articles: Mapping[int, Article]) -> list[list[tuple[int, Support]]]:
    """For each claim, the listed articles it does not cite that support it better than those it cites."""
    out = []
    for c in claims:
        better = []
        for n, article in articles.items():
            if n in c.citations:
                continue
            found = support(c.text, article)
            if found.supported and found.score > c.score:
                better.append((n, found))
        out.append(sorted(better, key=lambda pair: -pair[1].score)[:2])
    return out


def _quote(n: int, s: Support, note: str = "") -> str:
    where = f" ({s.label.title()})" if s.label and s.label != "TITLE" else ""
    return f'    [{n}]{note} closest sentence{where}: "{as_data(s.sentence)}"'


async def _recheck(run: QuestionRun, text: str, claims: list[ClaimCheck], articles: Mapping[int, Article]) -> str:
    """One LLM call: the unsupported sentences rewritten or dropped. Returns the new synthesis text
    (``text`` unchanged when the reply cannot be read)."""
    unsupported = [c for c in claims if not c.supported]
    better = await asyncio.to_thread(_alternatives, unsupported, articles)
    blocks = []
    for i, (c, alternatives) in enumerate(zip(unsupported, better), start=1):
        lines = [f'({i}) "{as_data(c.text)}"']
        lines += [_quote(n, s) for n, s in zip(c.citations, c.supports)]
        lines += [_quote(n, s, " (not cited here)") for n, s in alternatives]
        blocks.append("\n".join(lines))
    values = {"question": run.question, "sentences": "\n\n".join(blocks), "count": len(unsupported)}
    reply = await run.call_llm("recheck", "recheck_claims", values, RECHECK_SCHEMA, 900)
    data = parse_json(reply)
    items = data.get("sentences") if isinstance(data, dict) else None
    if not isinstance(items, list):
        run.trace.unparseable_llm_outputs += 1
        run.warn("the claim recheck reply could not be read; unsupported sentences are marked instead")
        return text
    rewrites: dict[int, str] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("n"), int) and isinstance(item.get("text"), str):
            if 1 <= item["n"] <= len(unsupported):
                rewrites.setdefault(item["n"], item["text"])
    # from the end, so the offsets of the sentences before stay right
    for i in sorted(rewrites, reverse=True):
        c = unsupported[i - 1]
        new, removed, _ = check_citations(" ".join(rewrites[i].split()), len(articles))
        run.trace.invalid_citations_removed += removed
        if not plain_text(new).strip(" ."):
            new = ""
        if new == c.text:
            continue
        run.trace.claims_revised += 1
        before, after = text[: c.start], text[c.end :]
        if not new:  # dropped: with one of the blanks around it
            before = before.rstrip(" ") if after[:1] in ("", "\n") else before
            after = after.lstrip(" ")
        text = before + new + after
    return text.strip()
