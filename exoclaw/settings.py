"""exoclaw settings: every value is read once from the environment with an explicit default.

The defaults are the embedded ones (SQLite, in-memory channel layer, embedded SurrealKV, the
offline echo provider), so a fresh checkout runs with no configuration at all. `.env.example`
documents every variable; `docs/config.md` explains them.
"""

import ipaddress
import os
import secrets
import ssl
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from exoclaw.bind import DEFAULT_BIND

BASE_DIR = Path(__file__).resolve().parent.parent
# Run from a checkout (manage.py next to the apps), or installed as a package (`pip install .`).
CHECKOUT = (BASE_DIR / "manage.py").is_file()

env = environ.Env()
if CHECKOUT:
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _default_var_dir() -> Path:
    # A checkout keeps its files next to the code; an installed exoclaw in the user's data directory.
    if CHECKOUT:
        return BASE_DIR / "var"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "exoclaw"


# Where exoclaw keeps its own files (SQLite, the secret key, the embedded session store, uploads).
VAR_DIR = Path(env.str("EXOCLAW_VAR_DIR", default=str(_default_var_dir())))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# It holds the secret key, the SQLite database (with token hashes) and the session store: the user's
# only (a directory someone else owns and lends us keeps its mode).
if VAR_DIR.stat().st_uid == os.getuid():
    VAR_DIR.chmod(0o700)


def _secret_key_from_var_dir() -> str:
    # Generated once and kept out of the repository, so a fresh clone is safe without configuration.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# Core
SECRET_KEY = env.str("SECRET_KEY", default="") or _secret_key_from_var_dir()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "exoclaw.apps.ExoclawAdminConfig",  # django.contrib.admin with exoclaw's header and the session browser
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "exoclaw",
    "agents",
    "routing",
    "sandbox",
    "webhooks",
    "openai_api",
    "mcp_remote",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "exoclaw.middleware.admin_csp",
]

ROOT_URLCONF = "exoclaw.urls"
ASGI_APPLICATION = "exoclaw.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Before the apps' folders, so exoclaw's admin/base_site.html wins over the admin's own.
        "DIRS": [BASE_DIR / "exoclaw" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Relational data: agents, bindings, plugins, grants, tokens, Django's own tables.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'exoclaw.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Dates and times in the admin name their zone (exoclaw/formats/en/formats.py).
FORMAT_MODULE_PATH = ["exoclaw.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
# Static files (the admin's CSS and JS, the chat page) are served by WhiteNoise straight from the
# apps' static folders, so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# Channel layer: in-memory (single process) unless REDIS_URL names a Redis server.
REDIS_URL = env.str("REDIS_URL", default="")
# Every key exoclaw keeps in Redis (channel layer, run board, login throttle) starts with this.
REDIS_PREFIX = env.str("REDIS_PREFIX", default="exoclaw")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 stops a pool at 100 connections and a read at 5 s by default; but every blocking
            # receive and every followed run (agents/runtime) holds a connection, and channels-redis
            # blocks for 5 s per receive, so a 5 s read timeout crashes consumers on an idle channel.
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "max_connections": env.int("REDIS_MAX_CONNECTIONS", default=2000),
                        "socket_timeout": 30,
                    }
                ],
                "prefix": REDIS_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Metrics (GET /metrics, common/metrics.py). With several processes (REDIS_URL set) each one writes its
# values to files in this directory, which every process of the host sums up when scraped; "" keeps
# each process's values to itself. prometheus-client reads the variable from the environment.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "metrics") if REDIS_URL else "")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
else:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

# Session store (SurrealDB): embedded SurrealKV on disk by default, ws:// for a server.
SURREALDB_URL = env.str("SURREALDB_URL", default=f"surrealkv://{VAR_DIR / 'sessions'}")
SURREALDB_NS = env.str("SURREALDB_NS", default="exoclaw")
SURREALDB_DB = env.str("SURREALDB_DB", default="exoclaw")
SURREALDB_USER = env.str("SURREALDB_USER", default="")
SURREALDB_PASS = env.str("SURREALDB_PASS", default="")

