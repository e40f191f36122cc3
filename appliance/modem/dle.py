"""DLE transparency for modem data (T.31 §4.5, T.32 §8): stuffing only, no bit reversal.

Bit order is a Class 1/Class 2 driver concern (it depends on the modem and on +FBO), so it is
kept out of the byte-level escaping that every data phase shares.
"""

from __future__ import annotations

DLE = 0x10
ETX = 0x03
SUB = 0x1A  # Class 2.0/1.0: <DLE><SUB> stands for two DLE data bytes


def dle_stuff(data: bytes, sub: bool = False) -> bytes:
    """Double every DLE; with ``sub``, a DLE pair is sent as <DLE><SUB> (shorter, T.32 8.1)."""
    out = data.replace(b"\x10", b"\x10\x10")
    if sub:
        out = out.replace(b"\x10\x10\x10\x10", b"\x10\x1a")
    return out


def dle_unstuff(data: bytes) -> bytes:
    """Undo stuffing of one complete block (no trailing <DLE><ETX>); unknown pairs are dropped."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b != DLE:
            out.append(b)
            i += 1
            continue
        nxt = data[i + 1] if i + 1 < n else None
        if nxt == DLE:
            out.append(DLE)
        elif nxt == SUB:
            out += b"\x10\x10"
        i += 2
    return bytes(out)
