"""The pure parts of the webhook ingress: signatures, adapter output checks, the retry policy."""

import hashlib
import hmac
import re

import pytest
from django.core.management import call_command

from webhooks import senders
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
from webhooks.signatures import Unauthentic, authenticate, sign, sign_reply, signed_headers, slack_signature

BODY = b'{"update_id": 1}'
NOW = 1_764_072_000


def refused(scheme, secret, headers, body=BODY, now=NOW) -> str:
    with pytest.raises(Unauthentic) as e:
        authenticate(scheme, secret, headers, body, now)
    return e.value.reason


def test_generic_signature_is_the_hex_hmac_sha256_of_timestamp_dot_body():
    assert sign("k", NOW, BODY) == "sha256=" + hmac.new(b"k", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()


def test_generic_signature_is_accepted_in_either_case_and_refused_when_wrong_missing_or_stale():
    good = signed_headers("k", BODY, NOW)
    assert authenticate("hmac_sha256", "k", good, BODY, NOW)
    upper = {**good, "X-Exoclaw-Signature": good["X-Exoclaw-Signature"].upper().replace("SHA256=", "sha256=")}
    assert authenticate("hmac_sha256", "k", upper, BODY, NOW)
    assert refused("hmac_sha256", "k", signed_headers("other", BODY, NOW)) == "bad_signature"
    assert refused("hmac_sha256", "k", good, BODY + b" ") == "bad_signature"
    assert refused("hmac_sha256", "k", {**good, "X-Exoclaw-Timestamp": str(NOW + 1)}) == "bad_signature"
    assert refused("hmac_sha256", "k", {"X-Exoclaw-Signature": good["X-Exoclaw-Signature"]}) == "missing"
    assert refused("hmac_sha256", "k", {}) == "missing"
    # The old scheme (the body alone, no timestamp) is refused.
    old = {"X-Exoclaw-Signature": "sha256=" + hmac.new(b"k", BODY, hashlib.sha256).hexdigest()}
    assert refused("hmac_sha256", "k", {**old, "X-Exoclaw-Timestamp": str(NOW)}) == "bad_signature"


def test_timestamps_more_than_five_minutes_away_are_refused_both_ways():
    assert authenticate("hmac_sha256", "k", signed_headers("k", BODY, NOW - 300), BODY, NOW)
    assert refused("hmac_sha256", "k", signed_headers("k", BODY, NOW - 301)) == "stale"
    assert refused("hmac_sha256", "k", signed_headers("k", BODY, NOW + 301)) == "stale"


def test_the_replay_key_is_the_same_for_the_same_signed_bytes_and_differs_otherwise():
    key = authenticate("hmac_sha256", "k", signed_headers("k", BODY, NOW), BODY, NOW)
    assert key == authenticate("hmac_sha256", "k", signed_headers("k", BODY, NOW), BODY, NOW + 5)
    assert key != authenticate("hmac_sha256", "k", signed_headers("k", BODY, NOW + 1), BODY, NOW)


def test_a_reply_exoclaw_signed_does_not_pass_as_a_request_under_the_same_secret():
    reply = sign_reply("k", NOW, BODY)
    assert "X-Exoclaw-Signature" not in reply
    as_request = {"X-Exoclaw-Timestamp": reply["X-Exoclaw-Reply-Timestamp"],
                  "X-Exoclaw-Signature": reply["X-Exoclaw-Reply-Signature"]}
    assert refused("hmac_sha256", "k", as_request) == "bad_signature"


# Slack's own example ("Verifying requests from Slack"): its signing secret, timestamp and body.
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_slack_signature_reproduces_slacks_documented_example():
    assert slack_signature(SLACK_SECRET, str(SLACK_TIMESTAMP), SLACK_BODY) == SLACK_SIGNATURE
    headers = {"X-Slack-Signature": SLACK_SIGNATURE, "X-Slack-Request-Timestamp": str(SLACK_TIMESTAMP)}
    assert authenticate("slack_signature", SLACK_SECRET, headers, SLACK_BODY, SLACK_TIMESTAMP + 60)


def test_slack_signature_agrees_with_slack_sdk_and_refuses_stale_or_wrong():
    from slack_sdk.signature import SignatureVerifier

    verifier = SignatureVerifier(SLACK_SECRET)
    signature = verifier.generate_signature(timestamp=str(NOW), body=BODY.decode())
    headers = {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": str(NOW)}
    assert authenticate("slack_signature", SLACK_SECRET, headers, BODY, NOW)
    assert refused("slack_signature", SLACK_SECRET, headers, BODY, NOW + 301) == "stale"
    assert refused("slack_signature", "another-secret", headers) == "bad_signature"
    assert refused("slack_signature", SLACK_SECRET, {"X-Slack-Signature": signature}) == "missing"


def test_discord_ed25519_verifies_timestamp_and_body_with_the_public_key_in_hex():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    signature = key.sign(str(NOW).encode() + BODY).hex()
    headers = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": str(NOW)}
    assert authenticate("discord_ed25519", public, headers, BODY, NOW)
    assert refused("discord_ed25519", public, headers, BODY + b" ") == "bad_signature"
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    assert refused("discord_ed25519", other, headers) == "bad_signature"
    assert refused("discord_ed25519", public, {**headers, "X-Signature-Ed25519": "zz"}) == "bad_signature"
    assert refused("discord_ed25519", public, headers, BODY, NOW + 301) == "stale"
    assert refused("discord_ed25519", "not-hex", headers) == "no_secret"


def test_telegram_secret_token_must_match_exactly():
    assert authenticate("telegram_secret_token", "s3cr3t", {"X-Telegram-Bot-Api-Secret-Token": "s3cr3t"}, BODY, NOW) == ""
    for given in ("s3cr3", "S3CR3T"):
        assert refused("telegram_secret_token", "s3cr3t", {"X-Telegram-Bot-Api-Secret-Token": given}) == "bad_signature"
    assert refused("telegram_secret_token", "s3cr3t", {}) == "bad_signature"


def test_an_empty_secret_or_an_unknown_scheme_accepts_nothing():
    assert refused("telegram_secret_token", "", {"X-Telegram-Bot-Api-Secret-Token": ""}) == "no_secret"
    assert refused("hmac_sha256", "", signed_headers("", BODY, NOW)) == "no_secret"
    assert refused("none", "k", signed_headers("k", BODY, NOW)) == "no_secret"


def test_incoming_output_is_normalized_to_strings_and_takes_the_endpoint_account_when_missing():
    msg = parse_incoming_output({"content": "hi", "peer": 42, "message_id": 7, "update_id": 900}, "mybot")
    assert msg == Incoming(content="hi", account="mybot", peer="42", message_id="7", update_id="900")
    assert parse_incoming_output({"content": "hi", "peer": "p", "account": "a"}, "mybot").account == "a"


@pytest.mark.parametrize("text", ["  ", "\u00a0", "\u00a0\u2003\n", ""])
def test_a_text_of_only_whitespace_is_skipped_not_an_error(text):
    assert parse_incoming_output({"content": text, "peer": "p", "update_id": 5}) == Skipped("message without text", "5")


def test_respond_reply_ref_and_sender_are_passed_through_checked():
    msg = parse_incoming_output({"content": "hi", "peer": "c", "sender": 77, "reply_ref": "t" * 300,
                                 "respond": {"type": 5}})
    assert (msg.sender, msg.reply_ref, msg.respond) == ("77", "t" * 300, {"type": 5})
    skip = parse_incoming_output({"skip": True, "reason": "ping", "respond": {"type": 1}})
    assert skip.respond == {"type": 1}
    for bad, complaint in (({"respond": "pong"}, "respond"), ({"respond": {"x": "y" * 20000}}, "respond"),
                           ({"reply_ref": "r" * 1025}, "reply_ref")):
        with pytest.raises(AdapterOutputError, match=complaint):
            parse_incoming_output({"content": "hi", "peer": "c", **bad})


def test_a_skip_is_recognised_with_its_reason():
    assert parse_incoming_output({"skip": True, "reason": "not a message update", "update_id": 3}) == Skipped(
        "not a message update", "3"
    )


@pytest.mark.parametrize(
    "output, complaint",
    [
        ([], "JSON object"),
        ({"peer": "p"}, "content"),
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
    patch = parse_outgoing_output({"method": "PATCH", "path": "/chat.postMessage", "json": {}, "auth": "bearer"})
    assert [(r.method, r.auth) for r in patch] == [("PATCH", "bearer")]


@pytest.mark.parametrize(
    "output, complaint",
    [
        ([], "no request"),
        ({"method": "DELETE", "path": "/x", "json": {}}, "method"),
        ({"path": "/x", "json": {}, "auth": "basic"}, "auth"),
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


def test_pair_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        call_command("pair", "--help")
    out = capsys.readouterr().out
    assert "python manage.py pair approve K7QX-M2PD" in out and "python manage.py pair list" in out


def test_codes_are_normalised_from_what_an_operator_types():
    assert senders.normalize_code(" k7qx m2pd ") == "K7QX-M2PD"
    assert senders.normalize_code("K7QXM2PD") == "K7QX-M2PD"
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}", senders.new_code())
