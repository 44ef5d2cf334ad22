import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.providers.sse import SSEDecoder, SSEError, SSEvent, parse


def feed_in_pieces(stream: bytes, size: int) -> list[SSEvent]:
    decoder = SSEDecoder()
    events = []
    for i in range(0, len(stream), size):
        events += decoder.feed(stream[i : i + size])
    return events + decoder.close()


def test_event_and_data_fields_make_one_event():
    assert parse(b'event: ping\ndata: {"type": "ping"}\n\n') == [SSEvent("ping", '{"type": "ping"}')]


def test_event_without_event_field_is_a_message():
    assert parse(b"data: [DONE]\n\n") == [SSEvent("message", "[DONE]")]


def test_multi_line_data_is_joined_with_newlines():
    assert parse(b"data: first\ndata:second\ndata:  third\n\n") == [SSEvent(data="first\nsecond\n third")]


def test_crlf_cr_and_lf_line_endings_are_all_accepted():
    stream = b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n"
    assert parse(stream) == [SSEvent("a", "1"), SSEvent("b", "2"), SSEvent("message", "3")]


def test_comments_are_ignored():
    assert parse(b": keep-alive\n\n:another\ndata: x\n: inside\n\n") == [SSEvent(data="x")]


def test_id_persists_and_retry_is_reported():
    stream = b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nid\ndata: c\n\n"
    assert parse(stream) == [SSEvent(data="a", id="7", retry=1500), SSEvent(data="b", id="7", retry=1500),
                             SSEvent(data="c", id="", retry=1500)]


def test_malformed_retry_and_id_with_nul_are_ignored():
    assert parse(b"retry: 12a\nid: x\x00y\ndata: a\n\n") == [SSEvent(data="a")]


def test_unknown_fields_and_lines_without_colon_are_ignored():
    assert parse(b"foo: bar\nnonsense\ndata\ndata: z\n\n") == [SSEvent(data="\nz")]


def test_block_without_data_dispatches_nothing_and_resets_the_event_type():
    assert parse(b"event: lonely\n\ndata: x\n\n") == [SSEvent(data="x")]


def test_only_one_leading_space_is_stripped_and_colons_in_values_kept():
    assert parse(b'data:  {"a": "b:c"}\n\n') == [SSEvent(data=' {"a": "b:c"}')]


def test_leading_byte_order_mark_is_dropped():
    assert parse(b"\xef\xbb\xbfdata: x\n\n") == [SSEvent(data="x")]


def test_event_without_closing_blank_line_is_discarded_at_end_of_stream():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: complete\n\ndata: cut") == [SSEvent(data="complete")]
    assert decoder.pending
    assert decoder.close() == []


def test_decoder_not_pending_after_a_complete_event():
    decoder = SSEDecoder()
    decoder.feed(b"data: x\n\n")
    assert not decoder.pending


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_chunks_split_anywhere_give_the_same_events(size):
    stream = "event: a\r\ndata: héllo ✓\r\n\r\n: c\r\ndata: 2\r\rdata: 3\n\n".encode()
    assert feed_in_pieces(stream, size) == parse(stream)
    assert parse(stream) == [SSEvent("a", "héllo ✓"), SSEvent(data="2"), SSEvent(data="3")]


def test_cr_at_end_of_chunk_waits_for_a_possible_lf():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r\n\r") == []
    assert decoder.feed(b"\n") == [SSEvent(data="x")]


def test_invalid_utf8_is_an_error():
    with pytest.raises(SSEError, match="not valid UTF-8"):
        parse(b"data: \xff\xfe\n\n")


def test_stream_ending_inside_a_utf8_character_is_an_error():
    decoder = SSEDecoder()
    decoder.feed(b"data: \xe2\x9c")
    with pytest.raises(SSEError, match="inside a UTF-8 character"):
        decoder.close()


def test_over_long_line_is_an_error():
    decoder = SSEDecoder(max_line=16)
    with pytest.raises(SSEError, match="longer than 16"):
        decoder.feed(b"data: " + b"x" * 20)


def test_over_long_complete_line_is_an_error():
    with pytest.raises(SSEError, match="longer than 16"):
        SSEDecoder(max_line=16).feed(b"data: " + b"x" * 20 + b"\n\n")


def test_over_long_data_across_lines_is_an_error():
    decoder = SSEDecoder(max_line=16)
    with pytest.raises(SSEError, match="data longer than 16"):
        decoder.feed(b"data: 0123456789\ndata: 0123456789\n")


@given(st.lists(st.tuples(st.sampled_from(["event", "data", "id", ":", "retry", "x"]),
                          st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=12)),
                max_size=12),
       st.sampled_from(["\n", "\r", "\r\n"]), st.integers(1, 9))
def test_any_chunking_of_any_stream_gives_the_same_events(fields, newline, size):
    lines = []
    for name, value in fields:
        lines.append(f"{name}: {value}" if name != ":" else f":{value}")
        if value.endswith("!"):
            lines.append("")
    stream = (newline.join(lines) + newline * 2).encode()
    assert feed_in_pieces(stream, size) == parse(stream)
