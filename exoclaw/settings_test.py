"""Test settings: the production settings with throwaway stores and fast hashing."""

import tempfile
from pathlib import Path

from .settings import *  # noqa: F403

VAR_DIR = Path(tempfile.mkdtemp(prefix="exoclaw-test-var-"))
MEDIA_ROOT = VAR_DIR / "media"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "test.sqlite3"}}
SURREALDB_URL = "mem://"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# LLM providers: retries wait milliseconds, not seconds (tests that check the waits use tests/fakes' fast_retry).
LLM_RETRY_INITIAL_DELAY = 0.001
LLM_RETRY_MAX_DELAY = 0.002
LLM_RETRY_AFTER_MAX = 0.5
