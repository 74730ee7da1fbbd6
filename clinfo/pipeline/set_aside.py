"""Between fetch and prefilter: what is not evidence is set aside, never screened, never cited.

The verdict is :func:`clinfo.appraisal.evidence_status.evidence_status` on each fetched record.
Retracted records are listed whether or not they have an abstract (a reader who knows the study
should learn it was retracted); other non-evidence (notices, letters, editorials...) only when it
has an abstract: a record without one is never screened anyway, and is counted as such.
"""

from __future__ import annotations

from clinfo.appraisal.evidence_status import evidence_status
from clinfo.models import Article, SetAside
from clinfo.pipeline.run import QuestionRun


def set_aside(run: QuestionRun, articles: list[Article]) -> tuple[list[Article], list[SetAside]]:
    """The fetched records -> (the records that may be screened, in order; those set aside, with why)."""
    admit = run.settings.admit_publication_kinds
    kept: list[Article] = []
    aside: list[SetAside] = []
    for article in articles:
        status = evidence_status(article, admit)
        if status.evidence or (status.kind != "retracted" and not article.abstract.strip()):
            # a letter or notice without an abstract goes on to the prefilter, which drops and
            # counts every record without one: it is never screened either way
            kept.append(article)
        else:
            aside.append(
                SetAside(
                    pmid=article.pmid,
                    title=article.title,
                    kind=status.kind,
                    reason=status.reason,
                    notices=list(status.notices),
                )
            )
    run.trace.articles_set_aside = len(aside)
    return kept, aside


def summary_line(aside: list[SetAside]) -> str:
    """In words: "3 set aside as not evidence (1 retracted, 2 letter)"; "" when nothing was."""
    if not aside:
        return ""
    counts: dict[str, int] = {}
    for item in aside:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return f"{len(aside)} set aside as not evidence ({kinds})"
