"""`doctor`: each finding comes from a configuration that has the problem and not from one that does not,
a high finding makes the command exit 1, and the demo `make run` sets up reports nothing high."""

import io
import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from exoclaw.doctor import Deployment, settings_findings, token_findings
from exoclaw.models import ApiToken, hash_token
from sandbox.doctor import findings as sandbox_findings
from sandbox.doctor import is_private_host
from sandbox.models import CapabilityGrant, HttpSecret, Plugin
from tests.sandbox_fixtures import ROOT, wasm_path
from webhooks.doctor import findings as webhook_findings
from webhooks.models import ChannelEndpoint

SAFE = Deployment(
    bind="127.0.0.1:7200", debug=False, secret_key=secrets.token_urlsafe(50), allowed_hosts=("127.0.0.1", "localhost"),
    loopback_trust=None, redis_url="", database_engine="django.db.backends.sqlite3",
    surrealdb_url="surrealkv:///srv/exoclaw/var/sessions",
)
CLUSTER = replace(SAFE, redis_url="redis://redis:6379/0", database_engine="django.db.backends.postgresql",
                  surrealdb_url="ws://surreal:8000", bind="0.0.0.0:7200")


def found(findings) -> dict[str, str]:
    """Finding id → severity."""
    return {f.id: f.severity for f in findings}


def test_safe_settings_have_no_finding():
    assert settings_findings(SAFE) == []
    assert settings_findings(CLUSTER) == []


@pytest.mark.parametrize("changes,finding,severity", [
    ({"debug": True, "bind": "0.0.0.0:7200"}, "debug-on", "high"),
    ({"debug": True}, "debug-on", "low"),
    ({"secret_key": "change-me", "bind": "10.0.0.5:7200"}, "weak-secret-key", "high"),
    ({"secret_key": "django-insecure-" + "x" * 50, "bind": "0.0.0.0:7200"}, "weak-secret-key", "high"),
    ({"secret_key": "ab" * 30, "bind": "0.0.0.0:7200"}, "weak-secret-key", "high"),
    ({"secret_key": "short"}, "weak-secret-key", "low"),
    ({"debug": True, "allowed_hosts": ("exoclaw.example.com", "127.0.0.1")}, "debug-on", "high"),
    ({"debug": True, "behind_tls_proxy": True, "loopback_trust": False}, "debug-on", "high"),
    ({"allowed_hosts": ("*",)}, "allowed-hosts-any", "high"),
    ({"loopback_trust": True, "bind": "0.0.0.0:7200"}, "loopback-trust-on-reachable-bind", "high"),
    ({"trusted_proxies": ("10.0.0.2",)}, "loopback-trust-behind-proxy", "medium"),
    ({"behind_tls_proxy": True, "loopback_trust": True}, "loopback-trust-behind-proxy", "medium"),
    ({"redis_url": "redis://127.0.0.1:6379/0", "surrealdb_url": "ws://surreal:8000"}, "sqlite-with-several-processes", "high"),
    ({"redis_url": "redis://127.0.0.1:6379/0", "database_engine": "django.db.backends.postgresql"},
     "embedded-store-with-several-processes", "high"),
    ({"redis_url": "redis://127.0.0.1:6379/0", "database_engine": "django.db.backends.postgresql", "surrealdb_url": "mem://"},
     "embedded-store-with-several-processes", "high"),
])
def test_each_settings_risk_is_found_with_its_severity(changes, finding, severity):
    assert found(settings_findings(replace(SAFE, **changes))) == {finding: severity}


@pytest.mark.parametrize("changes", [
    {"loopback_trust": True},                                     # trusting loopback on a loopback bind is the default
    {"loopback_trust": False, "bind": "0.0.0.0:7200"},
    {"trusted_proxies": ("10.0.0.2",), "loopback_trust": False},  # behind a proxy, as docs/config.md advises
    {"allowed_hosts": ("exoclaw.example.com", ".example.com")},
    {"database_engine": "django.db.backends.postgresql", "surrealdb_url": "mem://"},  # one process: fine
])
def test_near_misses_are_not_findings(changes):
    assert settings_findings(replace(SAFE, **changes)) == []


def test_the_secret_key_published_in_the_deploy_guide_is_weak():
    key = re.search(r"^SECRET_KEY=(\S+)$", (ROOT / "docs" / "deploy.md").read_text(), re.M).group(1)
    assert found(settings_findings(replace(CLUSTER, secret_key=key))) == {"weak-secret-key": "high"}


