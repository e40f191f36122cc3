"""RTP (RFC 3550) for G.711 fax pass-through, sans-I/O.

Fax modems hate jitter buffers that adapt: a changing delay shifts the carrier's phase.  So the
playout buffer here is *fixed*: a packet's samples are played at
``anchor_time + delay + (timestamp - anchor_timestamp) / 8000``, late packets are dropped, and
gaps are reported as fill-in so spandsp's modems keep their timing (``fax_rx_fillin``).
"""

from __future__ import annotations

import heapq
import random
import struct
from typing import NamedTuple

SAMPLE_RATE = 8000
PT_PCMU = 0
PT_PCMA = 8
PT_CN = 13
_HEADER = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


class RtpPacket(NamedTuple):
    """One parsed RTP packet (a tuple: made for every datagram, so made cheaply)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < 12:
            raise RtpError(f"{len(data)} bytes is shorter than an RTP header")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 == 0x80:  # the usual packet: no CSRC, extension or padding
            return cls(b1 & 0x7F, seq, ts, ssrc, bytes(data[12:]), b1 > 0x7F)
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
        return (
            _HEADER.pack(
                0x80,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc,
            )
            + self.payload
        )


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
        return _HEADER.pack(0x80, *self.next_header(len(payload))) + payload

    def next_header(self, samples: int) -> tuple[int, int, int, int]:
        """The next packet's header fields after the first byte (marker and payload type, sequence,
        timestamp, SSRC) for ``samples`` of audio; the stream moves on past it."""
        b1 = self.payload_type | (0x80 if self._first else 0)
        header = (b1, self._seq, self._ts, self.ssrc)
        self._first = False
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + samples) & 0xFFFFFFFF
        return header

    def skip(self, samples: int) -> None:
        """Samples that were never sent (our clock stalled): the next packet shows the gap."""
        self._ts = (self._ts + samples) & 0xFFFFFFFF

    @staticmethod
    def restamp(packet: bytes, samples: int) -> bytes:
        """``packet`` (one of ours, made ahead) with its timestamp moved on by ``samples``."""
        out = bytearray(packet)
        (ts,) = struct.unpack_from("!I", out, 4)
        struct.pack_into("!I", out, 4, (ts + samples) & 0xFFFFFFFF)
        return bytes(out)


class PlayoutBuffer:
    """Fixed-delay playout of one G.711 stream by RTP timestamp.

    ``put`` stores a packet; ``pull(now)`` returns what is due: ``bytes`` chunks to play and
    ``int`` sample counts of fill-in where audio is missing.  Timestamps are unwrapped so a call
    can cross the 32-bit boundary.

    Packets wait in a heap keyed by unwrapped timestamp, so a tick costs O(log n) per packet
    played or gap filled however many are held, and what is held is bounded (``MAX_PACKETS``,
    ``MAX_BYTES``): a flood of tiny packets is dropped and counted, never scanned.

    A gap at the playout point whose audio then arrives late but whole (a delay spike on the
    path, or our own short stall) is played after all: the delay grows by the gap once, a
    "slip" (docs/decisions/0010), instead of cutting a hole into a modem's training or page.
    """

    #: a packet further than this ahead of the playout point is a new timeline (the sender jumped)
    MAX_AHEAD = SAMPLE_RATE * 2
    #: packets still arriving late after this long (no on-time packet between) mean the sender's
    #: timeline slipped behind ours: re-anchor once instead of dropping the rest of the call
    SUSTAINED_LATE = 0.1
    #: packets and payload bytes held at most: 2 s of 5 ms packets, 4 s of audio; what a fixed
    #: delay of at most MAX_AHEAD needs, with room for overlap.  Beyond, packets are dropped.
    MAX_PACKETS = 400
    MAX_BYTES = SAMPLE_RATE * 4
    #: a gap of at most this many samples is slipped when its packets arrive late but whole
    MAX_SLIP = SAMPLE_RATE // 5
    #: slips add at most this many samples to the delay (until a new timeline re-anchors it);
    #: beyond, late audio is lost as before
    MAX_EXTRA_DELAY = SAMPLE_RATE * 3 // 10
    #: a slip inserts fill-in in multiples of 10 ms: whole carrier cycles and symbols for every fax
    #: modem (V.17 and V.27ter at 1800 Hz, V.29 at 1700 Hz; 2400, 1600, 1200 baud), so spandsp's
    #: fill-in leaves the demodulator's phase where the late audio continues it
    SLIP_GRAIN = SAMPLE_RATE // 100

    def __init__(self, payload_type: int, delay: float = 0.06) -> None:
        self.payload_type = payload_type
        self.delay = delay
        self._anchor_time: float | None = None
        self._anchor_ts = 0
        self._cursor = 0  # unwrapped timestamp of the next sample to play
        self._last_ext = 0
        self._heap: list[int] = []  # unwrapped timestamps of the held packets
        self._packets: dict[int, bytes] = {}
        self._bytes = 0
        self._ssrc = -1
        self._late_since: float | None = None
        self._gap_from: int | None = None  # where the fill-in now being played started
        self._extra = 0  # samples the slips added to the delay
        self._played_to: int | None = None  # audio up to here was played before the last slip
        self.stats = {
            "received": 0,
            "late": 0,
            "duplicate": 0,
            "ignored_pt": 0,
            "fillin": 0,
            "resync": 0,
            "overflow": 0,
            "slips": 0,
            "slipped": 0,
        }

    @property
    def held(self) -> int:
        """Packets waiting to be played."""
        return len(self._packets)

    @property
    def held_bytes(self) -> int:
        """Payload bytes waiting to be played."""
        return self._bytes

    @property
    def extra_delay(self) -> float:
        """Seconds the slips added to the configured delay."""
        return self._extra / SAMPLE_RATE

    def _unwrap(self, ts: int) -> int:
        base = self._last_ext
        ext = (base & ~0xFFFFFFFF) | ts
        if ext < base - 0x80000000:
            ext += 1 << 32
        elif ext > base + 0x80000000:
            ext -= 1 << 32
        self._last_ext = max(base, ext)
        return ext

    def _anchor(self, now: float, ts: int) -> None:
        """A new timeline: ``ts`` plays ``delay`` from ``now``; what was held is dropped."""
        self._heap.clear()
        self._packets.clear()
        self._bytes = 0
        self._anchor_time, self._anchor_ts, self._cursor = now, ts, ts
        self._gap_from = None
        self._extra = 0
        self._played_to = None

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
            self._anchor(now, packet.timestamp)
            self._last_ext = packet.timestamp
        ts = self._unwrap(packet.timestamp)
        if ts - self._cursor > self.MAX_AHEAD or self._cursor - ts > self.MAX_AHEAD:
            # the sender restarted its timeline: re-anchor rather than play minutes of fill-in,
            # or drop everything from now on as late
            self.stats["resync"] += 1
            self._anchor(now, ts)
            self._last_ext = ts
        if ts < self._cursor and not self._slip(ts):
            if ts + len(packet.payload) > self._cursor:
                pass  # straddles the playout point: its tail is still due
            else:
                self.stats["late"] += 1
                # A backlog read after our own stall arrives in one burst and is followed by
                # on-time packets; a sender that slipped stays late packet after packet.
                if self._late_since is None:
                    self._late_since = now
                elif now - self._late_since >= self.SUSTAINED_LATE:
                    self.stats["resync"] += 1
                    self._anchor(now, ts)
                    self._late_since = None
                    self._store(ts, packet.payload)
                return
        self._late_since = None
        if ts in self._packets:
            self.stats["duplicate"] += 1
            return
        if self._store(ts, packet.payload):
            self.stats["received"] += 1

    def _store(self, ts: int, payload: bytes) -> bool:
        if len(self._packets) >= self.MAX_PACKETS or self._bytes + len(payload) > self.MAX_BYTES:
            self.stats["overflow"] += 1
            return False
        heapq.heappush(self._heap, ts)
        self._packets[ts] = payload
        self._bytes += len(payload)
        return True

    def _slip(self, ts: int) -> bool:
        """A packet behind the playout point whose audio was filled in, not played: play it after
        all by moving the playout point back to it, if the gap is short and the delay may grow."""
        shift = -((ts - self._cursor) // self.SLIP_GRAIN) * self.SLIP_GRAIN  # rounded up to the grain
        if (
            self._gap_from is None
            or ts < self._gap_from
            or shift > self.MAX_SLIP
            or self._extra + shift > self.MAX_EXTRA_DELAY
        ):
            return False
        # the rounding is played as more fill-in just before the packet: the cursor may land before
        # the gap, in audio already played, which ``pull`` fills in rather than plays a second time
        self._played_to = self._gap_from
        self._anchor_ts -= shift
        self._cursor -= shift
        self._extra += shift  # the gap stays open: a packet of it arriving next may slip it further
        self.stats["slips"] += 1
        self.stats["slipped"] += shift
        return True

    def pull(self, now: float) -> list[bytes | int]:
        if self._anchor_time is None:
            return []
        due = self._anchor_ts + int((now - self._anchor_time - self.delay) * SAMPLE_RATE)
        out: list[bytes | int] = []
        heap, packets = self._heap, self._packets
        while self._cursor < due:
            if heap and heap[0] <= self._cursor:
                ts = heapq.heappop(heap)
                payload = packets.pop(ts)
                self._bytes -= len(payload)
                played_to = self._cursor if self._played_to is None else max(self._cursor, self._played_to)
                if ts + len(payload) <= played_to:
                    continue  # wholly overlapped by audio already played
                if self._cursor < played_to:  # behind a slip: fill in what was played, play the rest
                    out.append(played_to - self._cursor)
                    self.stats["fillin"] += played_to - self._cursor
                    self._cursor = played_to
                if ts < self._cursor:  # a packet straddling the cursor: play its tail
                    payload = payload[self._cursor - ts :]
                out.append(payload)
                self._cursor += len(payload)
                self._gap_from = None
                continue
            # a gap: fill up to the next packet or to what is due, whichever comes first
            stop = min(heap[0], due) if heap else due
            n = stop - self._cursor
            if self._gap_from is None:
                self._gap_from = self._cursor
            out.append(n)
            self.stats["fillin"] += n
            self._cursor = stop
        return out