# Gateway
EXOCLAW_TOKEN = env.str("EXOCLAW_TOKEN", default="")
EXOCLAW_BIND = env.str("EXOCLAW_BIND", default=DEFAULT_BIND)

# LLM providers (an agent may name its own key variable and base URL instead).
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="https://api.anthropic.com")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="https://api.openai.com/v1")

# Production hardening: on whenever DEBUG is off, so `check --deploy` passes with the
# documented production variables set (SECRET_KEY, ALLOWED_HOSTS, EXOCLAW_TOKEN).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Probes and scrapes come straight to a gateway's own address, in plain HTTP (exoclaw/probes.py).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG and SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG and SECURE_SSL_REDIRECT)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# LOG_FORMAT: "plain" lines, or "json": one JSON object per line, with run_id and session_key where
# they apply (common/logcontext.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "common.logcontext.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# Agent runtime
# A worker renews the lease on each run it executes; a run whose lease lapses (the worker died) ends
# with an error event about 1.5 lease periods later.
AGENT_RUN_LEASE_SECONDS = env.float("AGENT_RUN_LEASE_SECONDS", default=10.0)
# How long a dispatched run may wait for an `agent-runs` worker to pick it up.
AGENT_RUN_CLAIM_SECONDS = env.float("AGENT_RUN_CLAIM_SECONDS", default=30.0)
# How long a run's events stay replayable for `chat.subscribe`.
AGENT_RUN_EVENTS_TTL = env.int("AGENT_RUN_EVENTS_TTL", default=86400)
# Runs one worker process executes at once (more wait inside the worker).
AGENT_WORKER_CONCURRENCY = env.int("AGENT_WORKER_CONCURRENCY", default=64)
# LLM providers: retries of failed requests before the first streamed event (agents/providers/transport.py).
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=2)
LLM_RETRY_INITIAL_DELAY = env.float("LLM_RETRY_INITIAL_DELAY", default=0.5)
LLM_RETRY_MAX_DELAY = env.float("LLM_RETRY_MAX_DELAY", default=8.0)
LLM_RETRY_AFTER_MAX = env.float("LLM_RETRY_AFTER_MAX", default=60.0)

# Foundation
# WhiteNoise warns on every request when STATIC_ROOT is missing, even though it serves from the finders.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Gateway limits (docs/protocol.md, "Limits")
GATEWAY_MAX_FRAME_BYTES = env.int("GATEWAY_MAX_FRAME_BYTES", default=1024 * 1024)
GATEWAY_MAX_BATCH = env.int("GATEWAY_MAX_BATCH", default=50)
GATEWAY_MAX_DEPTH = env.int("GATEWAY_MAX_DEPTH", default=32)
GATEWAY_RATE = env.float("GATEWAY_RATE", default=20.0)  # requests per second per connection, sustained
GATEWAY_BURST = env.int("GATEWAY_BURST", default=40)  # requests per connection at once
GATEWAY_MAX_RUNS = env.int("GATEWAY_MAX_RUNS", default=4)  # concurrent runs per connection
GATEWAY_AUTH_GRACE = env.float("GATEWAY_AUTH_GRACE", default=10.0)  # seconds to authenticate
GATEWAY_AUTH_FAILURES = env.int("GATEWAY_AUTH_FAILURES", default=5)  # failed logins per address…
GATEWAY_AUTH_WINDOW = env.float("GATEWAY_AUTH_WINDOW", default=60.0)  # …within this many seconds
# The OpenAI-compatible API at /v1/ (docs/api.md): requests per second per token, sustained and at
# once, and the largest request body in bytes.
OPENAI_COMPAT_RATE = env.float("OPENAI_COMPAT_RATE", default=10.0)
OPENAI_COMPAT_BURST = env.int("OPENAI_COMPAT_BURST", default=30)
OPENAI_COMPAT_MAX_BODY_BYTES = env.int("OPENAI_COMPAT_MAX_BODY_BYTES", default=2 * 1024 * 1024)
# Reverse proxies (addresses or CIDRs) whose X-Forwarded-For and X-Forwarded-Proto are believed; from
# any other peer those headers are ignored. The client address they give is what the login throttle
# counts by (docs/config.md, "Behind a reverse proxy").
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or CIDR") from None
# Whether a loopback peer needs no token (docs/protocol.md, "Authentication"). Unset: only when the
# server listens on a loopback address. Never while ALLOWED_HOSTS contains "*".
GATEWAY_LOOPBACK_TRUST = env.bool("GATEWAY_LOOPBACK_TRUST", default=None)
# How often the tokens of open connections are checked again: one revoked, disabled, expired or
# deleted closes its connections within about this long, in every process.
GATEWAY_TOKEN_RECHECK_SECONDS = env.float("GATEWAY_TOKEN_RECHECK_SECONDS", default=1.0)
GATEWAY_PING_INTERVAL = env.int("GATEWAY_PING_INTERVAL", default=20)  # idle seconds before a ping
GATEWAY_PING_TIMEOUT = env.int("GATEWAY_PING_TIMEOUT", default=30)  # seconds to answer it
# Tokens never reach the log, whichever logger writes them (daphne's access log included).
LOGGING["filters"] = {
    "redact_tokens": {"()": "exoclaw.gateway.redact.RedactTokens"},
    "run_context": {"()": "common.logcontext.RunContextFilter"},
}
LOGGING["handlers"]["console"]["filters"] = ["redact_tokens", "run_context"]

