"""`doctor`: a deployment checked for exoclaw's own risks, each finding with an id, a severity and the fix.

The settings checks are pure (`settings_findings` over a `Deployment`); the rows' checks read the
database: API tokens here, grants and plugins in `sandbox/doctor.py`, channels in `webhooks/doctor.py`.
docs/deploy.md lists every finding.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from agents.store.core import EMBEDDED_SCHEMES
from common.doctor import HIGH, LOW, MEDIUM, SEVERITIES, Finding, command
from exoclaw.bind import is_loopback_host, parse_bind
from exoclaw.models import ApiToken

# Host names that only this machine uses.
LOCAL_NAMES = {"127.0.0.1", "localhost", "::1"}
# Keys that are public, so no key at all: placeholders from docs and tutorials, and the example in
# docs/deploy.md (tests/test_doctor.py keeps this in step with it).
PUBLISHED_KEYS = {
    "change-me",
    "changeme",
    "secret",
    "hN3q8ZkT1vWc5xR7bLp2Ym9Fs4Dg6Jt0Ua8Ke3Qw1Ei5Or7Xz2Cn4Vb6Mh9Ad0Sl",
}


@dataclass(frozen=True)
class Deployment:
    """The settings the checks read, as the server would see them."""

    bind: str
    debug: bool
    secret_key: str
    allowed_hosts: tuple[str, ...]
    loopback_trust: bool | None
    redis_url: str
    database_engine: str
    surrealdb_url: str
    trusted_proxies: tuple[str, ...] = ()
    behind_tls_proxy: bool = False

    @classmethod
    def from_settings(cls, bind: str | None = None) -> "Deployment":
        return cls(
            bind=bind or settings.EXOCLAW_BIND,
            debug=settings.DEBUG,
            secret_key=settings.SECRET_KEY,
            allowed_hosts=tuple(settings.ALLOWED_HOSTS),
            loopback_trust=settings.GATEWAY_LOOPBACK_TRUST,
            redis_url=settings.REDIS_URL,
            database_engine=settings.DATABASES["default"]["ENGINE"],
            surrealdb_url=settings.SURREALDB_URL,
            trusted_proxies=tuple(settings.TRUSTED_PROXIES),
            behind_tls_proxy=settings.SECURE_PROXY_SSL_HEADER is not None,
        )

    @property
    def public_bind(self) -> bool:
        """Listening where other machines can connect (a bind we cannot parse counts as public)."""
        try:
            return not is_loopback_host(parse_bind(self.bind)[0])
        except ValueError:
            return True

    @property
    def behind_proxy(self) -> bool:
        return bool(self.trusted_proxies) or self.behind_tls_proxy

    @property
    def exposure(self) -> str | None:
        """How other machines reach this server, in words; None when only this machine does."""
        if self.public_bind:
            return f"exoclaw listens on {self.bind}, reachable from other machines"
        if self.behind_proxy:
            return "exoclaw is served through a proxy (TRUSTED_PROXIES or BEHIND_TLS_PROXY)"
        public = [h for h in self.allowed_hosts if h.strip("[]").lower() not in LOCAL_NAMES]
        if public:
            return f"exoclaw is served to other machines (ALLOWED_HOSTS names {', '.join(public)})"
        return None


def weak_secret_key(key: str) -> bool:
    """Django's own test (security.W009: short, few distinct characters, `django-insecure-`), or a key
    that has been published."""
    return len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-") or key in PUBLISHED_KEYS


def settings_findings(d: Deployment) -> list[Finding]:
    found = []
    exposed = d.exposure is not None
    where = d.exposure or "exoclaw is served to this machine only"
    if d.debug:
        found.append(Finding(
            "debug-on", HIGH if exposed else LOW,
            f"DEBUG is on and {where}: error pages show code, settings and request data",
            "set DEBUG=false (keep it on only while developing on this machine)",
        ))
    if weak_secret_key(d.secret_key):
        found.append(Finding(
            "weak-secret-key", HIGH if exposed else LOW,
            f"SECRET_KEY is weak or published and {where}: whoever knows it can forge the admin's session "
            "cookies and signed values",
            "unset SECRET_KEY to have one generated into $EXOCLAW_VAR_DIR/secret_key, or set it to the output "
            "of: python3 -c 'import secrets; print(secrets.token_urlsafe(50))' (the same in every process)",
        ))
    if "*" in d.allowed_hosts:
        found.append(Finding(
            "allowed-hosts-any", HIGH,
            "ALLOWED_HOSTS contains '*': any Host header is accepted (DNS rebinding, poisoned links), and the "
            "gateway can no longer tell its own page from another site's",
            "list the names clients use, e.g. ALLOWED_HOSTS=exoclaw.example.com,127.0.0.1",
        ))
    if d.loopback_trust and d.public_bind:
        found.append(Finding(
            "loopback-trust-on-reachable-bind", HIGH,
            f"GATEWAY_LOOPBACK_TRUST is on while {where}: any process or forwarder on this machine "
            "(ssh -L, socat, a sidecar) connects as 'loopback' with the admin scope and no token",
            "unset GATEWAY_LOOPBACK_TRUST (it is then off for a non-loopback bind) or set it to false, and use tokens",
        ))
    elif d.loopback_trust is not False and not d.public_bind and d.behind_proxy and "*" not in d.allowed_hosts:
        found.append(Finding(
            "loopback-trust-behind-proxy", MEDIUM,
            "the gateway trusts loopback (GATEWAY_LOOPBACK_TRUST unset on a loopback bind) behind a proxy: a "
            "proxied request is not trusted, but a plain forwarder on this machine (ssh -L, socat, a sidecar) "
            "passes as 'loopback' with the admin scope and no token",
            "set GATEWAY_LOOPBACK_TRUST=false and use tokens (docs/config.md, \"Behind a reverse proxy\")",
        ))
    if d.redis_url and "sqlite" in d.database_engine:
        found.append(Finding(
            "sqlite-with-several-processes", HIGH,
            "REDIS_URL is set (several gateways and workers) but the database is SQLite: a file each "
            "host sees alone, and one writer at a time for all processes",
            "set DATABASE_URL=postgres://… for every process (pip install 'exoclaw[postgres]'), then migrate",
        ))
    if d.redis_url and urlsplit(d.surrealdb_url).scheme in EMBEDDED_SCHEMES:
        found.append(Finding(
            "embedded-store-with-several-processes", HIGH,
            f"REDIS_URL is set (several gateways and workers) but the session store is embedded "
            f"({urlsplit(d.surrealdb_url).scheme}://), which one process alone may open: workers cannot "
            "record conversations",
            "run a SurrealDB server and set SURREALDB_URL=ws://host:8000 (with SURREALDB_USER and SURREALDB_PASS) "
            "for every process",
        ))
    return found


def token_findings(d: Deployment, now=None) -> list[Finding]:
    now = now or timezone.now()
    live = [t for t in ApiToken.objects.filter(enabled=True).order_by("name") if not t.is_expired(now)]
    found = []
    if d.public_bind and not live:
        found.append(Finding(
            "no-token-on-reachable-bind", HIGH,
            f"exoclaw listens on {d.bind}, reachable from other machines, and no API token is enabled: "
            "serve refuses to start",
            f"create one: {command('createtoken NAME --scope chat --expires 30d')} (or set EXOCLAW_TOKEN and run "
            "bootstrap)",
        ))
    for token in live:
        if "admin" in token.scopes and token.expires_at is None:
            found.append(Finding(
                "admin-token-without-expiry", MEDIUM,
                f"API token {token.name} has the admin scope (every method) and never expires",
                f"give it an expiry under API tokens in the admin, or revoke it ({command('revoketoken ' + token.name)}) "
                f"and give each client a narrower one: {command('createtoken NAME --scope chat --expires 30d')}",
            ))
    return found


def diagnose(bind: str | None = None) -> list[Finding]:
    """Every finding for this process's settings and database, most severe first."""
    from sandbox import doctor as sandbox_doctor
    from webhooks import doctor as webhooks_doctor

    d = Deployment.from_settings(bind)
    found = settings_findings(d) + token_findings(d) + sandbox_doctor.findings() + webhooks_doctor.findings()
    return sorted(found, key=lambda f: SEVERITIES.index(f.severity))
