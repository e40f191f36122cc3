"""RTP packets and the fixed-delay playout buffer, with fixed clocks."""

from __future__ import annotations

import random

import pytest

from appliance.media.rtp import PlayoutBuffer, RtpError, RtpPacket, RtpStream, looks_like_rtp


def pkt(seq: int, ts: int, payload: bytes = b"\x55" * 160, pt: int = 0) -> RtpPacket:
    return RtpPacket(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, 1234, payload)


def test_build_parse_roundtrip():
    p = RtpPacket(8, 65535, 0xFFFFFF00, 0xDEADBEEF, b"abc", marker=True)
    q = RtpPacket.parse(p.build())
    assert q == p


def test_parse_skips_csrc_extension_and_padding():
    header = bytes([0x80 | 0x20 | 0x10 | 2, 0, 0, 1]) + (5).to_bytes(4, "big") + (7).to_bytes(4, "big")
    csrc = b"\x00" * 8
    ext = b"\xbe\xde\x00\x01" + b"\x01\x02\x03\x04"
    payload = b"hello"
    padding = b"\x00\x00\x03"
    p = RtpPacket.parse(header + csrc + ext + payload + padding)
    assert p.payload == b"hello" and p.timestamp == 5 and p.ssrc == 7


@pytest.mark.parametrize("data,why", [
    (b"", "shorter"), (b"\x80" * 11, "shorter"), (b"\x40" + b"\x00" * 20, "version"),
    (bytes([0x90]) + b"\x00" * 11 + b"\x00\x00", "extension"),
    (bytes([0xA0]) + b"\x00" * 11 + b"\x00", "padding"),
    (bytes([0xA0]) + b"\x00" * 11 + b"\x10", "padding"),
    (bytes([0x8F]) + b"\x00" * 11, "past"),
])
def test_malformed_packets_raise(data, why):
    with pytest.raises(RtpError, match=why):
        RtpPacket.parse(data)


def test_looks_like_rtp_tells_udptl_apart():
    assert looks_like_rtp(pkt(1, 1).build())
    assert not looks_like_rtp(b"\x00\x03\x06\xc0\x01\x80\x00\x00\xff\x00\x02\x01\x06")


def test_stream_sequence_and_timestamp_advance():
    s = RtpStream(0, rng=random.Random(1))
    a, b = RtpPacket.parse(s.packet(b"x" * 160)), RtpPacket.parse(s.packet(b"y" * 160))
    assert a.marker and not b.marker
    assert (b.sequence - a.sequence) & 0xFFFF == 1
    assert (b.timestamp - a.timestamp) & 0xFFFFFFFF == 160


def drain(buf: PlayoutBuffer, now: float) -> list:
    return buf.pull(now)


def test_playout_holds_packets_for_the_fixed_delay_then_plays_in_order():
    buf = PlayoutBuffer(0, delay=0.06)
    buf.put(pkt(1, 1000, b"a" * 160), 10.0)
    assert drain(buf, 10.05) == []  # not due before the delay
    buf.put(pkt(3, 1320, b"c" * 160), 10.03)  # arrives before packet 2: reordering
    buf.put(pkt(2, 1160, b"b" * 160), 10.04)
    out = drain(buf, 10.06 + 0.06)
    assert out == [b"a" * 160, b"b" * 160, b"c" * 160][: len(out)]
    assert b"".join(x for x in out if isinstance(x, bytes)).startswith(b"a" * 160 + b"b" * 160)


def test_playout_fills_in_lost_packets_by_timestamp():
    buf = PlayoutBuffer(0, delay=0.0)
    buf.put(pkt(1, 0, b"a" * 160), 0.0)
    buf.put(pkt(3, 320, b"c" * 160), 0.04)  # packet 2 lost
    out = drain(buf, 0.06)
    assert out == [b"a" * 160, 160, b"c" * 160]
    assert buf.stats["fillin"] == 160


def test_playout_fillin_when_nothing_arrives_keeps_time():
    buf = PlayoutBuffer(0, delay=0.0)
    buf.put(pkt(1, 0, b"a" * 160), 0.0)
    out = drain(buf, 0.1)
    assert out[0] == b"a" * 160 and sum(x for x in out[1:]) == 800 - 160


