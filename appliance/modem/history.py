"""A ring buffer of recent modem traffic, dumped only when a call fails (Klipper's dump_debug)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    when: float
    direction: str  # ">" to the modem, "<" from it, "!" the channel's own notes
    text: str


class TrafficHistory:
    """The last ``size`` lines and data chunks in both directions, with timestamps."""

    def __init__(self, size: int = 200) -> None:
        self._entries: deque[Entry] = deque(maxlen=size)

    def add(self, when: float, direction: str, text: str) -> None:
        self._entries.append(Entry(when, direction, text))

    def entries(self) -> list[Entry]:
        return list(self._entries)

    def text(self) -> str:
        """One entry a line, oldest first: "  12.345 > AT+FCLASS=?"."""
        return "".join(f"{e.when:10.3f} {e.direction} {e.text}\n" for e in self._entries)


def describe_chunk(data: bytes, limit: int = 48) -> str:
    """A data chunk for the log: its length and the first bytes in hex (page data is binary)."""
    head = data[:limit].hex(" ")
    return f"[{len(data)} bytes] {head}{' …' if len(data) > limit else ''}"
