"""The process-wide plug-in host: one thread pool and one compile cache for every caller (tool calls,
channel adapters, discovery when a plug-in is saved)."""

import threading

from django.conf import settings

from .host import Host

_host: Host | None = None
_lock = threading.Lock()


def get_host() -> Host:
    global _host
    with _lock:
        if _host is None:
            _host = Host(max_workers=settings.SANDBOX_MAX_WORKERS, ca_bundle=settings.SANDBOX_HTTP_CA_BUNDLE)
        return _host
