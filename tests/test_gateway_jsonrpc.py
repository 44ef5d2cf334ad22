"""The pure parts of the gateway: envelopes, parameter binding, the limit counters, log redaction."""

import json
import logging

import pytest

from common.jsondepth import deeper_than
from exoclaw.gateway import errors, jsonrpc
from exoclaw.gateway.limits import FailedAuthThrottle, TokenBucket
from exoclaw.gateway.redact import REDACTED, AccessLog, RedactTokens, redact
from exoclaw.gateway.registry import SCOPES, Param, Registry, bind_params
from exoclaw.models import ApiToken

MB = 1024 * 1024


def decode(text, max_bytes=MB, max_depth=32):
    return jsonrpc.decode(text, max_bytes=max_bytes, max_depth=max_depth)


def test_decode_accepts_plain_json_and_utf8_bytes():
    assert decode('{"a": [1, 2.5, "é"]}') == {"a": [1, 2.5, "é"]}
    assert decode('["é"]'.encode()) == ["é"]


@pytest.mark.parametrize(
    "frame,reason",
    [
        ("{", "parse_error"),
        ("", "parse_error"),
        ("NaN", "parse_error"),
        ('{"x": Infinity}', "parse_error"),
        ("1e999", "number_out_of_range"),
        ("1" * 5000, "number_out_of_range"),
        (b"\xff\xfe", "not_utf8"),
    ],
)
def test_decode_refuses_what_is_not_json_with_a_reason(frame, reason):
    with pytest.raises(errors.ParseError) as e:
        decode(frame)
    assert e.value.reason == reason


def test_decode_measures_frames_in_utf8_bytes():
    assert decode('"' + "é" * 10 + '"', max_bytes=22) == "é" * 10
    with pytest.raises(errors.PayloadTooLarge) as e:
        decode('"' + "é" * 10 + '"', max_bytes=21)
    assert e.value.reason == "frame_too_large"
    with pytest.raises(errors.PayloadTooLarge):
        decode(b"[" + b" " * 100 + b"]", max_bytes=50)


@pytest.mark.parametrize("depth,ok", [(32, True), (33, False), (100_000, False)])
def test_decode_limits_nesting_depth(depth, ok):
    frame = "[" * depth + "]" * depth
    if ok:
        assert deeper_than(decode(frame), 31)
    else:
        with pytest.raises(errors.PayloadTooLarge) as e:
            decode(frame)
        assert e.value.reason == "too_deep"


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert decode('{"a": "' + "[" * 100 + '"}') == {"a": "[" * 100}


def test_parse_single_request_and_notification():
    (req,), batch = jsonrpc.parse({"jsonrpc": "2.0", "method": "ping", "id": 7}, max_batch=5)
    assert not batch and req == jsonrpc.Request("ping", None, 7) and not req.is_notification
    (note,), _ = jsonrpc.parse({"jsonrpc": "2.0", "method": "ping"}, max_batch=5)
    assert note.is_notification


@pytest.mark.parametrize("rid", ["a", 0, -3, 1.5, None, 10**40])
def test_every_id_the_spec_allows_is_kept(rid):
    (req,), _ = jsonrpc.parse({"jsonrpc": "2.0", "method": "m", "id": rid}, max_batch=5)
    assert req.id == rid and not req.is_notification


@pytest.mark.parametrize(
    "obj,answer_id,detail",
    [
        (1, None, "must be a JSON object"),
        ({"jsonrpc": "2.0", "method": "m", "id": True}, None, "id must be"),
        ({"jsonrpc": "2.0", "method": "m", "id": [1]}, None, "id must be"),
        ({"jsonrpc": "1.0", "method": "m", "id": 3}, 3, "jsonrpc must be"),
        ({"method": "m", "id": 3}, 3, "jsonrpc must be"),
        ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, None, "method must be a string"),
        ({"jsonrpc": "2.0", "method": "m", "params": "bar", "id": "x"}, "x", "params must be"),
        ({"jsonrpc": "2.0", "method": "m", "param": {}, "id": 4}, 4, "unknown member 'param'"),
    ],
)
def test_invalid_requests_are_answered_with_their_id_when_it_is_valid(obj, answer_id, detail):
    (entry,), _ = jsonrpc.parse(obj, max_batch=5)
    assert isinstance(entry, jsonrpc.Invalid)
    assert entry.id == answer_id and entry.error.code == -32600 and detail in entry.error.detail


def test_batches_empty_and_too_long():
    with pytest.raises(errors.InvalidRequest) as e:
        jsonrpc.parse([], max_batch=5)
    assert e.value.reason == "empty_batch"
    with pytest.raises(errors.PayloadTooLarge) as e:
        jsonrpc.parse([{}] * 6, max_batch=5)
    assert e.value.reason == "batch_too_long"
    entries, batch = jsonrpc.parse([1, {"jsonrpc": "2.0", "method": "m"}], max_batch=5)
    assert batch and isinstance(entries[0], jsonrpc.Invalid) and entries[1].is_notification


