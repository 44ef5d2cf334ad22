"""The pure parts of the chat clients: run state, error words, terminal lines, and the page itself."""

import json
import re
from pathlib import Path

import pytest

from exoclaw.client import (
    REASONS,
    GatewayError,
    RunState,
    SeqGap,
    done_line,
    history_lines,
    plain_words,
    tool_call_line,
    tool_result_line,
)

STATIC = Path(__file__).resolve().parent.parent / "exoclaw" / "static" / "exoclaw"


def ev(seq, type, **fields):
    return {"run_id": "r1", "session_key": "agent:demo:web:-:p", "seq": seq, "type": type, **fields}


def test_run_state_folds_a_tool_using_run_in_order():
    run = RunState("r1")
    events = [
        ev(1, "delta", text="Let me "),
        ev(2, "delta", text="compute. "),
        ev(3, "tool_call", call_id="c1", name="calc", input={"expr": "6*7"}),
        ev(4, "tool_result", call_id="c1", name="calc", content="42", is_error=False, error_kind=None, duration_ms=3.2),
        ev(5, "delta", text="It is 42."),
        ev(6, "done", stop_reason="end_turn", usage={"input_tokens": 5, "output_tokens": 7}, timings={}),
    ]
    assert [run.apply(e) for e in events] == [True] * 6
    assert run.text == "Let me compute. It is 42."
    assert run.tools["c1"].input == {"expr": "6*7"}
    assert (run.tools["c1"].content, run.tools["c1"].is_error, run.tools["c1"].duration_ms) == ("42", False, 3.2)
    assert run.finished and run.done["stop_reason"] == "end_turn" and run.last_seq == 6


def test_run_state_drops_replayed_events_so_text_is_not_doubled():
    run = RunState("r1")
    for e in [ev(1, "delta", text="a "), ev(2, "delta", text="b ")]:
        run.apply(e)
    # What chat.subscribe replays after a reconnect can overlap what arrived before the drop.
    assert run.apply(ev(2, "delta", text="b ")) is False
    assert run.apply(ev(3, "delta", text="c")) is True
    assert run.text == "a b c"


def test_run_state_refuses_a_gap_and_stays_where_it_was():
    run = RunState("r1")
    run.apply(ev(1, "delta", text="a"))
    with pytest.raises(SeqGap, match="expected seq 2, got 4"):
        run.apply(ev(4, "delta", text="d"))
    assert run.last_seq == 1 and run.text == "a"


def test_run_state_error_event_finishes_the_run_with_words():
    run = RunState("r1")
    run.apply(ev(1, "error", reason="some_provider_reason", message="The provider is overloaded (529)."))
    assert run.finished and run.done is None
    assert run.error_words == "The provider is overloaded (529)."


def test_tool_result_without_its_call_still_records_the_result():
    run = RunState("r1")
    run.apply(ev(1, "tool_result", call_id="c9", name="calc", content="boom", is_error=True, error_kind="trap"))
    assert run.tools["c9"].is_error and run.tools["c9"].error_kind == "trap"


def test_plain_words_prefers_our_sentence_then_the_gateways_message():
    assert plain_words("session_busy", "busy") == REASONS["session_busy"]
    assert plain_words("some_new_reason", "Something specific happened") == "Something specific happened"
    assert "no reason" in plain_words(None, "")


def test_gateway_error_reads_the_reason_from_the_error_object():
    e = GatewayError.from_error({"code": -32001, "message": "Unauthorized", "data": {"reason": "token_invalid"}})
    assert (e.code, e.reason) == (-32001, "token_invalid")
    assert "token was refused" in str(e)
    odd = GatewayError.from_error({"code": -32602, "message": "Invalid params: text is required", "data": "x"})
    assert odd.reason is None and str(odd) == "Invalid params: text is required"


def test_terminal_lines_for_tool_calls_are_compact():
    assert tool_call_line({"name": "calc", "input": {"expr": "6*7"}}) == '⚙ calc {"expr": "6*7"}'
    assert tool_result_line({"name": "calc", "content": "42", "duration_ms": 3.4}) == "  → 42 (3 ms)"
    failed = tool_result_line(
        {"name": "http_get", "content": "host not granted", "is_error": True, "error_kind": "host_denied"}
    )
    assert failed == "  ✗ http_get failed: host_denied: host not granted"
    long = tool_call_line({"name": "echo", "input": {"text": "x" * 500}})
    assert len(long) < 140 and long.endswith("…")


def test_done_line_shows_stop_reason_timings_and_usage():
    line = done_line(
        {"stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 9},
         "timings": {"first_delta_ms": 4.2, "total_ms": 120.6}}
    )
    assert line == "end_turn · 121 ms · first token 4 ms · 3 in / 9 out tokens"


def test_history_lines_show_text_tool_uses_and_results():
    def message(seq, role, block):
        return {"seq": seq, "role": role, "content": [block]}

    messages = [
        message(1, "user", {"type": "text", "text": '/tool calc {"expr": "6*7"}'}),
        message(2, "assistant", {"type": "tool_use", "id": "c1", "name": "calc", "input": {"expr": "6*7"}}),
        message(3, "user", {"type": "tool_result", "tool_use_id": "c1", "content": "42", "is_error": False}),
        message(4, "assistant", {"type": "text", "text": "42"}),
    ]
    assert history_lines(messages) == [
        'user> /tool calc {"expr": "6*7"}',
        '⚙ calc {"expr": "6*7"}',
        "  → 42",
        "assistant> 42",
    ]


@pytest.mark.django_db
def test_chat_page_embeds_the_reason_table_and_forbids_outside_resources(client):
    response = client.get("/")
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    html = response.content.decode()
    reasons = json.loads(re.search(r'<script id="reasons" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert reasons == REASONS
    assert "/admin/login/?next=/" in html


def test_chat_page_assets_reference_nothing_outside_the_server():
    template = (Path(__file__).resolve().parent.parent / "exoclaw" / "templates" / "chat.html").read_text()
    css = (STATIC / "chat.css").read_text()
    for text in [template, (STATIC / "chat.js").read_text(), css]:
        assert not re.search(r"https?://|//cdn", text)
    assert not re.search(r"@import|url\(", css)


def test_a_tool_error_names_its_kind_once():
    from exoclaw.client import tool_result_line

    event = {"name": "http_get.fetch", "is_error": True, "error_kind": "host_denied", "duration_ms": 3,
             "content": "host_denied: HTTP request to http://example.com/ is not allowed"}
    assert tool_result_line(event) == (
        "  ✗ http_get.fetch failed (3 ms): host_denied: HTTP request to http://example.com/ is not allowed"
    )
    assert tool_result_line({**event, "content": "the plug-in said no"}).endswith("failed (3 ms): host_denied: the plug-in said no")