# Channels (webhooks): the Telegram adapter puts the bot token in the request URL, and httpx logs
# every request's URL at INFO, so its request log stays off.
LOGGING["loggers"] = {**LOGGING.get("loggers", {}), "httpx": {"level": "WARNING"}}
# The process handling an accepted webhook renews its lease on it every third of this; another
# process takes over an event whose lease ran out (its process stopped).
WEBHOOK_LEASE_SECONDS = env.float("WEBHOOK_LEASE_SECONDS", default=60.0)
if WEBHOOK_LEASE_SECONDS <= 0:
    raise ImproperlyConfigured(f"WEBHOOK_LEASE_SECONDS must be more than 0, not {WEBHOOK_LEASE_SECONDS}")
# Request bodies, bounded while they stream in (exoclaw/bodylimit.py): /hooks/ and everything else.
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
HTTP_MAX_BODY_BYTES = env.int("HTTP_MAX_BODY_BYTES", default=64 * 1024 * 1024)

# Session store durability: fsync every commit of the embedded engine (SURREAL_SYNC_DATA), so a write
# that returned survives a power cut. Off trades that for ~15% more appends/s (docs/benchmarks.md).
SURREALDB_SYNC_WRITES = env.bool("SURREALDB_SYNC_WRITES", default=True)

# Sandbox: threads that run Extism plug-in calls (each plug-in is also limited by its grant's max_concurrency).
SANDBOX_MAX_WORKERS = env.int("SANDBOX_MAX_WORKERS", default=16)
# Sandbox: the CA certificates (a PEM file) that plug-ins' https requests are verified against,
# instead of certifi's bundle, for an operator's private CA. Loaded here so that a wrong path or a
# file without certificates stops the start instead of failing every plug-in's first https request.
SANDBOX_HTTP_CA_BUNDLE = env.str("SANDBOX_HTTP_CA_BUNDLE", default="") or None
if SANDBOX_HTTP_CA_BUNDLE:
    try:
        ssl.create_default_context(cafile=SANDBOX_HTTP_CA_BUNDLE)
    except OSError as exc:  # ssl.SSLError too: a file with no PEM certificate in it
        raise ImproperlyConfigured(f"SANDBOX_HTTP_CA_BUNDLE={SANDBOX_HTTP_CA_BUNDLE}: not a PEM file of CA "
                                   f"certificates ({exc})") from None