def test_late_and_duplicate_packets_are_dropped_and_counted():
    buf = PlayoutBuffer(0, delay=0.0)
    buf.put(pkt(1, 0), 0.0)
    buf.put(pkt(2, 160), 0.02)
    buf.put(pkt(2, 160), 0.021)
    assert buf.stats["duplicate"] == 1
    drain(buf, 0.04)
    buf.put(pkt(1, 0), 0.05)
    assert buf.stats["late"] == 1


def test_other_payload_types_are_ignored():
    buf = PlayoutBuffer(0, delay=0.0)
    buf.put(pkt(1, 0, b"\x40", pt=13), 0.0)   # comfort noise
    buf.put(pkt(2, 0, b"\x00" * 4, pt=100), 0.0)  # Cisco NSE
    buf.put(pkt(3, 0, b"\x00" * 4, pt=101), 0.0)  # telephone-event
    assert buf.stats["ignored_pt"] == 3 and drain(buf, 1.0) == []


def test_timestamp_wraparound():
    buf = PlayoutBuffer(8, delay=0.0)
    start = 0xFFFFFFFF - 200
    buf.put(pkt(1, start, b"a" * 160, pt=8), 0.0)
    buf.put(pkt(2, start + 160, b"b" * 160, pt=8), 0.02)  # crosses 2**32
    buf.put(pkt(3, start + 320, b"c" * 160, pt=8), 0.04)
    out = drain(buf, 0.06)
    assert out == [b"a" * 160, b"b" * 160, b"c" * 160]


def test_ptime_10_and_30_ms_play_the_same_samples():
    for size in (80, 240):
        buf = PlayoutBuffer(0, delay=0.0)
        for i in range(6):
            buf.put(pkt(i, i * size, bytes([i]) * size), i * size / 8000)
        out = drain(buf, 6 * size / 8000)
        assert b"".join(x for x in out if isinstance(x, bytes)) == b"".join(bytes([i]) * size for i in range(6))


def test_sender_timeline_jump_resyncs_instead_of_filling_minutes():
    buf = PlayoutBuffer(0, delay=0.0)
    buf.put(pkt(1, 0), 0.0)
    drain(buf, 0.02)
    buf.put(pkt(2, 8000 * 600), 0.04)
    out = drain(buf, 0.06)
    assert buf.stats["resync"] == 1
    assert sum(x for x in out if isinstance(x, int)) < 8000


def test_random_loss_and_reorder_conserves_sample_count():
    rng = random.Random(7)
    buf = PlayoutBuffer(0, delay=0.06)
    packets = [pkt(i, i * 160, bytes([i % 256]) * 160) for i in range(500)]
    arrivals = sorted(((i * 0.02 + rng.uniform(0, 0.05), p) for i, p in enumerate(packets) if rng.random() > 0.05),
                      key=lambda x: x[0])
    played = 0
    for when, p in arrivals:
        for item in buf.pull(when):
            played += item if isinstance(item, int) else len(item)
        buf.put(p, when)
    for item in buf.pull(10.0 + 0.06):
        played += item if isinstance(item, int) else len(item)
    assert played == 80000  # 10 s of samples, none invented, none lost


def test_new_stream_after_a_switch_back_to_audio_is_played_not_dropped_as_late():
    """A peer returning to G.711 starts a new RTP stream: new SSRC, random timestamps that may lie
    'behind' the old stream's.  Found by the silent-gateway e2e test: every packet was late."""
    buf = PlayoutBuffer(0, delay=0.0)
    for i in range(50):
        buf.put(RtpPacket(0, i, 1_000_000 + i * 160, 1, b"a" * 160), i * 0.02)
    drain(buf, 1.0)
    for i in range(5):  # the new stream, far behind the old timeline
        buf.put(RtpPacket(0, 7000 + i, 5000 + i * 160, 2, b"b" * 160), 1.0 + i * 0.02)
    out = drain(buf, 1.1)
    assert b"".join(x for x in out if isinstance(x, bytes)) == b"b" * 800
    assert buf.stats["late"] == 0 and buf.stats["resync"] == 1


def test_same_stream_jumping_far_back_resyncs():
    buf = PlayoutBuffer(0, delay=0.0)
    buf.put(pkt(1, 100_000), 0.0)
    drain(buf, 0.02)
    buf.put(pkt(2, 10), 0.04)  # 12 s back on the same SSRC
    assert buf.stats["resync"] == 1 and buf.stats["late"] == 0


