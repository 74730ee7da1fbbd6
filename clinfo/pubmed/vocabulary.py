"""NLM's vocabulary that clinfo reads: publication types, MeSH design descriptors and check tags,
and the RefTypes of ``CommentsCorrections`` links.

The names are NLM's, spelled as PubMed records carry them; what clinfo makes of them (levels of
evidence, what is set aside) lives in :mod:`clinfo.appraisal`.
"""

from __future__ import annotations

# Publication types that name a study design, strongest first (the first one a record carries
# wins), with the design each names (:data:`clinfo.appraisal.design.DesignKind`)
DESIGN_PUBLICATION_TYPES: tuple[tuple[str, str], ...] = (
    ("Meta-Analysis", "meta-analysis"),
    ("Network Meta-Analysis", "meta-analysis"),
    ("Systematic Review", "systematic review"),
    ("Randomized Controlled Trial", "randomised trial"),
    ("Equivalence Trial", "randomised trial"),
    ("Pragmatic Clinical Trial", "randomised trial"),
    ("Clinical Trial, Phase III", "randomised trial"),
    ("Clinical Trial, Phase IV", "randomised trial"),
    ("Controlled Clinical Trial", "non-randomised trial"),
    ("Clinical Trial, Phase I", "non-randomised trial"),
    ("Clinical Trial, Phase II", "non-randomised trial"),
    ("Clinical Trial", "non-randomised trial"),
    ("Observational Study", "cohort"),
    # veterinary trials and studies: evidence about animals, whatever their design
    ("Randomized Controlled Trial, Veterinary", "animal/in-vitro"),
    ("Clinical Trial, Veterinary", "animal/in-vitro"),
    ("Observational Study, Veterinary", "animal/in-vitro"),
    ("Practice Guideline", "guideline"),
    ("Guideline", "guideline"),
    ("Consensus Development Conference", "guideline"),
    ("Consensus Development Conference, NIH", "guideline"),
    ("Case Reports", "case report/series"),
    ("Review", "narrative review"),
    ("Scoping Review", "narrative review"),
)
# MeSH descriptors that name a design NLM indexes as a subject, not as a publication type
DESIGN_MESH: tuple[tuple[str, str], ...] = (
    ("Prospective Studies", "cohort"),
    ("Retrospective Studies", "cohort"),
    ("Cohort Studies", "cohort"),
    ("Longitudinal Studies", "cohort"),
    ("Follow-Up Studies", "cohort"),
    ("Case-Control Studies", "case-control"),
    ("Cross-Sectional Studies", "cross-sectional"),
)

# MeSH check tags saying who was studied
HUMANS = "Humans"
ANIMALS = "Animals"
# PubMed's sensitive form of "human studies only": it keeps records NLM has not tagged yet
HUMANS_ONLY = "NOT (animals[mh] NOT humans[mh])"

# Publication types of records that report no study of their own (notices and opinion), with the
# kind each is (:data:`clinfo.appraisal.evidence_status.PublicationKind`), in the order reasons are given
NOTICE_PUBLICATION_TYPES: dict[str, str] = {
    "Retraction of Publication": "retraction notice",
    "Published Erratum": "erratum",
    "Expression of Concern": "expression of concern",
    "Comment": "comment",
    "Letter": "letter",
    "Editorial": "editorial",
    "News": "news",
    "Newspaper Article": "news",
}

RETRACTED_PUBLICATION = "Retracted Publication"
# CommentsCorrections RefTypes on a record saying it was retracted, naming the notice (or the
# replacement) that did it
RETRACTED_BY = ("RetractionIn", "RetractedandRepublishedIn")
# RefTypes on a notice naming the record it is about, by the notice's kind
NOTICE_OF = {
    "retraction notice": ("RetractionOf", "RetractedandRepublishedFrom"),
    "erratum": ("ErratumFor",),
    "expression of concern": ("ExpressionOfConcernFor",),
    "comment": ("CommentOn",),
}
# RefTypes on a kept article that its reader must see, with how they are named
FLAGGED: dict[str, str] = {
    "ExpressionOfConcernIn": "expression of concern",
    "ErratumIn": "erratum",
}
