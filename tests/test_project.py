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


def test_admin_pages_send_a_content_security_policy(admin_client):
    for url in ("/admin/", "/admin/login/", "/admin/sessions/"):
        policy = admin_client.get(url)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, url


def test_the_var_dir_and_the_sqlite_file_are_private_to_their_user(tmp_path):
    import os
    import stat
    import subprocess
    import sys
    from pathlib import Path

    var = tmp_path / "var"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "exoclaw.settings", "EXOCLAW_VAR_DIR": str(var)}
    env.pop("DATABASE_URL", None)
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=root, env=env, check=True,
                   capture_output=True, timeout=120)
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    assert stat.S_IMODE((var / "exoclaw.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((var / "secret_key").stat().st_mode) == 0o600
