import pytest
from django.core.management import call_command

from exoclaw.bind import is_loopback_host, parse_bind


@pytest.mark.parametrize(
    "value,expected",
    [("127.0.0.1:7200", ("127.0.0.1", 7200)), ("[::1]:80", ("::1", 80)), ("0.0.0.0:1", ("0.0.0.0", 1))],
)
def test_parse_bind_accepts_host_and_port(value, expected):
    assert parse_bind(value) == expected


@pytest.mark.parametrize("value", ["7200", "host:", "host:99999", ":80", "host:x"])
def test_parse_bind_rejects_malformed_values(value):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_bind(value)


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                           ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False)])
def test_loopback_detection(host, loopback):
    assert is_loopback_host(host) is loopback


@pytest.mark.django_db
def test_migrations_are_complete():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
