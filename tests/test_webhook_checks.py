"""The pure parts of the webhook ingress: signatures, adapter output checks, the retry policy."""

import hashlib
import hmac

import pytest

from webhooks.delivery import RetryPolicy, backoff, is_success, next_delay, retry_after
from webhooks.messages import (
    AdapterOutputError,
    Incoming,
    Skipped,
    dedupe_key,
    parse_incoming_output,
    parse_outgoing_output,
    request_url,
)
from webhooks.runs import reply_text
from webhooks.signatures import is_authentic, sign

BODY = b'{"update_id": 1}'


def test_sign_is_the_hex_hmac_sha256_of_the_raw_body():
    assert sign("k", BODY) == "sha256=" + hmac.new(b"k", BODY, hashlib.sha256).hexdigest()


def test_hmac_signature_is_accepted_in_either_case_and_refused_when_wrong_or_missing():
    good = sign("k", BODY)
    assert is_authentic("hmac_sha256", "k", {"X-Exoclaw-Signature": good}, BODY)
    assert is_authentic("hmac_sha256", "k", {"X-Exoclaw-Signature": good.upper().replace("SHA256=", "sha256=")}, BODY)
    assert not is_authentic("hmac_sha256", "k", {"X-Exoclaw-Signature": sign("other", BODY)}, BODY)
    assert not is_authentic("hmac_sha256", "k", {"X-Exoclaw-Signature": good}, BODY + b" ")
    assert not is_authentic("hmac_sha256", "k", {"X-Exoclaw-Signature": good[7:]}, BODY)
    assert not is_authentic("hmac_sha256", "k", {}, BODY)


def test_telegram_secret_token_must_match_exactly():
    assert is_authentic("telegram_secret_token", "s3cr3t", {"X-Telegram-Bot-Api-Secret-Token": "s3cr3t"}, BODY)
    assert not is_authentic("telegram_secret_token", "s3cr3t", {"X-Telegram-Bot-Api-Secret-Token": "s3cr3"}, BODY)
    assert not is_authentic("telegram_secret_token", "s3cr3t", {"X-Telegram-Bot-Api-Secret-Token": "S3CR3T"}, BODY)
    assert not is_authentic("telegram_secret_token", "s3cr3t", {}, BODY)


def test_an_empty_secret_or_an_unknown_scheme_accepts_nothing():
    assert not is_authentic("telegram_secret_token", "", {"X-Telegram-Bot-Api-Secret-Token": ""}, BODY)
    assert not is_authentic("hmac_sha256", "", {"X-Exoclaw-Signature": sign("", BODY)}, BODY)
    assert not is_authentic("none", "k", {"X-Exoclaw-Signature": sign("k", BODY)}, BODY)


def test_incoming_output_is_normalized_to_strings_and_takes_the_endpoint_account_when_missing():
    msg = parse_incoming_output({"content": "hi", "peer": 42, "message_id": 7, "update_id": 900}, "mybot")
    assert msg == Incoming(content="hi", account="mybot", peer="42", message_id="7", update_id="900")
    assert parse_incoming_output({"content": "hi", "peer": "p", "account": "a"}, "mybot").account == "a"


def test_a_skip_is_recognised_with_its_reason():
    assert parse_incoming_output({"skip": True, "reason": "not a message update", "update_id": 3}) == Skipped(
        "not a message update", "3"
    )


@pytest.mark.parametrize(
    "output, complaint",
    [
        ([], "JSON object"),
        ({"peer": "p"}, "content"),
        ({"content": "  ", "peer": "p"}, "content"),
        ({"content": "hi"}, "peer"),
        ({"content": "hi", "peer": {"id": 1}}, "peer must be a string or an integer"),
        ({"content": "hi", "peer": True}, "peer must be a string or an integer"),
        ({"content": "hi", "peer": "x" * 129}, "longer than 128"),
    ],
)
def test_bad_incoming_output_is_refused_with_the_reason(output, complaint):
    with pytest.raises(AdapterOutputError, match=complaint):
        parse_incoming_output(output)


def test_dedupe_key_is_the_update_id_and_empty_means_no_dedupe():
    assert dedupe_key(" 900 ") == "900"
    assert dedupe_key("") == ""


