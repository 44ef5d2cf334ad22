"""Property: whatever a client sends, every frame gets a spec-correct JSON-RPC answer, or none when it
held only notifications, and the connection keeps answering. Never a crash, never a hang."""

import json
import math
import uuid

import pytest
from django.conf import settings
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from exoclaw.gateway.errors import CODES
from tests.gateway_support import LOOPBACK, communicator, connected, fresh_throttle  # noqa: F401

KNOWN_CODES = {c.code for c in CODES}
METHODS = ["ping", "status", "agents.list", "plugin.list", "routing.resolve", "auth", "chat.send", "sessions.reset"]

odd_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)  # surrogates, controls, astral
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | odd_text
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(odd_text, c, max_size=4), max_leaves=12)
ids = st.none() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.lists(st.integers(), max_size=1)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2]),
        "method": st.sampled_from(METHODS) | odd_text | st.integers(),
        "params": st.dictionaries(st.sampled_from(["channel", "token", "peer", "x"]), values, max_size=3) | values,
        "id": ids,
        "extra": values,
    },
)
messages = envelopes | st.lists(envelopes | values, max_size=6) | values


def as_json(value, ascii_only):
    return json.dumps(value, ensure_ascii=ascii_only)


frames = st.one_of(
    st.builds(as_json, messages, st.booleans()),
    st.binary(max_size=64),
    st.text(max_size=64).filter(bool),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 200).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(1, 6000).map(lambda n: '{"jsonrpc":"2.0","method":"ping","id":' + "9" * n + "}"),
    st.sampled_from(["1e999", "-1e400", "NaN", "[Infinity]", '{"jsonrpc":"2.0","method":"ping","id":1e999}']),
)


def strict_loads(text):
    def finite(s):
        value = float(s)
        if not math.isfinite(value):
            raise ValueError(s)
        return value

    def refuse(name):
        raise ValueError(name)

    return json.loads(text, parse_float=finite, parse_constant=refuse)


def depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((child, d + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def is_valid_id(v):
    return v is None or isinstance(v, str) or (isinstance(v, (int, float)) and not isinstance(v, bool))


def is_valid_request(e):
    return (
        isinstance(e, dict)
        and e.get("jsonrpc") == "2.0"
        and isinstance(e.get("method"), str)
        and ("params" not in e or isinstance(e["params"], (list, dict)))
        and set(e) <= {"jsonrpc", "method", "params", "id"}
        and ("id" not in e or is_valid_id(e["id"]))
    )


def expected(frame):
    """(entries or None, is_batch): the decoded entries when the frame passes the parse and limit checks."""
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        value = strict_loads(text)
    except (ValueError, RecursionError):
        return None, False
    if depth(value) > settings.GATEWAY_MAX_DEPTH:
        return None, False
    if isinstance(value, list):
        if not value or len(value) > settings.GATEWAY_MAX_BATCH:
            return None, False
        return value, True
    return [value], False


def check_response(r):
    assert isinstance(r, dict) and r.get("jsonrpc") == "2.0" and "id" in r, r
    assert ("result" in r) != ("error" in r), r
    assert set(r) == {"jsonrpc", "id", "result" if "result" in r else "error"}, r
    assert is_valid_id(r["id"]), r
    if "error" in r:
        e = r["error"]
        assert isinstance(e["code"], int) and e["code"] in KNOWN_CODES, e
        assert isinstance(e["message"], str) and isinstance(e["data"]["reason"], str), e
        assert "Traceback" not in json.dumps(e), e


def check(frame, reply):
    entries, is_batch = expected(frame)
    if entries is None:
        assert reply is not None, f"no answer to {frame!r}"
        check_response(reply)
        assert reply["id"] is None and "error" in reply
        return
    answered = [e for e in entries if not (is_valid_request(e) and "id" not in e)]
    if not answered:
        assert reply is None, f"a notification was answered: {reply}"
        return
    assert reply is not None, f"no answer to {frame!r}"
    responses = reply if is_batch else [reply]
    assert isinstance(responses, list) and len(responses) == len(answered), (frame, reply)
    for r in responses:
        check_response(r)
    # An invalid entry is answered with its id when it had a valid one, else with null.
    sent_ids = {json.dumps(e["id"]) for e in answered if isinstance(e, dict) and "id" in e and is_valid_id(e["id"])}
    assert {json.dumps(r["id"]) for r in responses} <= sent_ids | {"null"}, (frame, reply)
    for e in answered:
        if is_valid_request(e):
            assert json.dumps(e["id"]) in [json.dumps(r["id"]) for r in responses], (e, responses)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frame=frames)
async def test_every_frame_gets_a_spec_correct_answer_or_none(frame):
    with override_settings(EXOCLAW_BIND="127.0.0.1:7200", GATEWAY_RATE=1e6, GATEWAY_BURST=10**6):
        c = await connected(communicator(client=LOOPBACK))
    try:
        kind = "bytes" if isinstance(frame, bytes) else "text"
        await c.send_input({"type": "websocket.receive", kind: frame})
        probe = f"probe-{uuid.uuid4().hex}"
        await c.send_json_to({"jsonrpc": "2.0", "method": "ping", "id": probe})
        first = json.loads(await c.receive_from(timeout=5))
        if isinstance(first, dict) and first.get("id") == probe:
            reply = None
        else:
            reply = first
            after = json.loads(await c.receive_from(timeout=5))
            assert after == {"jsonrpc": "2.0", "result": "pong", "id": probe}, "the connection stopped answering"
        check(frame, reply)
    finally:
        await c.disconnect()