def test_the_deployment_is_read_from_settings():
    with override_settings(DEBUG=True, EXOCLAW_BIND="0.0.0.0:80", ALLOWED_HOSTS=["*"], GATEWAY_LOOPBACK_TRUST=True,
                           TRUSTED_PROXIES=["10.0.0.2"]):
        d = Deployment.from_settings()
        assert (d.debug, d.public_bind, d.allowed_hosts, d.loopback_trust) == (True, True, ("*",), True)
        assert d.trusted_proxies == ("10.0.0.2",) and not d.behind_tls_proxy
        assert not Deployment.from_settings("127.0.0.1:7200").public_bind


def token(name: str, scopes: list[str], **fields) -> ApiToken:
    return ApiToken.objects.create(name=name, token_hash=hash_token(name), prefix=name[:10], scopes=scopes, **fields)


@pytest.mark.django_db
def test_an_admin_token_without_expiry_is_found_and_a_bounded_or_narrow_one_is_not():
    token("ops", ["admin"])
    token("ops-month", ["admin"], expires_at=timezone.now() + timedelta(days=30))
    token("alice", ["chat"])
    token("old-admin", ["admin"], enabled=False)
    found_ = token_findings(SAFE)
    assert [(f.id, f.severity) for f in found_] == [("admin-token-without-expiry", "medium")]
    assert "API token ops has the admin scope" in found_[0].message


@pytest.mark.django_db
def test_a_reachable_bind_without_any_live_token_is_found():
    assert found(token_findings(CLUSTER)) == {"no-token-on-reachable-bind": "high"}
    token("gone", ["chat"], expires_at=timezone.now() - timedelta(days=1))
    assert "no-token-on-reachable-bind" in found(token_findings(CLUSTER))
    token("alice", ["chat"])
    assert token_findings(CLUSTER) == []
    assert token_findings(replace(SAFE, bind="127.0.0.1:7200")) == []


@pytest.mark.parametrize("host,private", [
    ("localhost", True), ("127.0.0.1", True), ("10.1.2.3", True), ("192.168.0.10", True), ("169.254.169.254", True),
    ("::1", True), ("fd00::1", True), ("100.64.0.1", True), ("metadata.google.internal", True), ("printer.local", True),
    ("api.example.com", False), ("93.184.215.14", False), ("2606:4700::1111", False),
])
def test_private_hosts_are_recognised(host, private):
    assert is_private_host(host) is private


def plugin(name: str = "calc", **fields) -> Plugin:
    return Plugin.objects.create(name=name, wasm_path=str(wasm_path("calc")), **fields)


@pytest.mark.django_db
@pytest.mark.parametrize("hosts,expected", [
    (["*.example.org"], {"grant-wildcard-host": "medium"}),
    (["127.0.0.1"], {"grant-private-host": "high"}),
    (["http://169.254.169.254"], {"grant-private-host": "high"}),
    (["localhost:8080"], {"grant-private-host": "high"}),
    ([{"host": "https://10.0.0.5", "methods": ["GET"]}], {"grant-private-host": "high"}),
    (["metadata.google.internal"], {"grant-private-host": "high"}),
    (["*", "10.*"], {"grant-invalid-host": "medium"}),  # rows written before the sandbox read host rules
    (["api.example.com", "https://files.example.org:8443", {"host": "api.example.net", "path_prefix": "/v1/"}], {}),
    ([], {}),
])
def test_grant_hosts_that_reach_too_far_are_found(hosts, expected):
    CapabilityGrant.objects.create(plugin=plugin(), allowed_hosts=hosts)
    assert found(sandbox_findings()) == expected


@pytest.mark.django_db
def test_secrets_kept_in_plugin_or_grant_config_are_found_and_plain_settings_are_not():
    calc = plugin(config={"greeting": "hello", "api_key": "sk-live-123"})
    CapabilityGrant.objects.create(plugin=calc, config={"token": "abc", "units": "metric", "max_tokens": 10})
    messages = [f.message for f in sandbox_findings() if f.id == "plugin-config-secret"]
    assert messages == ["plugin calc's config holds api_key in plain text: it is stored in the database, shown in "
                        "the admin and written by dumpconfig",
                        "plugin calc's grant for every agent's config holds token in plain text: it is stored in "
                        "the database, shown in the admin and written by dumpconfig"]
    Plugin.objects.update(config={"greeting": "hello"})
    CapabilityGrant.objects.update(config={"units": "metric", "max_tokens": 10})
    assert sandbox_findings() == []


