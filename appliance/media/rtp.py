"""RTP (RFC 3550) for G.711 fax pass-through, sans-I/O.

Fax modems hate jitter buffers that adapt: a changing delay shifts the carrier's phase.  So the
playout buffer here is *fixed*: a packet's samples are played at
``anchor_time + delay + (timestamp - anchor_timestamp) / 8000``, late packets are dropped, and
gaps are reported as fill-in so spandsp's modems keep their timing (``fax_rx_fillin``).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

SAMPLE_RATE = 8000
PT_PCMU = 0
PT_PCMA = 8
PT_CN = 13
_HEADER = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    @classmethod
    def parse(cls, data: bytes) -> "RtpPacket":
        if len(data) < 12:
            raise RtpError(f"{len(data)} bytes is shorter than an RTP header")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            raise RtpError(f"RTP version {b0 >> 6}, expected 2")
        offset = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            if len(data) < offset + 4:
                raise RtpError("header extension runs past the packet")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if b0 & 0x20:
            pad = data[-1] if data else 0
            if pad == 0 or pad > end - offset:
                raise RtpError("bad padding length")
            end -= pad
        if offset > end:
            raise RtpError("headers run past the packet")
        return cls(b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80))

    def build(self) -> bytes:
        return _HEADER.pack(0x80, (0x80 if self.marker else 0) | self.payload_type, self.sequence & 0xFFFF,
                            self.timestamp & 0xFFFFFFFF, self.ssrc) + self.payload


def looks_like_rtp(data: bytes) -> bool:
    """RTP starts with version bits 10; UDPTL (sequence number first) usually does not."""
    return len(data) >= 12 and data[0] >> 6 == 2


class RtpStream:
    """Our outgoing stream: sequence numbers and timestamps from a random start (RFC 3550 5.1)."""

    def __init__(self, payload_type: int, rng: random.Random | None = None) -> None:
        rng = rng or random.SystemRandom()
        self.payload_type = payload_type
        self.ssrc = rng.getrandbits(32)
        self._seq = rng.getrandbits(16)
        self._ts = rng.getrandbits(32)
        self._first = True

    def packet(self, payload: bytes) -> bytes:
        pkt = RtpPacket(self.payload_type, self._seq, self._ts, self.ssrc, payload, marker=self._first)
        self._first = False
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + len(payload)) & 0xFFFFFFFF
        return pkt.build()

    def skip(self, samples: int) -> None:
        """Samples that were never sent (our clock stalled): the next packet shows the gap."""
        self._ts = (self._ts + samples) & 0xFFFFFFFF


class PlayoutBuffer:
    """Fixed-delay playout of one G.711 stream by RTP timestamp.

    ``put`` stores a packet; ``pull(now)`` returns what is due: ``bytes`` chunks to play and
    ``int`` sample counts of fill-in where audio is missing.  Timestamps are unwrapped so a call
    can cross the 32-bit boundary.
    """

    #: a packet further than this ahead of the playout point is a new timeline (the sender jumped)
    MAX_AHEAD = SAMPLE_RATE * 2
    #: packets still arriving late after this long (no on-time packet between) mean the sender's
    #: timeline slipped behind ours: re-anchor once instead of dropping the rest of the call
    SUSTAINED_LATE = 0.1

    def __init__(self, payload_type: int, delay: float = 0.06) -> None:
        self.payload_type = payload_type
        self.delay = delay
        self._anchor_time: float | None = None
        self._anchor_ts = 0
        self._cursor = 0  # unwrapped timestamp of the next sample to play
        self._last_ext = 0
        self._packets: dict[int, bytes] = {}
        self._ssrc = -1
        self._late_since: float | None = None
        self.stats = {"received": 0, "late": 0, "duplicate": 0, "ignored_pt": 0, "fillin": 0, "resync": 0}

    def _unwrap(self, ts: int) -> int:
        base = self._last_ext
        ext = (base & ~0xFFFFFFFF) | ts
        if ext < base - 0x80000000:
            ext += 1 << 32
        elif ext > base + 0x80000000:
            ext -= 1 << 32
        self._last_ext = max(base, ext)
        return ext

    def put(self, packet: RtpPacket, now: float) -> None:
        if packet.payload_type != self.payload_type:
            self.stats["ignored_pt"] += 1  # CN, telephone-event, Cisco NSE, anything else
            return
        if not packet.payload:
            return
        if self._anchor_time is None or packet.ssrc != self._ssrc:
            if self._anchor_time is not None:
                self.stats["resync"] += 1  # a new stream (the peer came back to audio): new timeline
            self._ssrc = packet.ssrc
            self._packets.clear()
            self._anchor_time, self._anchor_ts = now, packet.timestamp
            self._last_ext = self._cursor = packet.timestamp
        ts = self._unwrap(packet.timestamp)
        if ts - self._cursor > self.MAX_AHEAD or self._cursor - ts > self.MAX_AHEAD:
            # the sender restarted its timeline: re-anchor rather than play minutes of fill-in,
            # or drop everything from now on as late
            self.stats["resync"] += 1
            self._packets.clear()
            self._anchor_time, self._anchor_ts, self._cursor = now, ts, ts
            self._last_ext = ts
        if ts + len(packet.payload) <= self._cursor:
            self.stats["late"] += 1
            # A backlog read after our own stall arrives in one burst and is followed by on-time
            # packets; a sender that slipped stays late packet after packet.
            if self._late_since is None:
                self._late_since = now
            elif now - self._late_since >= self.SUSTAINED_LATE:
                self.stats["resync"] += 1
                self._packets.clear()
                self._anchor_time, self._anchor_ts, self._cursor = now, ts, ts
                self._late_since = None
                self._packets[ts] = packet.payload
            return
        self._late_since = None
        if ts in self._packets:
            self.stats["duplicate"] += 1
            return
        self.stats["received"] += 1
        self._packets[ts] = packet.payload

    def pull(self, now: float) -> list[bytes | int]:
        if self._anchor_time is None:
            return []
        due = self._anchor_ts + int((now - self._anchor_time - self.delay) * SAMPLE_RATE)
        out: list[bytes | int] = []
        while self._cursor < due:
            payload = self._packets.pop(self._cursor, None)
            if payload is not None:
                out.append(payload)
                self._cursor += len(payload)
                continue
            # a gap: fill up to the next packet or to what is due, whichever comes first
            later = [ts for ts in self._packets if ts > self._cursor]
            stop = min(min(later), due) if later else due
            overlap = [ts for ts in self._packets if ts < self._cursor]
            for ts in overlap:  # a packet straddling the cursor: play its tail
                payload = self._packets.pop(ts)
                if ts + len(payload) > self._cursor:
                    tail = payload[self._cursor - ts:]
                    out.append(tail)
                    self._cursor += len(tail)
                    break
            else:
                n = stop - self._cursor
                out.append(n)
                self.stats["fillin"] += n
                self._cursor = stop
        return out