def test_a_sender_that_slipped_behind_is_re_anchored_once_not_dropped_for_the_rest_of_the_call():
    """A sender whose timestamps run on after it stalled arrives late packet after packet: after
    SUSTAINED_LATE the buffer re-anchors and plays again, instead of filling in until hang-up."""
    buf = PlayoutBuffer(0, delay=0.06)
    t = 0.0
    for i in range(5):  # on time
        buf.put(pkt(i, i * 160, bytes([i]) * 160), t)
        t += 0.02
    drain(buf, t + 0.06)
    played = []
    # the sender stalled 300 ms and continues its timeline: every packet is now 300 ms late
    for _ in range(15):
        t += 0.02
        buf.pull(t)  # our playout runs on meanwhile
    for i in range(5, 30):
        buf.put(pkt(i, i * 160, bytes([i]) * 160), t)
        t += 0.02
        played += [x for x in buf.pull(t) if isinstance(x, bytes)]
    played += [x for x in buf.pull(t + 0.1) if isinstance(x, bytes)]
    assert buf.stats["resync"] == 1
    late = buf.stats["late"]
    assert all(bytes([i]) * 160 in played for i in range(5 + late, 30)), late


def test_a_backlog_after_our_own_stall_does_not_re_anchor():
    """Packets read in one burst after the receiver stalled are late once; on-time ones follow."""
    buf = PlayoutBuffer(0, delay=0.06)
    for i in range(5):
        buf.put(pkt(i, i * 160), i * 0.02)
    drain(buf, 0.5)  # we stalled: the playout ran on with fill-in
    for i in range(5, 25):  # the backlog, all read at once
        buf.put(pkt(i, i * 160), 0.5)
    for i in range(25, 40):  # then the stream goes on in time
        buf.put(pkt(i, i * 160), i * 0.02)
    assert buf.stats["late"] > 0 and buf.stats["resync"] == 0


def run_ticks(buf: PlayoutBuffer, arrivals: list[tuple[float, RtpPacket]], until: float) -> list:
    """Put each packet at its arrival time and pull on a 20 ms clock, as the media clock does."""
    out: list = []
    arrivals = sorted(arrivals, key=lambda a: a[0])
    i, tick = 0, 0
    while (now := tick * 0.02) <= until:
        while i < len(arrivals) and arrivals[i][0] <= now:
            buf.put(arrivals[i][1], arrivals[i][0])
            i += 1
        out += buf.pull(now)
        tick += 1
    return out


@pytest.mark.parametrize("burst_order", ["in order", "reordered"])
def test_a_delay_spike_is_played_late_instead_of_dropped_and_the_delay_grows_once(burst_order):
    """Packets held up 150 ms on the path and then delivered in one burst (the carrier capture
    has one inside its TCF): their slots were filled in, but their audio is played after all,
    so a modem loses no symbol.  The delay grows once, by whole 10 ms, and stays."""
    buf = PlayoutBuffer(0, delay=0.06)
    packets = [pkt(i, i * 160, bytes([i]) * 160) for i in range(100)]
    burst = packets[40:48] if burst_order == "in order" else packets[41:48] + packets[40:41]
    arrivals = [(i * 0.02 + 0.003, p) for i, p in enumerate(packets) if not 40 <= i < 48]
    arrivals += [(0.953, p) for p in burst]  # packet 40 was due at 0.863
    out = run_ticks(buf, arrivals, 3.0)
    played = [x for x in out if isinstance(x, bytes)]
    assert b"".join(played) == b"".join(p.payload for p in packets)  # all of it, in order
    assert buf.stats["late"] == 0 and buf.stats["resync"] == 0
    assert buf.stats["slips"] == (1 if burst_order == "in order" else 2)
    assert buf.stats["slipped"] == 640  # 616 samples of fill-in played, rounded up to 10 ms
    assert buf.extra_delay == 0.08
    first, last = out.index(bytes([40]) * 160), out.index(bytes([99]) * 160)
    inserted = [x for x in out[out.index(bytes([39]) * 160):first] if isinstance(x, int)]
    assert sum(inserted) == 640  # the fill-in before the late audio: the slip
    assert not any(isinstance(x, int) for x in out[first:last])  # and none after it


