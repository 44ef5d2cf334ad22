"""Settings bench/webhooks.py serves: exoclaw's own, with the URLs of bench/webhooks_urls.py."""

from exoclaw.settings import *  # noqa: F403

ROOT_URLCONF = "bench.webhooks_urls"
