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
