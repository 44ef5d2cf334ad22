from datetime import datetime, timezone

import pytest

from agents.providers.transport import RetryPolicy, error_from_status, parse_retry_after

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("headers,expected", [
    ({"retry-after": "3"}, 3.0),
    ({"retry-after": "0.25"}, 0.25),
    ({"retry-after": "-4"}, 0.0),
    ({"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"}, 30.0),
    ({"retry-after": "Thu, 01 Jan 2026 11:00:00 GMT"}, 0.0),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
    ({"retry-after": "whenever"}, None),
    ({}, None),
])
def test_retry_after_in_seconds_or_as_a_date(headers, expected):
    assert parse_retry_after(headers, now=NOW) == expected


def test_backoff_doubles_up_to_the_cap_with_jitter_below_a_quarter():
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0)
    assert [policy.backoff(n, rand=lambda: 0.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.backoff(1, rand=lambda: 1.0) == 0.75


@pytest.mark.parametrize("status,kind,retryable", [
    (400, "bad_request", False), (401, "auth", False), (403, "auth", False), (404, "not_found", False),
    (408, "timeout", True), (413, "bad_request", False), (422, "bad_request", False), (429, "rate_limited", True),
    (500, "server_error", True), (502, "server_error", True), (503, "server_error", True),
    (529, "overloaded", True),
])
def test_statuses_map_to_error_kinds(status, kind, retryable):
    error = error_from_status(status, {}, b'{"error": {"message": "nope"}}')
    assert (error.kind, error.retryable, error.status, error.message) == (kind, retryable, status, f"HTTP {status}: nope")


def test_anthropic_overloaded_body_on_a_5xx_is_overloaded():
    body = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    assert error_from_status(503, {}, body).kind == "overloaded"


def test_non_json_error_body_is_quoted():
    assert error_from_status(502, {}, b"<h1>Bad Gateway</h1>\n").message == "HTTP 502: <h1>Bad Gateway</h1>"


def test_x_should_retry_overrules_the_status():
    assert error_from_status(400, {"x-should-retry": "true"}, b"").retryable
    assert not error_from_status(503, {"x-should-retry": "false"}, b"").retryable