def test_outgoing_output_may_be_one_request_or_a_list():
    one = parse_outgoing_output({"method": "POST", "path": "/bot{token}/sendMessage", "json": {"text": "a"}})
    assert [(r.method, r.path, r.json, r.sign) for r in one] == [("POST", "/bot{token}/sendMessage", {"text": "a"}, False)]
    two = parse_outgoing_output([{"path": "", "json": 1, "sign": True}, {"path": "/x", "json": 2}])
    assert [(r.path, r.sign) for r in two] == [("", True), ("/x", False)]


@pytest.mark.parametrize(
    "output, complaint",
    [
        ([], "no request"),
        ({"method": "DELETE", "path": "/x", "json": {}}, "method"),
        ({"path": "@evil.example/x", "json": {}}, "path"),
        ({"path": "/a/../b", "json": {}}, "path"),
        ({"path": "/x"}, "json"),
        ("POST /x", "request object"),
    ],
)
def test_bad_outgoing_output_is_refused_with_the_reason(output, complaint):
    with pytest.raises(AdapterOutputError, match=complaint):
        parse_outgoing_output(output)


def test_request_url_fills_in_the_token_percent_encoded_so_it_cannot_change_the_host():
    assert (
        request_url("https://api.telegram.org/", "/bot{token}/sendMessage", "123:AB-c")
        == "https://api.telegram.org/bot123:AB-c/sendMessage"
    )
    assert request_url("http://127.0.0.1:9/replies", "", "") == "http://127.0.0.1:9/replies"
    with pytest.raises(AdapterOutputError, match="no token"):
        request_url("https://api.telegram.org", "/bot{token}/sendMessage", "")
    assert request_url("https://api.telegram.org", "/bot{token}/x", "1@evil.example/") == (
        "https://api.telegram.org/bot1%40evil.example%2F/x"
    )


POLICY = RetryPolicy(attempts=4, base_delay=1.0, max_delay=5.0, max_retry_after=60)


def test_telegram_retry_after_in_the_body_wins_over_backoff():
    body = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}}
    assert retry_after(body, {}) == 7
    assert next_delay(POLICY, 1, 429, body, {}) == 7


def test_a_retry_after_header_is_honoured_when_the_body_has_none():
    assert next_delay(POLICY, 1, 429, None, {"retry-after": "3"}) == 3
    assert next_delay(POLICY, 1, 503, {}, {"retry-after": "2"}) == 2


def test_a_pause_longer_than_the_policy_allows_is_a_failure():
    assert next_delay(POLICY, 1, 429, {"parameters": {"retry_after": 61}}, {}) is None


def test_server_errors_and_no_answer_back_off_exponentially_with_jitter_up_to_the_cap():
    assert [backoff(POLICY, n, rng=lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert backoff(POLICY, 2, rng=lambda: 0.0) == 1.0
    assert next_delay(POLICY, 1, None, rng=lambda: 1.0) == 1.0
    assert next_delay(POLICY, 2, 502, {"ok": False}, {}, rng=lambda: 1.0) == 2.0


def test_client_errors_and_the_last_attempt_are_final():
    assert next_delay(POLICY, 1, 400, {"ok": False}, {}) is None
    assert next_delay(POLICY, 1, 403, None, {}) is None
    assert next_delay(POLICY, 4, 429, {"parameters": {"retry_after": 1}}, {}) is None


def test_success_needs_a_2xx_and_not_ok_false():
    assert is_success(200, {"ok": True, "result": {}})
    assert is_success(204, None)
    assert not is_success(200, {"ok": False})
    assert not is_success(429, None)


def test_a_bot_token_in_a_logged_url_is_redacted():
    from exoclaw.gateway.redact import redact

    line = "HTTP Request: POST https://api.telegram.org/bot123456:TEST-token_abc/sendMessage 429"
    assert redact(line) == "HTTP Request: POST https://api.telegram.org/bot[redacted]/sendMessage 429"


def test_the_reply_is_the_text_after_the_last_tool_call():
    events = [
        {"type": "delta", "text": "Let me "},
        {"type": "delta", "text": "check. "},
        {"type": "tool_call", "name": "calc.calc"},
        {"type": "tool_result", "content": "42"},
        {"type": "delta", "text": "It is "},
        {"type": "delta", "text": "42.\n"},
        {"type": "done"},
    ]
    assert reply_text(events) == "It is 42."
    assert reply_text([{"type": "delta", "text": " hello "}, {"type": "done"}]) == "hello"
    assert reply_text([{"type": "tool_call"}, {"type": "done"}]) == ""
