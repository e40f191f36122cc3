"""Cutting a TCP/TLS byte stream into SIP messages (RFC 3261 §18.3) and CRLF keep-alives (RFC 5626).

On a stream, Content-Length is the only frame boundary, so it is mandatory; any framing doubt is
fatal for the connection (there is no way to resynchronise).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.sip.errors import SipParseError

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(rb"\r?\n")


@dataclass(frozen=True)
class KeepAlive:
    """A "\\r\\n\\r\\n" ping seen between messages; the transport answers with one "\\r\\n"."""


class StreamFramer:
    """Feed bytes, then iterate: yields each complete message as bytes, or a KeepAlive."""

    def __init__(self, max_message_size: int = 65536) -> None:
        self._buffer = bytearray()
        self._max = max_message_size
        self.keepalives = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def __iter__(self) -> Iterator[bytes | KeepAlive]:
        return self

    def __next__(self) -> bytes | KeepAlive:
        item = self._next_frame()
        if item is None:
            raise StopIteration
        return item

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _next_frame(self) -> bytes | KeepAlive | None:
        buf = self._buffer
        while buf and buf[0] in b"\r\n":
            if buf.startswith(b"\r\n\r\n"):
                del buf[:4]
                self.keepalives += 1
                return KeepAlive()
            if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                return None  # maybe the start of a ping: wait for the rest
            # a lone CRLF (a pong, or padding) between messages
            del buf[: 2 if buf.startswith(b"\r\n") else 1]
        if not buf:
            return None
        m = _HEAD_END.search(buf)
        if not m:
            if len(buf) > self._max:
                raise SipParseError("Message Too Large", status=513)
            return None
        length = self._content_length(bytes(buf[: m.start()]))
        total = m.end() + length
        if total > self._max:
            raise SipParseError("Message Too Large", status=513)
        if len(buf) < total:
            return None
        frame = bytes(buf[:total])
        del buf[:total]
        return frame

    @staticmethod
    def _content_length(head: bytes) -> int:
        values = set()
        for line in _LINE_SPLIT.split(head)[1:]:
            name, colon, value = line.partition(b":")
            if colon and name.strip().lower() in (b"content-length", b"l"):
                values.add(value.strip())
        if not values:
            raise SipParseError("Missing Content-Length")
        if len(values) > 1:
            raise SipParseError("Duplicate Content-Length")
        value = values.pop()
        if not value.isdigit() or len(value) > 9:
            raise SipParseError("Bad Content-Length")
        return int(value)