def test_audio_already_played_is_never_played_again_behind_a_slip():
    """Found by the playout fuzz target: the slip rounds the playout point back to whole 10 ms, into
    audio already played (24 samples of packet 39 here).  A duplicate of packet 39 arriving after
    the slip straddled the new playout point, and its tail was played a second time where the
    slip means fill-in."""
    buf = PlayoutBuffer(0, delay=0.06)
    packets = [pkt(i, i * 160, bytes([i]) * 160) for i in range(100)]
    arrivals = [(i * 0.02 + 0.003, p) for i, p in enumerate(packets) if not 40 <= i < 48]
    arrivals += [(0.953, p) for p in packets[40:48] + [packets[39]]]  # the burst, then a duplicate
    out = run_ticks(buf, arrivals, 3.0)
    played = [x for x in out if isinstance(x, bytes)]
    assert b"".join(played) == b"".join(p.payload for p in packets)  # each packet once, in order
    assert buf.stats["slipped"] == 640
    first = out.index(bytes([40]) * 160)
    inserted = out[out.index(bytes([39]) * 160) + 1:first]
    assert all(isinstance(x, int) for x in inserted) and sum(inserted) == 640  # the slip is fill-in


def test_slips_are_bounded_per_gap_and_per_call():
    """A gap longer than MAX_SLIP is lost as before; slips stop adding delay at MAX_EXTRA_DELAY."""
    packets = [pkt(i, i * 160, bytes([i % 256]) * 160) for i in range(700)]

    def arrivals(spikes: tuple[tuple[int, int], ...]) -> list[tuple[float, RtpPacket]]:
        """Packets ``start`` to ``start + size`` held up and delivered together after the last."""
        out = []
        for i, p in enumerate(packets):
            when = i * 0.02 + 0.003
            for start, size in spikes:
                if start <= i < start + size:
                    when = (start + size) * 0.02 + 0.003
            out.append((when, p))
        return out

    one_long = PlayoutBuffer(0, delay=0.06)
    out = run_ticks(one_long, arrivals(((100, 15),)), 15.0)  # 240 ms of fill-in: more than MAX_SLIP
    # the two packets furthest behind stay lost; the rest of the burst is played
    assert (one_long.stats["late"], one_long.stats["slips"], one_long.extra_delay) == (2, 1, 0.2)
    played = b"".join(x for x in out if isinstance(x, bytes))
    assert played == b"".join(p.payload for i, p in enumerate(packets) if i not in (100, 101))

    growing = PlayoutBuffer(0, delay=0.06)
    run_ticks(growing, arrivals(((100, 8), (200, 14), (300, 20), (400, 26), (500, 8))), 15.0)
    # +100 ms, +120 ms, then the last 80 ms the bound allows (the third spike's head is lost)
    assert (growing.stats["slips"], growing.stats["slipped"]) == (3, PlayoutBuffer.MAX_EXTRA_DELAY)
    assert growing.extra_delay == 0.3
    assert growing.stats["late"] > 0  # from the fourth spike on, late audio is lost as before


def test_a_flood_of_tiny_packets_is_bounded_and_dropped_not_scanned():
    """8000 one-byte packets, one every other sample, in the 2 s window: the buffer keeps at most
    MAX_PACKETS, counts the rest, and each tick plays or fills only what is due."""
    buf = PlayoutBuffer(0, delay=0.06)
    buf.put(pkt(0, 0, b"\x01"), 0.0)
    for i in range(1, 8000):
        buf.put(pkt(i, 2 * i, b"\x02"), 0.001)
    assert buf.held == PlayoutBuffer.MAX_PACKETS
    assert buf.stats["overflow"] == 8000 - PlayoutBuffer.MAX_PACKETS and buf.stats["received"] == buf.held
    played = 0
    for tick in range(1, 60):
        out = buf.pull(0.06 + tick * 0.02)
        assert len(out) <= 161  # one tick's worth: at most a chunk and a gap per packet due
        played += sum(x if isinstance(x, int) else len(x) for x in out)
        assert buf.held <= PlayoutBuffer.MAX_PACKETS
    assert played == round(59 * 0.02 * 8000)  # the timeline is kept: nothing invented or lost
    assert buf.held == 0


def test_held_bytes_are_bounded_too():
    buf = PlayoutBuffer(0, delay=0.06)
    for i in range(200):  # overlapping 1400-byte packets, 80 samples apart
        buf.put(pkt(i, i * 80, b"\x03" * 1400), 0.0)
    assert buf.stats["overflow"] > 0
    assert buf.held_bytes == sum(len(p) for p in buf._packets.values()) <= PlayoutBuffer.MAX_BYTES
