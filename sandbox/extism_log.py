"""Extism's log, captured so the cause of a failed host call reaches the operator.

When a host call fails (an HTTP request to a host outside the grant, say) Extism raises an error that
holds only a wasm backtrace; the cause is written to its log. The log is process-wide and buffered,
so it is captured once and each line is filed under the plug-in instance id Extism prints with it
(`plugin="<uuid>"`): concurrent calls each get their own causes.
"""

import re
import threading
from collections import OrderedDict

import extism

_PLUGIN_ID = re.compile(r'plugin="([0-9a-f-]{36})"')
_CAUSED_BY = re.compile(r"\nCaused by:\n(.*?)(?:\n\n|\nStack backtrace:|$)", re.S)
_NUMBERED = re.compile(r"^\d+:\s*")
_MAX_PENDING = 1000


class ExtismLog:
    def __init__(self):
        self._lock = threading.RLock()
        self._pending: OrderedDict[str, list[str]] = OrderedDict()
        self._logger = None

    def install(self):
        with self._lock:
            if self._logger is None:
                self._logger = extism.set_log_custom(self._on_line, "error")

    def _on_line(self, line: str):
        found = _PLUGIN_ID.search(line)
        if not found:
            return
        causes = []
        caused = _CAUSED_BY.search(line)
        if caused:
            causes = [_NUMBERED.sub("", c.strip()) for c in caused.group(1).splitlines() if c.strip()]
        with self._lock:
            self._pending.setdefault(found.group(1), []).extend(causes)
            while len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)

    def causes_for(self, plugin_id: str) -> list[str]:
        """The causes Extism logged for one plug-in instance (claimed: a second ask returns nothing)."""
        with self._lock:
            if self._logger is not None:
                self._logger.drain()
            return list(dict.fromkeys(self._pending.pop(plugin_id, [])))


extism_log = ExtismLog()
