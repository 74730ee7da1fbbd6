"""The design a title and abstract state, for records NLM has not indexed yet.

Reporting guidelines ask authors to name the design where a reader looks first: CONSORT 1a
("identification as a randomised trial in the title"), PRISMA 1 ("identify the report as a
systematic review"), STROBE 1a ("the study's design with a commonly used term in the title or the
abstract"), CARE ("case report" in the title). So the title is read first, its subtitle ("...: a
randomized controlled trial") before the rest; then the abstract, its methods before its background
and conclusions, where designs are named as topics ("previous trials showed", "a randomised trial
is needed"). Within each part the strongest design stated wins, except that what an article says it
is itself ("this review", "we report a case") outranks trials it only mentions. A design named as
something missing, wished for, or done by others is not what was done and is skipped.

A primary study whose subjects are animals (rats, mice, dogs... and no patients, volunteers or
other people) is an animal study, whatever its design, as with the MeSH check tags.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # design imports this module (lazily); at run time the kinds are plain strings
    from clinfo.appraisal.design import DesignKind

# secondary designs, whatever the subjects of the studies they gather: a meta-analysis or a review
# of animal studies is still one (``Design.human`` says whose); "animal/in-vitro" is a primary study
ANY_SUBJECTS: frozenset[str] = frozenset({"meta-analysis", "systematic review", "narrative review", "guideline"})


def _rx(*alternatives: str) -> re.Pattern[str]:
    # text is read one sentence a line; "^" starts a sentence
    return re.compile("|".join(alternatives), re.IGNORECASE | re.MULTILINE)


_RANDOMISED = r"randomi[sz]ed"
# "randomised (controlled, double-blind...) trials": a plural names trials in general or others'
_TRIAL_WORDS = r"(?:controlled|clinical|placebo-controlled|double-blind(?:ed)?|blinded|multi-?cent(?:er|re)|crossover)"
_PLURAL = rf"(?:(?:,? |-)(?:and |or )?{_TRIAL_WORDS})*,? (?:trials|studies)\b"
# random allocation, as trials report it; "randomly selected" or "a random sample" is sampling,
# and "random effects", "random blood glucose" are not designs at all
_ALLOCATION = (
    rf"(?<!non-)(?<!non )(?<!quasi-)(?<!quasi )(?<!mendelian )\b{_RANDOMISED}\b"
    rf"(?!{_PLURAL}| response\b)",
    r"(?<!mendelian )\brandomi[sz](?:ation|ing)\b",
    r"\brandomly (?:assigned|allocated|divided|split|grouped|given|treated|received|administered|ordered|"
    r"distributed (?:in)?to)\b",
    r"\bin (?:a )?random (?:design|fashion|manner)\b",
    r"\b(?:allocated|assigned|divided|distributed|treated|given) (?:\w+ ){0,3}(?:at random|in random fashion)\b",
    r"\bat random (?:to|into|between)\b",
    r"\brandom (?:allocation|assignment|order|sequence)\b",
    # "...: an RCT"; the plural names others' trials
    r"\b(?:an|this|our|the present|pilot|cluster|crossover|multicent(?:er|re)) (?:\w+ ){0,2}RCT\b",
)

# per design: what a title says, what an abstract says (the order of the table is the precedence)
_TITLE: tuple[tuple[DesignKind, re.Pattern[str]], ...] = (
    ("meta-analysis", _rx(r"\bmeta-?analys[ie]s\b", r"\bmeta-?regression\b")),
    ("systematic review", _rx(r"\bsystematic(?:al)? (?:\w+ ){0,2}reviews?\b", r"\bumbrella review\b")),
    ("randomised trial", _rx(*_ALLOCATION)),
    (
        "non-randomised trial",
        _rx(
            r"\bnon-? ?randomi[sz]ed\b",
            r"\bquasi-?(?:randomi[sz]ed|experimental)\b",
            r"\bsingle-arm\b",
            r"\bphase (?:i|ii|1|2|i/ii|1/2|ib|iia|iib|1b|2a|2b)\b[^.:;]{0,40}\b(?:trial|study)\b",
            r"\b(?:double|single|triple)-? ?blind(?:ed)?\b",
            r"\bplacebo-? ?controlled\b",
            r"\b(?:controlled|clinical|pilot|open|uncontrolled|therapeutic|comparative) (?:\w+ )?trial\b",
            r"\btrial of\b",
        ),
    ),
    ("case-control", _rx(r"\bcase-? ?control(?:led)?\b")),
    (
        "cohort",
        _rx(
            r"\bcohort\b",
            r"\b(?:prospective|retrospective|longitudinal|follow-up|population-based|register-based|"
            r"registry-based|observational) (?:\w+ ){0,2}(?:study|studies|analysis|review|evaluation|survey)\b",
            r"\blong-term (?:follow-up|results|outcomes?)\b",
        ),
    ),
    ("cross-sectional", _rx(r"\bcross-? ?sectional\b", r"\b(?:a|an) (?:\w+ ){0,3}survey\b", r"\bprevalence study\b")),
    (
        "case report/series",
        _rx(
            r"\bcase (?:report|series|study|presentation)\b",
            r"\b(?:a|an|one|two|three|four|five|\d+) (?:\w+ ){0,3}cases? of\b",
            r"\breport of (?:\w+ ){0,2}cases?\b",
            r"\bin (?:a|an|one|two|three) (?:\w+ ){0,2}"
            r"(?:patients?|(?:wo)?man|men|boy|girl|child|infant|siblings?|family)\b",
        ),
    ),
    (
        "guideline",
        _rx(
            r"(?<!appraisal of )(?<!quality of )(?<!adherence to )(?<!compliance with )(?<!review of )"
            r"(?<!practice )\b(?:(?:clinical )?practice )?guidelines?\b"
            r"(?! adherence| compliance| concordance| implementation)",
            r"\bconsensus (?:statement|conference|report|document|recommendations?)\b",
            r"\bposition (?:statement|paper)\b",
            r"\bpractice parameters?\b",
            r"\brecommendations\b(?! for (?:further|future) research)",
        ),
    ),
    (
        "narrative review",
        _rx(
            r"(?<!retrospective )(?<!chart )(?<!record )(?<!records )(?<!case )\breview\b",
            r"\boverview\b",
            r"\bupdate\b",
            r"\b(?:current|recent) (?:concepts|advances|developments|progress|perspectives|status|knowledge)\b",
            r"\bstate of the art\b",
        ),
    ),
)

_ABSTRACT: dict[DesignKind, re.Pattern[str]] = {
    "meta-analysis": _rx(
        r"\bmeta-?analys[ie]s\b", r"\bmeta-?regression\b", r"\bpooled (?:odds|risk|relative|hazard)\b"
    ),
    "systematic review": _rx(
        r"\bsystematic(?:al)? (?:\w+ ){0,2}(?:review|search|literature search)\b",
        r"\bsystematically (?:searched|reviewed)\b",
        r"\bumbrella review\b",
        r"\bPRISMA\b",
        r"\b(?:we )?searched (?:\w+ ){0,6}(?:pubmed|medline|embase|cochrane|web of science|scopus|cinahl|databases)\b",
        r"\bsearch(?:es)? (?:of|in) (?:[\w,-]+ ){0,8}(?:pubmed|medline|embase|cochrane|web of science|scopus|cinahl|"
        r"databases)\b",
        r"\breview authors\b",
    ),
    "guideline": _rx(
        r"\b(?:this|these|the present|the updated|our) (?:\w+ ){0,3}(?:guidelines?|recommendations|consensus statement|"
        r"position statement|practice parameter)\b",
        r"\b(?:guideline|consensus) (?:panel|committee|development group|working group)\b",
        r"\bdelphi\b",
    ),
    "case report/series": _rx(
        r"\b(?:we|the authors?) (?:\w+ )?(?:report|describe|present|discuss|documented) (?:here |herein )?"
        r"(?:a|an|the|one|two|three|four|five|six|seven|eight|nine|ten|\d+) (?:\w+ ){0,4}?"
        r"(?:cases?|patients?|(?:wo)?m[ae]n|males?|females?|boys?|girls?|infants?|child(?:ren)?|neonates?|newborns?|"
        r"famil(?:y|ies)|siblings|brothers|sisters|twins|kindreds?|pedigrees?)\b",
        r"\b(?:a|an|the|one|two|three|four|five|six|seven|eight|nine|ten|\d+) (?:\w+ ){0,4}?"
        r"(?:cases?|patients?|(?:wo)?m[ae]n|males?|females?|boys?|girls?|infants?|child(?:ren)?|neonates?|newborns?|"
        r"famil(?:y|ies)|siblings|brothers|sisters|twins|kindreds?|pedigrees?)\b[^.;\n]{0,150}?"
        r"\b(?:is|are) (?:here |herein |briefly )?(?:reported|presented|described)\b",
        r"\b(?:a|an) \d+[- ](?:years?|yrs?|months?|weeks?|days?)[- ]old\b",
        r"^(?:a|an|one) (?:\w+ ){0,3}?(?:patient|(?:wo)?man|male|female|boy|girl|infant|child|neonate|newborn)"
        r" (?:who|with|was|had|presented|developed|in whom)\b",
        r"\b(?:this|the present) (?:\w+ )?(?:report|paper|article|communication) (?:\w+ )?"
        r"(?:presents|describes|reports|documents)\b",
        r"\b(?:unusual|rare|unique) (?:\w+ ){0,6}(?:is|are|was) (?:here )?(?:reported|presented|described)\b",
        r"\bwe (?:have )?(?:report(?:ed)?|describe[ds]?|present(?:ed)?) (?:here )?(?:a|an) (?:\w+ ){0,3}?"
        r"(?:instance|example|occurrence)\b",
        r"\bcase (?:report|series|presentation)\b",
    ),
    "narrative review": _rx(
        r"\b(?:this|the present|our|in this) (?:\w+ ){0,2}(?:review|overview)\b",
        r"\b(?:we|authors|article|paper|chapter) (?:\w+ )?(?:reviews?|summari[sz]es?|overviews?)\b",
        r"\b(?:is|are) (?:briefly |critically |extensively )?reviewed\b",
        r"(?<!systematic )\b(?:narrative|literature|scoping) review\b",
        r"\breview (?:of )?the (?:\w+ )?(?:literature|evidence)\b",
        r"\b(?:aim|purpose|objective|goal)s? (?:of this (?:\w+ )?)?(?:is|was) to (?:review|summari[sz]e|"
        r"provide an (?:overview|update)|discuss|highlight)\b",
        r"\bto review (?:the )?(?:current|recent|existing|available|published|latest|state)\b",
        r"\b(?:here|in this (?:article|paper|chapter|commentary|perspective)),? we (?:\w+ )?(?:discuss|highlight|"
        r"summari[sz]e|outline|describe|examine|explore|consider)\b",
    ),
    "randomised trial": _rx(*_ALLOCATION),
    "non-randomised trial": _rx(
        r"\bnon-? ?randomi[sz]ed\b",
        r"\bquasi-?(?:randomi[sz]ed|experimental)\b",
        r"\bsingle-arm\b",
        r"\bphase (?:i|ii|1|2|i/ii|1/2|ib|iia|iib|1b|2a|2b)\b[^.;\n]{0,40}\b(?:trial|study)\b",
        r"\b(?:double|single|triple)-? ?blind(?:ed)?\b",
        r"\bplacebo-? ?controlled\b",
        r"\b(?:controlled|clinical|pilot|open|uncontrolled) (?:\w+ )?trial\b",
        r"\b(?:blind|controlled) (?:\w+ )?study\b",
    ),
    "case-control": _rx(r"\bcase-? ?control(?:led)?\b"),
    "cohort": _rx(
        r"\bcohort\b",
        r"\b(?:prospective|retrospective|longitudinal|follow-up|population-based|register-based|registry-based|"
        r"observational) (?:\w+ ){0,3}(?:study|studies|analysis|review|evaluation)\b",
        r"\bretrospectively (?:reviewed|analy[sz]ed|studied|evaluated|identified|collected)\b",
        r"\b(?:medical|hospital|clinical|patient|case) (?:records|charts|notes)\b",
        r"\bwere followed(?: up)? for\b",
    ),
    "cross-sectional": _rx(
        r"\bcross-? ?sectional\b",
        r"\b(?:questionnaire|online|web-based|national|telephone|household)(?:-based)? survey\b",
        r"\bsurvey (?:was|were) (?:conducted|administered|distributed|sent|carried out)\b",
        r"\bprevalence study\b",
    ),
}
# the abstract's precedence: what the article says it is (review, case, guideline) before the
# trials it may only mention; among studies, the strongest design first
_ABSTRACT_ORDER: tuple[DesignKind, ...] = (
    "meta-analysis",
    "systematic review",
    "guideline",
    "case report/series",
    "narrative review",
    "randomised trial",
    "non-randomised trial",
    "case-control",
    "cohort",
    "cross-sectional",
)

# words before a design, in its sentence, that make it something not done here
_NOT_DONE_BEFORE = re.compile(
    r"\b(?:needs?|needed|warrant(?:ed|s)?|requir(?:ed|es?)|lack(?:s|ing)?|no|not|unlike|previous(?:ly)?|prior|earlier|"
    r"future|further|should|would|could|might|other|published|existing|few|several|many|most|some|numerous|"
    r"limited|absence|until|ongoing|planned|larger|more|additional|pending|included|including|eligible|will|from)"
    r"\b[^.;\n]*$",
    re.IGNORECASE,
)
# words that wish for a design: "this series supports the need for a randomised study" wishes, even
# after "this"; only this article's words after the wish make it its own. Narrower than the words
# above: "in this trial, patients who needed surgery will be randomised" is a trial (or its protocol)
_WISH = re.compile(r"\b(?:need|call|case)s? for\b|\bwarrant(?:s|ed)?\b|\bfuture\b", re.IGNORECASE)
# words that make it this article's own design again, even after the words above
_OWN = re.compile(
    r"\b(?:this|our|we|present|current study|here|herein)\b[^.;\n]*$",
    re.IGNORECASE,
)
# words after a design, in its sentence, that make it someone else's
_NOT_DONE_AFTER = re.compile(
    r"^[^.;\n]{0,60}?\b(?:(?:is|are) (?:needed|warranted|required|lacking|scarce|limited|ongoing|planned|underway|"
    r"recommended)|should be|(?:have|has) (?:been )?(?:shown|demonstrated|reported|suggested|found|established|"
    r"failed|published|conducted|performed|proven)|(?:showed|demonstrated|suggested|reported|found) that)\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[])|\n")
_SECTION = re.compile(r"^\s*([A-Za-z][A-Za-z ,&/-]{1,60}):\s")
# sections where designs are named as topics: what others did, or what should be done next
_BACKGROUND = re.compile(
    r"background|introduction|context|rationale|importance|conclusion|implication|interpretation|"
    r"discussion|significance|relevance|perspective|limitation|future",
    re.IGNORECASE,
)


def _stated(pattern: re.Pattern[str], text: str) -> bool:
    """Whether ``text`` (sentences, one a line) names the design as what was done, not as a topic."""
    for match in pattern.finditer(text):
        start = text.rfind("\n", 0, match.start()) + 1
        end = text.find("\n", match.end())
        before = text[max(start, match.start() - 60) : match.start()]
        after = text[match.end() : end if end >= 0 else len(text)]
        if _NOT_DONE_AFTER.search(after) and not _OWN.search(before):
            continue
        if _NOT_DONE_BEFORE.search(before) and not _OWN.search(before):
            continue
        wishes = [w.end() for w in _WISH.finditer(before)]
        if wishes and not _OWN.search(before[wishes[-1] :]):
            continue
        return True
    return False


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def _title_design(title: str) -> DesignKind | None:
    # the subtitle is where CONSORT, PRISMA and STROBE put the design
    parts = re.split(r":|\.\s+|\s[-–—]\s", title.strip().rstrip("."))
    for text in ([parts[-1]] if len(parts) > 1 else []) + [title]:
        for kind, pattern in _TITLE:
            if _stated(pattern, text):
                return kind
    return None


# section labels that say what the article is ("PURPOSE OF REVIEW", "CASE PRESENTATION", "DATA SOURCES")
_LABELS: tuple[tuple[DesignKind, re.Pattern[str]], ...] = (
    (
        "systematic review",
        _rx(
            r"\bdata (?:sources|extraction|synthesis|collection and analysis)\b",
            r"\b(?:study|selection|eligibility) (?:selection|criteria)\b",
            r"\bsearch (?:methods|strategy)\b",
        ),
    ),
    ("case report/series", _rx(r"\bcase (?:report|presentation|description|summary|history|details)s?\b")),
    (
        "narrative review",
        _rx(
            r"\bof (?:this )?review\b",
            r"\brecent findings\b",
            r"\bopinion statement\b",
            r"\bareas covered\b",
            r"\bexpert (?:opinion|commentary)\b",
        ),
    ),
)


def _abstract_parts(abstract: str) -> tuple[set[DesignKind], str, str]:
    """(designs its section labels name, methods and the rest, background and conclusions);
    the text one sentence a line."""
    labelled: set[DesignKind] = set()
    main: list[str] = []
    topical: list[str] = []
    for line in abstract.split("\n"):
        label = _SECTION.match(line)
        if label:
            labelled.update(kind for kind, pattern in _LABELS if pattern.search(label.group(1)))
        target = topical if label and _BACKGROUND.search(label.group(1)) else main
        target += _sentences(line)
    return labelled, "\n".join(main), "\n".join(topical)


# a handful of patients and no other design stated: a case series
_FEW_PATIENTS = _rx(
    r"\b(?:two|three|four|five|six|seven|eight|nine|ten|[2-9]|10) (?:\w+ ){0,2}(?:patients|cases|infants|children|"
    r"boys|girls|(?:wo)?men|siblings|families)\b"
)


def _abstract_design(abstract: str) -> DesignKind | None:
    labelled, main, topical = _abstract_parts(abstract)
    for text in (main, topical):
        for kind in _ABSTRACT_ORDER:
            if kind in labelled or _stated(_ABSTRACT[kind], text):
                return kind
    if _FEW_PATIENTS.search(main):
        return "case report/series"
    return None


_ANIMALS = _rx(
    r"\b(?:rats?|mice|mouse|murine|rabbits?|guinea[- ]pigs?|hamsters?|gerbils?|voles?|dogs?|canine|cats?|feline|pigs?|"
    r"piglets?|swine|porcine|sheep|ovine|lambs?|ewes?|goats?|cattle|cows?|calf|calves|heifers?|bulls?|bovine|horses?|"
    r"equine|ponies|monkeys?|macaques?|macaca|baboons?|primates?|chickens?|chicks?|hens?|broilers?|quails?|pigeons?|"
    r"turkeys?|ducks?|birds?|avian|fish|zebrafish|trout|salmon|frogs?|toads?|xenopus|drosophila|rodents?|ferrets?|"
    r"minks?|pups|animals?)\b"
)
# words for people that animal studies do not use of their animals ("infants", "males", "pregnancy" they do)
_PEOPLE = _rx(
    r"\b(?:patients?|volunteers?|participants?|(?:wo)?m[ae]n|children|child|boys?|girls?|persons?|people|humans?|"
    r"students?|respondents?|physicians?|nurses?|clinicians?|surgeons?|inpatients?|outpatients?|smokers|athletes|"
    r"elderly|adolescents?|clinical)\b"
)


def is_animal_study(title: str, abstract: str) -> bool:
    """Whether the subjects named are animals: animal words, and people named at most half as often."""
    text = f"{title}\n{abstract}"
    animals = len(_ANIMALS.findall(text))
    return animals > 0 and animals >= 2 * len(_PEOPLE.findall(text))


# a title that says "trial" or "prospective study" without saying how the arms were formed
_GENERIC_TITLE: frozenset[DesignKind] = frozenset({"non-randomised trial", "cohort"})
_NOT_RANDOMISED = _rx(r"\bnon-? ?randomi[sz]ed\b", r"\bquasi-?(?:randomi[sz]ed|experimental)\b", r"\bsingle-arm\b")


def design_from_text(title: str, abstract: str) -> DesignKind | None:
    title, abstract = title or "", abstract or ""
    kind = _title_design(title)
    if kind is None:
        kind = _abstract_design(abstract)
    elif kind in _GENERIC_TITLE and not _NOT_RANDOMISED.search(title):
        # "A controlled trial of X" whose abstract says the patients were randomised
        if _abstract_design(abstract) == "randomised trial":
            kind = "randomised trial"
    if kind not in ANY_SUBJECTS and is_animal_study(title, abstract):
        return "animal/in-vitro"
    return kind
