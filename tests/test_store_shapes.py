"""The store's pure helpers: content blocks, ages, cursors, snippets, JSON."""

import datetime as dt

import pytest

from agents.store import InvalidInput, jsonable, redact
from agents.store.shapes import (
    MARK_CLOSE,
    MARK_OPEN,
    check_blocks,
    decode_cursor,
    encode_cursor,
    mark_matches,
    parse_age,
    query_terms,
    snippet,
    text_of,
    title_of,
    words_of,
)


def test_a_string_is_one_text_block():
    assert check_blocks("hi") == [{"type": "text", "text": "hi"}]


@pytest.mark.parametrize("content,message", [
    ([], "non-empty list"),
    ("", None),
    ([{"type": "text"}], r"block 0 \(text\)"),
    ([{"type": "tool_use", "id": "t", "name": "x", "input": "not a dict"}], r"block 0 \(tool_use\)"),
    ([{"type": "text", "text": "ok"}, {"type": "tool_result", "content": "x"}], r"block 1 \(tool_result\)"),
    ([{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}], r"block 0 \(tool_result\)"),
    (["text"], "type must be"),
])
def test_malformed_blocks_are_refused_with_their_position(content, message):
    if message is None:
        assert check_blocks(content) == [{"type": "text", "text": ""}]
        return
    with pytest.raises(InvalidInput, match=message):
        check_blocks(content)


def test_search_text_covers_text_tool_names_and_results_without_control_characters():
    blocks = [
        {"type": "text", "text": f"a{MARK_OPEN}b"},
        {"type": "tool_use", "id": "t", "name": "calc.add", "input": {"a": 1}},
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "42"}]},
    ]
    assert text_of(blocks) == "a b\ncalc.add\n42"


def test_title_is_the_collapsed_first_text():
    assert title_of([{"type": "text", "text": "  hello \n world "}]) == "hello world"
    assert len(title_of([{"type": "text", "text": "word " * 50}])) == 80


@pytest.mark.parametrize("text,expected", [
    ("30d", dt.timedelta(days=30)), ("12h", dt.timedelta(hours=12)), ("2w", dt.timedelta(weeks=2)),
    ("90m", dt.timedelta(minutes=90)), (" 45s ", dt.timedelta(seconds=45)),
])
def test_ages(text, expected):
    assert parse_age(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "-1d", "1.5d", "30 days", "", "٣d"])
def test_bad_ages_explain_the_format(text):
    with pytest.raises(InvalidInput, match="e.g. 30d"):
        parse_age(text)


def test_an_age_no_date_can_reach_is_refused_not_a_crash():
    with pytest.raises(InvalidInput, match="longer than any date"):
        parse_age("99999999999999d")


def test_cursors_round_trip_and_garbage_is_refused():
    assert decode_cursor(encode_cursor(150)) == 150
    assert decode_cursor(None) == 0
    for bad in ("xyz", encode_cursor(1)[:-1] + "!", "b2Zm"):
        with pytest.raises(InvalidInput, match="bad cursor"):
            decode_cursor(bad)


def test_snippet_windows_around_the_first_match():
    marked = "x" * 300 + f" the {MARK_OPEN}running{MARK_CLOSE} dog " + "y" * 300
    segments = snippet(marked, width=100)
    assert segments[0] == ("…", False) and segments[-1] == ("…", False)
    assert ("running", True) in segments
    assert sum(len(t) for t, _ in segments[1:-1]) <= 100


def test_snippet_closes_a_match_cut_by_the_window():
    segments = snippet(f"ab {MARK_OPEN}{'z' * 50}{MARK_CLOSE}", width=20)
    assert segments[-2][1] is True and segments[-1] == ("…", False)


def test_jsonable_and_redact():
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert jsonable({"a": [when], "b": 1}) == {"a": ["2026-01-02T03:04:05+00:00"], "b": 1}
    assert redact("ws://root:secret@db:8000") == "ws://db:8000"
    assert redact("surrealkv:///var/sessions") == "surrealkv:///var/sessions"


def test_index_words_are_distinct_stems_without_accents_stopwords_or_punctuation():
    assert words_of("The invoices are RUNNING late; invoice runs!") == ["invoic", "late", "run"]
    assert words_of("Café déjà vu") == ["cafe", "deja", "vu"]
    assert words_of("Привет мир") == ["мир", "привет"], "other scripts are kept"
    assert words_of("x" * 41 + " ok") == ["ok"]


def test_query_terms_match_the_index_words():
    assert query_terms("Invoice?!") == words_of("invoices")
    assert query_terms("?!") == [] and query_terms(None) == [] and query_terms("the of") == []


def test_matches_are_marked_by_stem():
    marked = mark_matches("Invoices are running, the run ends.", query_terms("run"))
    assert marked == f"Invoices are {MARK_OPEN}running{MARK_CLOSE}, the {MARK_OPEN}run{MARK_CLOSE} ends."
