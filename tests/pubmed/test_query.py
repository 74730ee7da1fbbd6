"""PubMed query syntax: parsing, normalisation, validation errors, tags and date ranges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinfo.errors import ClinfoError, QuerySyntaxError
from clinfo.pubmed.query import (
    KNOWN_TAGS,
    SHORT_TAG,
    BoolOp,
    Dates,
    Term,
    parse,
    terms,
    validate,
)


def test_single_word_and_run_of_words():
    assert parse("asthma") == Term("asthma")
    # A run of bare words stays one term: PubMed's term mapping sees "heart attack", not two words.
    node = parse("heart  attack")
    assert node == Term("heart attack")
    assert validate("heart  attack") == "heart attack"


def test_tag_binds_to_the_run_of_words_before_it_as_a_phrase():
    node = parse("kidney allograft[tiab]")
    assert node == Term("kidney allograft", "Title/Abstract")
    assert node.phrase
    assert not parse("kidney allograft").phrase


def test_left_to_right_without_precedence():
    # PubMed evaluates left to right: a OR b AND c is (a OR b) AND c.
    node = parse("a OR b AND c")
    assert node == BoolOp("AND", (BoolOp("OR", (Term("a"), Term("b"))), Term("c")))
    assert validate("a OR b AND c") == "(a OR b) AND c"
    assert validate("a OR (b AND c)") == "a OR (b AND c)"


def test_implicit_and_between_groups_and_flattening():
    assert validate('"x y" z (a OR b)') == '"x y" AND z AND (a OR b)'
    node = parse("a AND b AND c")
    assert isinstance(node, BoolOp) and len(node.children) == 3


def test_lowercase_operators_are_words():
    assert parse("tea and coffee") == Term("tea and coffee")


def test_not_and_and_not():
    assert parse("a NOT b NOT c") == BoolOp("NOT", (Term("a"), Term("b"), Term("c")))
    assert validate("asthma AND NOT copd") == "asthma NOT copd"


@pytest.mark.parametrize(
    "spelling,canonical",
    [
        ("tiab", "Title/Abstract"),
        ("Title/Abstract", "Title/Abstract"),
        ("TIAB", "Title/Abstract"),
        ("MeSH Terms", "MeSH Terms"),
        ("mh", "MeSH Terms"),
        ("Mesh", "MeSH Terms"),
        ("majr", "MeSH Major Topic"),
        ("MeSH Major Topic", "MeSH Major Topic"),
        ("pt", "Publication Type"),
        ("Publication Type", "Publication Type"),
        ("ti", "Title"),
        ("ab", "Abstract"),
        ("au", "Author"),
        ("la", "Language"),
        ("tw", "Text Word"),
        ("all", "All Fields"),
        ("sb", "Filter"),
        ("ta", "Journal"),
        ("nm", "Supplementary Concept"),
        ("sh", "MeSH Subheading"),
    ],
)
def test_known_tags_long_and_short_case_insensitive(spelling, canonical):
    node = parse(f"foo[{spelling}]")
    assert isinstance(node, Term) and node.field == canonical
    assert KNOWN_TAGS[spelling.lower()] == canonical
    assert validate(f"foo[{spelling}]") == f"foo[{SHORT_TAG[canonical]}]"


def test_noexp_and_proximity_modifiers():
    node = parse("Neoplasms[mh:noexp]")
    assert node == Term("Neoplasms", "MeSH Terms", noexp=True)
    assert validate("Neoplasms[MeSH Terms:NoExp]") == "Neoplasms[mh:noexp]"
    node = parse('"hip pain"[tiab:~2]')
    assert node == Term("hip pain", "Title/Abstract", quoted=True, proximity=2)
    assert validate('"hip pain"[Title/Abstract:~2]') == '"hip pain"[tiab:~2]'


def test_subheading_and_truncation_terms():
    node = parse("Neoplasms/therapy[mh] AND canc*")
    assert node.children[0] == Term("Neoplasms/therapy", "MeSH Terms")
    assert node.children[1].truncated


@pytest.mark.parametrize(
    "query,start,end",
    [
        ("2015:2020[dp]", "2015", "2020"),
        ("2015[dp]", "2015", "2015"),
        ("2015/01/01:2020/12/31[pdat]", "2015/01/01", "2020/12/31"),
        ("2015-1-5:2016-02[dp]", "2015/01/05", "2016/02"),
        ('"2015/01/01"[PDAT] : "2020/12/31"[PDAT]', "2015/01/01", "2020/12/31"),
        ('"2015"[Date - Publication] : "3000"[Date - Publication]', "2015", "3000"),
        ("2020 Jan[dp]", "2020/01", "2020/01"),
    ],
)
def test_date_ranges(query, start, end):
    node = parse(query)
    assert node == Dates("Date - Publication", start, end)
    assert parse(validate(query)) == node


def test_relative_dates_and_other_date_fields():
    assert parse('"last 5 years"[dp]') == Dates("Date - Publication", relative=(5, "years"))
    assert parse("2019:2020[edat]").field == "Date - Entry"


def test_date_range_inside_a_boolean_query():
    node = parse('(asthma[mh] OR wheez*[tiab]) AND "2015/01/01"[PDAT] : "2020/12/31"[PDAT] AND english[la]')
    assert isinstance(node, BoolOp) and node.op == "AND"
    assert node.children[1] == Dates("Date - Publication", "2015/01/01", "2020/12/31")
    assert node.children[2] == Term("english", "Language")


@pytest.mark.parametrize(
    "query,fragment",
    [
        ("", "empty query"),
        ("   ", "empty query"),
        ("(asthma OR copd", "'(' at character 1 is never closed"),
        ("asthma) AND copd", "')' at character 7 has no matching '('"),
        ("()", "empty parentheses"),
        ('"asthma AND copd', "unbalanced quotes"),
        ('""', "empty quoted phrase"),
        ("asthma AND", "operator AND at character 8 has no term after it"),
        ("OR asthma", "operator OR at character 1 has no term before it"),
        ("asthma AND OR copd", "operator OR at character 12 follows operator AND"),
        ("(asthma NOT) copd", "has no term after it"),
        ("asthma[foo]", "unknown field tag [foo] at character 7"),
        ("asthma[kw]", "unknown field tag [kw]"),
        ("asthma[tiab", "'[' at character 7 is never closed"),
        ("asthma]", "']' at character 7"),
        ("[tiab]", "does not follow a term"),
        ("(asthma OR copd)[tiab]", "follows ')'"),
        ("asthma[tiab][mh]", "second field tag"),
        ("asthma[tiab:noexp]", "unsupported modifier"),
        ("recent[dp]", "invalid date 'recent'"),
        ("2020/13[dp]", "invalid date"),
        ("2020:2010[dp]", "ends before it starts"),
        ("* AND x", "truncation '*' without a word"),
    ],
)
def test_syntax_errors_say_what_and_where(query, fragment):
    with pytest.raises(QuerySyntaxError) as info:
        validate(query)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(info.value, ClinfoError)


def test_error_messages_stay_on_one_line_with_newlines_in_the_tag():
    with pytest.raises(QuerySyntaxError) as info:
        parse("asthma[ti\nfoo]")
    assert "\n" not in str(info.value)


def test_terms_keeps_topical_words_only():
    q = '("Asthma"[mh] OR wheez*[tiab]) AND child* NOT mice[mh] AND english[la] AND 2015:2020[dp] AND review[pt]'
    assert terms(q) == ["asthma", "wheez", "child"]


def test_terms_falls_back_on_unparseable_text():
    assert terms("Does aspirin (in adults reduce stroke?") == ["does", "aspirin", "in", "adults", "reduce", "stroke"]


# Queries built from the grammar round-trip through validate() unchanged in meaning.
_word = st.from_regex(r"[A-Za-z][A-Za-z0-9\-/]{0,8}\*?", fullmatch=True).filter(lambda w: w not in ("AND", "OR", "NOT"))
_tag = st.sampled_from(
    ["", "[tiab]", "[Title/Abstract]", "[mh]", "[MeSH Terms:noexp]", "[majr]", "[pt]", "[ti]", "[ab]"]
)
_leaf = st.one_of(
    st.builds(lambda w, t: w + t, _word, _tag),
    st.builds(lambda a, b, t: f'"{a} {b}"{t}', _word, _word, _tag),
    st.builds(lambda y, z: f"{y}:{y + z}[dp]", st.integers(1950, 2020), st.integers(0, 10)),
)


def _compose(children):
    return st.builds(
        lambda a, op, b, paren: f"({a} {op} {b})" if paren else f"{a} {op} {b}",
        children,
        st.sampled_from(["AND", "OR", "NOT", ""]),
        children,
        st.booleans(),
    )


_query = st.recursive(_leaf, _compose, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_query)
def test_normalised_query_round_trips(query):
    normalised = validate(query)
    assert parse(normalised) == parse(query)
    assert validate(normalised) == normalised


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(list('ab ()"[]*:/-') + [" AND ", " OR ", " NOT ", "[tiab]", "[dp]", "[mh:noexp]", "2020", "x"]),
        max_size=30,
    ).map("".join)
)
def test_arbitrary_text_parses_or_raises_query_syntax_error(text):
    try:
        normalised = validate(text)
    except QuerySyntaxError as exc:
        assert "\n" not in str(exc)
    else:
        assert parse(normalised) == parse(text)


def test_deeply_alternating_operators_are_refused_not_recursed():
    query = " ".join(f"w{i} {'AND' if i % 2 else 'OR'}" for i in range(120)) + " end"
    with pytest.raises(QuerySyntaxError, match="nests more than"):
        validate(query)
    # A long flat chain is fine: it is one n-ary node.
    flat = " AND ".join(f"w{i}" for i in range(2000))
    assert len(parse(flat).children) == 2000
