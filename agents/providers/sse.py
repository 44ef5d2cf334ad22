"""Server-sent events: bytes in, events out, as the WHATWG HTML standard's event-stream parser.

Pure and incremental: `SSEDecoder.feed()` takes chunks split anywhere (inside a line, inside a
CRLF, inside a UTF-8 character) and returns the events they complete. Two deliberate departures
from browsers: invalid UTF-8 and over-long lines raise `SSEError` instead of being patched up,
because the payloads are JSON that a replacement character would silently corrupt.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

MAX_LINE = 1 << 20  # 1 MiB: far above any real event, low enough to stop a runaway stream
_LINE_END = re.compile(r"\r\n|\r|\n")


class SSEError(ValueError):
    pass


@dataclass(frozen=True)
class SSEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None  # the last event id seen so far in the stream
    retry: int | None = None  # the reconnection time in ms, when the stream has set one


class SSEDecoder:
    def __init__(self, max_line: int = MAX_LINE):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._buf = ""
        self._max_line = max_line
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._has_fields = False
        self.last_id: str | None = None
        self.retry: int | None = None

    @property
    def pending(self) -> bool:
        """True when an event has begun but its closing blank line has not arrived."""
        return self._has_fields or bool(self._buf)

    def feed(self, chunk: bytes) -> list[SSEvent]:
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise SSEError(f"event stream is not valid UTF-8: {exc.reason}") from None
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        self._buf += text
        return self._drain(final=False)

    def close(self) -> list[SSEvent]:
        """End of stream. An event without its closing blank line is discarded, as the standard says."""
        try:
            self._buf += self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise SSEError(f"event stream ends inside a UTF-8 character: {exc.reason}") from None
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[SSEvent]:
        events: list[SSEvent] = []
        pos = 0
        for match in _LINE_END.finditer(self._buf):
            # A CR at the very end may be the first half of a CRLF still on the wire.
            if match.group() == "\r" and match.end() == len(self._buf) and not final:
                break
            event = self._line(self._buf[pos : match.start()])
            if event is not None:
                events.append(event)
            pos = match.end()
        self._buf = self._buf[pos:]
        if len(self._buf) > self._max_line:
            raise SSEError(f"event stream line longer than {self._max_line} characters")
        return events

    def _line(self, line: str) -> SSEvent | None:
        if len(line) > self._max_line:
            raise SSEError(f"event stream line longer than {self._max_line} characters")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            if sum(map(len, self._data)) > self._max_line:
                raise SSEError(f"event data longer than {self._max_line} characters")
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        else:
            return None
        self._has_fields = True
        return None

    def _dispatch(self) -> SSEvent | None:
        event, data = self._event, self._data
        self._event, self._data, self._has_fields = "", [], False
        if not data:
            return None
        return SSEvent(event or "message", "\n".join(data), self.last_id, self.retry)


def parse(stream: bytes) -> list[SSEvent]:
    """All events of a complete stream."""
    decoder = SSEDecoder()
    return decoder.feed(stream) + decoder.close()


async def aiter_sse(chunks: AsyncIterable[bytes], decoder: SSEDecoder | None = None) -> AsyncIterator[SSEvent]:
    decoder = decoder or SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event