@pytest.mark.django_db
def test_secrets_given_to_a_plugin_are_reported_higher_the_further_it_can_send_them(monkeypatch):
    monkeypatch.setenv("WEATHER_API_KEY", "s3cret")
    grant = CapabilityGrant.objects.create(plugin=plugin(), allowed_hosts=["api.weather.example"],
                                           secret_env={"api_key": "WEATHER_API_KEY"})
    assert found(sandbox_findings()) == {"grant-secret-env": "low"}
    grant.allowed_hosts = ["*.weather.example"]
    grant.save()
    assert found(sandbox_findings())["grant-secret-env"] == "medium"
    monkeypatch.delenv("WEATHER_API_KEY")
    assert found(sandbox_findings())["grant-secret-unset"] == "medium"
    Plugin.objects.update(enabled=False)
    assert sandbox_findings() == []


@pytest.mark.django_db
def test_an_http_secret_stays_out_of_the_sandbox_but_must_be_set(monkeypatch):
    monkeypatch.delenv("WEATHER_API_KEY", raising=False)
    grant = CapabilityGrant.objects.create(plugin=plugin(), allowed_hosts=["https://api.weather.example"])
    HttpSecret.objects.create(grant=grant, host="https://api.weather.example", header="Authorization",
                              format="Bearer {secret}", secret_env="WEATHER_API_KEY")
    assert found(sandbox_findings()) == {"grant-secret-unset": "medium"}
    monkeypatch.setenv("WEATHER_API_KEY", "s3cret")
    assert sandbox_findings() == []


@pytest.mark.django_db
def test_a_channel_open_to_anyone_or_missing_its_secret_is_found(monkeypatch):
    adapter = plugin("generic", abi=Plugin.Abi.CHANNEL_ADAPTER)
    channel = ChannelEndpoint.objects.create(name="support", adapter=adapter, secret_env="SUPPORT_HOOK_SECRET")
    monkeypatch.delenv("SUPPORT_HOOK_SECRET", raising=False)
    assert found(webhook_findings()) == {"webhook-secret-unset": "medium"}
    monkeypatch.setenv("SUPPORT_HOOK_SECRET", "x" * 32)
    assert webhook_findings() == []
    channel.sender_policy = ChannelEndpoint.SenderPolicy.OPEN
    channel.save()
    assert found(webhook_findings()) == {"webhook-open-senders": "high"}
    channel.sender_policy = ChannelEndpoint.SenderPolicy.ALLOWLIST
    channel.save()
    assert webhook_findings() == []
    ChannelEndpoint.objects.update(enabled=False, sender_policy="open")
    assert webhook_findings() == []


@pytest.mark.django_db
def test_the_command_prints_each_finding_with_its_fix_and_fails_on_a_high_one():
    CapabilityGrant.objects.create(plugin=plugin(), allowed_hosts=["localhost"])
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="^1 high finding: fix it before serving$"):
        call_command("doctor", stdout=out, stderr=err)
    assert out.getvalue().startswith("HIGH   grant-private-host: plugin calc's grant for every agent allows localhost")
    assert "\n       fix: remove them from allowed_hosts" in out.getvalue()
    assert err.getvalue() == "doctor: 1 finding (1 high)\n"
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("doctor", "--json", stdout=out, stderr=io.StringIO())
    report = json.loads(out.getvalue())
    assert report["counts"] == {"high": 1, "medium": 0, "low": 0}
    assert report["findings"][0]["id"] == "grant-private-host" and report["findings"][0]["fix"]


def test_the_demo_make_run_sets_up_reports_nothing_high_and_a_reachable_debug_server_exits_1(tmp_path):
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env |= {"EXOCLAW_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "exoclaw.settings"}

    def manage(*args, **extra):
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env | extra, capture_output=True,
                              text=True, timeout=120)

    for step in (["migrate", "--noinput"], ["bootstrap"]):
        done = manage(*step)
        assert done.returncode == 0, done.stderr
    demo = manage("doctor", "--json")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert json.loads(demo.stdout)["counts"]["high"] == 0, demo.stdout
    exposed = manage("doctor", "--bind", "0.0.0.0:7200", DEBUG="true")
    assert exposed.returncode == 1
    assert exposed.stderr.splitlines()[-1].startswith("CommandError: ") and "Traceback" not in exposed.stderr
    assert re.search(r"^HIGH +debug-on: ", exposed.stdout, re.M) and "no-token-on-reachable-bind" in exposed.stdout
