"""The G.711 playout buffer (appliance/media/rtp.py PlayoutBuffer): what a far end's RTP can make it do.

Input: byte 0 sets the delay (bits 0-1: 0, 20, 60 or 100 ms) and the payload type (bit 2: A-law,
else mu-law); bytes 1-4 the sender's first timestamp (near 2**32 to cross the wrap).  Then
operations, chosen by the low 2 bits of a byte:
- 0, put: 4 more bytes, a signed 16-bit step from where the last packet ended (0: the next packet;
  negative: late or overlapping; positive: early, or past MAX_AHEAD), a length byte, and flags
  (bit 0: the other SSRC; bit 1: another payload type; bit 2: the last packet again, a duplicate;
  bit 3: the length in samples, else in 4-sample units; bit 4: a 32-bit jump by the step's
  value; bits 5-7: milliseconds the clock moves on before it arrives);
- 1, tick: the clock moves on 5 ms x (1 + bits 2-7), then pull, as the media clock does;
- 2, stall: the clock moves on 50 ms x bits 2-7 and nothing is pulled;
- 3: pull again at the same time.
Each packet carries the audio of its own timestamps (a fixed pseudo-random sample per position),
so what is played can be checked against where it is played.

Contract: put and pull never raise; the packets and bytes held stay within MAX_PACKETS and
MAX_BYTES; a pull returns non-empty audio and positive fill-in counts, at most two items per
packet it takes out of the buffer (and one gap): nothing is scanned; the playout keeps time: since
the buffer (re-)anchored at time T, pulls have returned int((now - T - delay) * 8000) samples, or
less than one packet more; every audio sample is the one of its position on the timeline, and no
position is played as audio twice (each packet at most once); a slip moves the delay back by
whole SLIP_GRAIN, at most MAX_SLIP at a time, and slips add at most MAX_EXTRA_DELAY in all.
"""
from __future__ import annotations

import bisect
import random

from appliance.media.rtp import PT_PCMA, PT_PCMU, SAMPLE_RATE, PlayoutBuffer, RtpPacket

MAX_LEN = 4096

_DELAYS = (0.0, 0.02, 0.06, 0.1)
#: the sample at timestamp t is _AUDIO[t % 65536]; the table runs on so any packet is one slice
_PERIOD = 1 << 16
_MAX_PAYLOAD = 4 * 255
_TABLE = random.Random(1).randbytes(_PERIOD)
_AUDIO = _TABLE + _TABLE[:_MAX_PAYLOAD]


def _audio(ts: int, n: int) -> bytes:
    start = ts % _PERIOD
    return _AUDIO[start:start + n]


def _signed32(x: int) -> int:
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


class _Timeline:
    """What the buffer has played since it last anchored, as positions from the anchor's timestamp."""

    def __init__(self, base: int, now: float) -> None:
        self.base, self.anchored_at = base, now
        self.pos = 0  # where the next sample plays, from base
        self.samples = 0  # samples pulled since the anchor
        self.slipped = 0
        self.played: list[tuple[int, int]] = []  # audio already played: disjoint [start, end), sorted

    def play_audio(self, chunk: bytes) -> None:
        start, end = self.pos, self.pos + len(chunk)
        assert chunk == _audio(self.base + start, len(chunk)), ("audio played at the wrong position", start)
        i = bisect.bisect_left(self.played, (start, start))
        assert i == 0 or self.played[i - 1][1] <= start, ("played twice", self.played[i - 1], (start, end))
        assert i == len(self.played) or end <= self.played[i][0], ("played twice", self.played[i], (start, end))
        if i and self.played[i - 1][1] == start:
            self.played[i - 1] = (self.played[i - 1][0], end)
        else:
            self.played.insert(i, (start, end))
        self.pos = end


def _check_held(buf: PlayoutBuffer) -> None:
    assert buf.held <= buf.MAX_PACKETS and 0 <= buf.held_bytes <= buf.MAX_BYTES, (buf.held, buf.held_bytes)
    assert buf.held_bytes == sum(len(p) for p in buf._packets.values())
    assert len(buf._heap) == buf.held


def TestOneInput(data: bytes) -> None:
    if len(data) < 5:
        return
    delay = _DELAYS[data[0] & 3]
    pt = PT_PCMA if data[0] & 4 else PT_PCMU
    buf = PlayoutBuffer(pt, delay)
    ts_next = int.from_bytes(data[1:5], "big")
    now, seq = 0.0, 0
    last: RtpPacket | None = None
    line: _Timeline | None = None
    i = 5
    while i < len(data):
        op = data[i]
        kind = op & 3
        if kind == 0:
            if i + 5 > len(data):
                break
            step = int.from_bytes(data[i + 1:i + 3], "big", signed=True)
            length, flags = data[i + 3], data[i + 4]
            i += 5
            if flags & 4 and last is not None:
                packet = last
            else:
                ts = (ts_next ^ (step & 0xFFFF) << 16 if flags & 16 else ts_next + step) & 0xFFFFFFFF
                n = length if flags & 8 else 4 * length
                packet = RtpPacket(pt ^ 13 if flags & 2 else pt, seq, ts, 0x1234 + (flags & 1), _audio(ts, n))
                seq = (seq + 1) & 0xFFFF
                ts_next = (ts + n) & 0xFFFFFFFF
                last = packet
            now += (flags >> 5) / 1000
            before = dict(buf.stats)
            buf.put(packet, now)
            _check_held(buf)
            first = line is None and packet.payload_type == pt and packet.payload
            if first or buf.stats["resync"] > before["resync"]:
                assert buf.stats["resync"] - before["resync"] <= 1
                line = _Timeline(packet.timestamp, now)
            elif line is not None:
                shift = buf.stats["slipped"] - before["slipped"]
                assert 0 <= shift <= buf.MAX_SLIP and shift % buf.SLIP_GRAIN == 0, shift
                line.pos -= shift
                line.slipped += shift
            if line is not None:
                assert line.slipped == round(buf.extra_delay * SAMPLE_RATE) <= buf.MAX_EXTRA_DELAY, (
                    line.slipped, buf.extra_delay)
            continue
        i += 1
        if kind == 2:
            now += 0.05 * (op >> 2)
            continue
        if kind == 1:
            now += 0.005 * (1 + (op >> 2))
        held = buf.held
        out = buf.pull(now)
        _check_held(buf)
        assert len(out) <= 2 * (held - buf.held) + 1, (len(out), held, buf.held)
        if line is None:
            assert out == [], out
            continue
        for item in out:
            if isinstance(item, int):
                assert item > 0, out
                line.pos += item
                line.samples += item
            else:
                assert isinstance(item, bytes) and item, out
                line.play_audio(item)
                line.samples += len(item)
        due = int((now - line.anchored_at - delay) * SAMPLE_RATE)
        assert max(0, due) <= line.samples < max(0, due) + _MAX_PAYLOAD, (line.samples, due)