def test_responses_have_result_xor_error_and_encode_to_ascii_json():
    ok = jsonrpc.result_response("a", {"s": "\ud800é"})
    assert set(ok) == {"jsonrpc", "result", "id"}
    text = jsonrpc.encode(ok)
    assert text.isascii() and json.loads(text)["result"]["s"] == "\ud800é"
    err = jsonrpc.error_response(None, errors.InvalidParams("channel", "must be a string"))
    assert set(err) == {"jsonrpc", "error", "id"} and err["id"] is None
    assert err["error"] == {
        "code": -32602,
        "message": "Invalid params: 'channel' must be a string",
        "data": {"reason": "invalid_params", "param": "channel", "detail": "'channel' must be a string"},
    }
    with pytest.raises(ValueError):
        jsonrpc.encode({"x": float("nan")})


def test_error_codes_are_unique_and_application_codes_in_the_reserved_range():
    codes = [c.code for c in errors.CODES]
    assert len(codes) == len(set(codes))
    assert all(-32099 <= c <= -32000 for c in codes if c > -32600)


def test_registry_scopes_match_the_token_model():
    assert set(SCOPES) == set(ApiToken.Scope.values)


SPEC = {"text": Param(str, required=True, max_length=5), "n": Param(int, default=2), "x": Param(float)}


@pytest.mark.parametrize(
    "params,param,why",
    [
        ({}, "text", "is required"),
        ({"text": 1}, "text", "must be a string"),
        ({"text": "toolong"}, "text", "is longer than 5"),
        ({"text": "a", "n": True}, "n", "must be an integer"),
        ({"text": "a", "n": 1.5}, "n", "must be an integer"),
        ({"text": "a", "zzz": 1}, "zzz", "is not a parameter of m"),
        (["a"], "params", "must be an object"),
    ],
)
def test_bind_params_names_the_parameter_and_why(params, param, why):
    with pytest.raises(errors.InvalidParams) as e:
        bind_params("m", SPEC, params)
    assert e.value.extra["param"] == param and why in e.value.detail


def test_bind_params_applies_defaults_and_accepts_ints_as_numbers():
    assert bind_params("m", SPEC, {"text": "a", "x": 3}) == {"text": "a", "n": 2, "x": 3}
    assert bind_params("m", None, []) == {} and bind_params("m", None, None) == {}


def test_registry_rejects_unknown_scopes():
    reg = Registry()
    with pytest.raises(ValueError, match="unknown scope"):
        reg.register("x", lambda ctx: None, scope="chats")


@pytest.mark.parametrize("value,why", [(0, "must be from 1 to 200"), (201, "must be from 1 to 200"),
                                       (True, "must be an integer")])
def test_bind_params_checks_integer_ranges(value, why):
    spec = {"limit": Param(int, default=50, minimum=1, maximum=200), "after": Param(int, default=0, minimum=0)}
    assert bind_params("m", spec, {"limit": 200}) == {"limit": 200, "after": 0}
    with pytest.raises(errors.InvalidParams) as e:
        bind_params("m", spec, {"limit": value})
    assert e.value.extra["param"] == "limit" and why in e.value.detail
    with pytest.raises(errors.InvalidParams, match="must be 0 or more"):
        bind_params("m", spec, {"after": -1})


def test_token_bucket_allows_a_burst_then_refills_at_its_rate():
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0


def test_failed_auth_throttle_counts_per_address_within_the_window():
    t = FailedAuthThrottle()
    for i in range(3):
        assert t.retry_after("a", max_failures=3, window=60, now=i) == 0.0
        t.record_failure("a", window=60, now=i)
    assert t.retry_after("a", max_failures=3, window=60, now=10) == pytest.approx(50)
    assert t.retry_after("b", max_failures=3, window=60, now=10) == 0.0
    assert t.retry_after("a", max_failures=3, window=60, now=60.5) == 0.0


@pytest.mark.parametrize(
    "line",
    [
        'GET /ws?token=exo_SECRETSECRETSECRET1 HTTP/1.1',
        "GET /admin/?a=1&token=plainsecret&b=2",
        "Authorization: Bearer plainsecret",
        "received exo_SECRETSECRETSECRET1 in a body",
        "/ws?access_token=plainsecret",
    ],
)
def test_redact_removes_tokens_from_log_text(line):
    cleaned = redact(line)
    assert "plainsecret" not in cleaned and "SECRETSECRET" not in cleaned and REDACTED in cleaned


def test_redact_keeps_text_without_tokens_and_removes_configured_secrets():
    assert redact("GET /ws?tokens_used=3 200") == "GET /ws?tokens_used=3 200"
    assert redact("x abc123 y", ("abc123",)) == f"x {REDACTED} y"


def test_access_log_lines_go_through_logging_with_the_filter():
    handler_records = []

    class Keep(logging.Handler):
        def emit(self, record):
            handler_records.append(self.format(record))

    keep = Keep()
    keep.addFilter(RedactTokens())
    logger = logging.getLogger("exoclaw.access")
    logger.addHandler(keep)
    try:
        AccessLog()("websocket", "connected", {"client": "127.0.0.1:1", "path": "/ws?token=exo_AAAAAAAAAAAAAAAAAAAA"})
    finally:
        logger.removeHandler(keep)
    assert len(handler_records) == 1 and "WSCONNECT /ws?token=[redacted]" in handler_records[0]


def test_protocol_docs_list_every_error_code_and_reason():
    import inspect
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    for code in errors.CODES:
        assert f"| {code.code} | {code.message} |" in text, f"docs/protocol.md lacks error {code.code}"
    reasons = {cls.reason for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.RpcError)}
    for reason in reasons:
        assert f"`{reason}`" in text, f"docs/protocol.md does not mention the reason {reason}"
