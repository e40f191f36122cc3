"""UdptlSender and UdptlReceiver: sizing, redundancy and FEC recovery, duplicates, order, wrap."""

from __future__ import annotations

import random

import pytest

from appliance.media.udptl import UdptlPacket, UdptlReceiver, UdptlSender, decode, encode


def ifps(n: int, size: int = 6, start: int = 0) -> list[bytes]:
    """Distinct IFPs of one length: the seq in the first two bytes, then filler."""
    return [((start + i) % 65536).to_bytes(2, "big") + bytes([(start + i) % 251]) * (size - 2) for i in range(n)]


def run(datagrams: list[bytes]) -> tuple[list[tuple[int, bytes]], UdptlReceiver]:
    r = UdptlReceiver()
    out = [x for d in datagrams for x in r.receive(d)]
    return out, r


# -- sender ------------------------------------------------------------------------------------

def test_sender_numbers_packets_and_carries_older_ifps_newest_first():
    s = UdptlSender(far_max_datagram=1400, redundancy=3)
    payloads = ifps(5)
    packets = [decode(s.packet(p)) for p in payloads]
    assert [p.seq for p in packets] == [0, 1, 2, 3, 4]
    assert packets[0].secondaries == ()
    assert packets[2].secondaries == (payloads[1], payloads[0])
    assert packets[4].secondaries == (payloads[3], payloads[2], payloads[1])


@pytest.mark.parametrize("size", [10, 127, 128, 300])
def test_sender_fits_redundancy_to_the_far_limit_exactly(size):
    # 2 (seq) + primary + 1 (choice) + 1 (count) + each secondary with its length determinant
    det = 1 if size < 128 else 2
    two = 2 + (det + size) + 1 + 1 + 2 * (det + size)
    for limit, carried in ((two, 2), (two - 1, 1)):
        s = UdptlSender(far_max_datagram=limit, redundancy=3)
        for p in ifps(3, size):
            data = s.packet(p)
        assert len(decode(data).secondaries) == carried
        assert len(data) <= limit
        if carried == 2:
            assert len(data) == limit


def test_sender_never_exceeds_the_limit():
    rng = random.Random(4)
    s = UdptlSender(far_max_datagram=176, redundancy=3)
    for _ in range(2000):
        ifp = bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 6, 40, 80, 126, 127, 128, 129, 170])))
        data = s.packet(ifp)
        assert len(data) <= 176
        assert decode(data).primary == ifp


def test_oversized_primary_is_sent_alone():
    s = UdptlSender(far_max_datagram=200, redundancy=3)
    s.packet(b"\x06")
    big = b"\xc0" * 300
    p = decode(s.packet(big))
    assert p.primary == big and p.secondaries == ()
    assert decode(s.packet(b"\x06")).secondaries == ()  # the big one does not fit as a secondary either


@pytest.mark.parametrize("advertised,used", [(0, 400), (1401, 400), (65535, 400), (-5, 400), (1400, 1400), (176, 176)])
def test_far_max_datagram_out_of_range_is_taken_as_400(advertised, used):
    assert UdptlSender(far_max_datagram=advertised).far_max_datagram == used


def test_sender_refuses_empty_ifp_and_wraps_its_sequence():
    s = UdptlSender(first_seq=65535)
    with pytest.raises(ValueError, match="never empty"):
        s.packet(b"")
    assert [decode(s.packet(b"\x06")).seq for _ in range(3)] == [65535, 0, 1]


def test_fec_encoder_vector():
    """span 2, entries 2: entry m of packet s = IFP(s+m-2) ^ IFP(s+m-4), wound up from seq 0."""
    s = UdptlSender(fec=True, fec_span=2, fec_entries=2)
    data = [s.packet(bytes([1 << i])) for i in range(5)]  # IFP of seq i is the single bit 1<<i
    assert data[0] == bytes.fromhex("0000" "0101" "80" "0100" "00")  # nothing to protect yet
    assert data[1] == bytes.fromhex("0001" "0102" "80" "0100" "00")  # fewer than span IFPs
    assert data[2] == bytes.fromhex("0002" "0104" "80" "0102" "01" "0103")  # 1^2, one entry
    assert data[3] == bytes.fromhex("0003" "0108" "80" "0102" "01" "0106")  # 2^4
    # full layout: entry 0 = seq 2 ^ seq 0 = 4^1, entry 1 = seq 3 ^ seq 1 = 8^2
    assert data[4] == bytes.fromhex("0004" "0110" "80" "0102" "02" "0105" "010a")


def test_fec_parity_is_as_long_as_the_longest_ifp():
    s = UdptlSender(fec=True, fec_span=2, fec_entries=1)
    for p in (b"\x01", b"\x02\x02\x02"):
        s.packet(p)
    assert decode(s.packet(b"\x04")).fec_entries == (b"\x03\x02\x02",)


# -- redundancy recovery -----------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2, 3])
def test_burst_as_deep_as_the_redundancy_is_recovered(depth):
    payloads = ifps(40)
    s = UdptlSender(far_max_datagram=1400, redundancy=depth)
    datagrams = [s.packet(p) for p in payloads]
    dropped = set(range(10, 10 + depth)) | set(range(25, 25 + depth))
    out, r = run([d for i, d in enumerate(datagrams) if i not in dropped])
    assert out == list(enumerate(payloads))
    assert r.stats["recovered_redundancy"] == 2 * depth and r.stats["lost"] == 0


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_burst_one_longer_than_the_redundancy_loses_the_oldest(depth):
    payloads = ifps(20)
    s = UdptlSender(far_max_datagram=1400, redundancy=depth)
    datagrams = [s.packet(p) for p in payloads]
    out, r = run([d for i, d in enumerate(datagrams) if not 10 <= i <= 10 + depth])
    assert out == [(i, p) for i, p in enumerate(payloads) if i != 10]
    assert r.stats["lost"] == 1 and r.stats["recovered_redundancy"] == depth


def test_zero_length_secondaries_recover_nothing():
    data = [encode(UdptlPacket(0, b"\x00")),
            encode(UdptlPacket(3, b"\x03", (b"", b"\x01")))]  # seq 2 offered as empty: skipped
    out, r = run(data)
    assert out == [(0, b"\x00"), (1, b"\x01"), (3, b"\x03")]
    assert r.stats["lost"] == 1 and r.stats["recovered_redundancy"] == 1


def test_first_packet_delivers_its_secondaries_first():
    payloads = ifps(4)
    s = UdptlSender(far_max_datagram=1400, redundancy=2)
    datagrams = [s.packet(p) for p in payloads]
    out, r = run(datagrams[2:])  # seq 0 and 1 never arrived, but packet 2 carries them
    assert out == list(enumerate(payloads))
    assert r.stats["lost"] == 0


# -- FEC recovery ------------------------------------------------------------------------------

def fec_stream(n: int, span: int, entries: int, size: int = 6) -> tuple[list[bytes], list[bytes]]:
    s = UdptlSender(fec=True, fec_span=span, fec_entries=entries)
    payloads = ifps(n, size)
    return payloads, [s.packet(p) for p in payloads]


@pytest.mark.parametrize("span,entries", [(1, 1), (3, 1), (2, 2), (3, 3), (4, 2)])
def test_fec_recovers_a_burst_as_long_as_its_entries(span, entries):
    payloads, datagrams = fec_stream(60, span, entries)
    dropped = set(range(20, 20 + entries)) | set(range(40, 40 + entries))
    out, r = run([d for i, d in enumerate(datagrams) if i not in dropped])
    assert out == list(enumerate(payloads))
    assert r.stats["recovered_fec"] == 2 * entries and r.stats["lost"] == 0


def test_fec_cannot_solve_two_unknowns_in_one_group():
    payloads, datagrams = fec_stream(30, 3, 1)  # seqs 18 and 19 are in the same group of packet 20
    out, r = run([d for i, d in enumerate(datagrams) if i not in (18, 19)])
    assert [s for s, _ in out] == [i for i in range(30) if i not in (18, 19)]
    assert r.stats["lost"] == 2 and r.stats["recovered_fec"] == 0


def test_fec_recovers_the_first_ifps_during_wind_up():
    payloads, datagrams = fec_stream(10, 2, 1)
    out, r = run([datagrams[0], *datagrams[2:]])  # seq 1: in packet 2's group {0, 1}
    assert out == list(enumerate(payloads))
    assert r.stats["recovered_fec"] == 1


def test_fec_rebuilt_ifp_is_zero_padded_to_its_group():
    s = UdptlSender(fec=True, fec_span=2, fec_entries=1)
    payloads = [b"\x00", b"\x01\x02\x03", b"\x06", b"\x07\x07", b"\x08"]
    datagrams = [s.packet(p) for p in payloads]
    out, r = run([d for i, d in enumerate(datagrams) if i != 3])
    # seq 3 (2 bytes) is the longest of packet 4's group {2, 3}: rebuilt exactly
    assert dict(out)[3] == b"\x07\x07"
    s = UdptlSender(fec=True, fec_span=2, fec_entries=1)
    datagrams = [s.packet(p) for p in payloads]
    out, r = run([d for i, d in enumerate(datagrams) if i != 2])
    # seq 2 (1 byte) shared packet 3's parity with seq 1 (3 bytes): the wire has no length for
    # a rebuilt IFP, so it comes back padded with zeros to its group's longest
    assert dict(out)[2] == b"\x06\x00\x00"
    assert r.stats["recovered_fec"] == 1


def test_fec_group_with_a_longer_known_ifp_is_not_trusted():
    # parity shorter than a member it claims to cover: corrupt, so seq 1 stays lost
    data = [encode(UdptlPacket(0, b"\x01\x01\x01")),
            encode(UdptlPacket(2, b"\x02", fec_span=2, fec_entries=(b"\x05",)))]
    out, r = run(data)
    assert [s for s, _ in out] == [0, 2]
    assert r.stats["lost"] == 1 and r.stats["recovered_fec"] == 0


# -- order, duplicates, wrap, restarts, junk ---------------------------------------------------

def test_duplicates_are_delivered_once():
    s = UdptlSender(far_max_datagram=1400, redundancy=1)
    payloads = ifps(5)
    d = [s.packet(p) for p in payloads]
    out, r = run([d[0], d[1], d[1], d[2], d[1], d[3], d[3], d[4], d[0]])
    assert out == list(enumerate(payloads))
    assert r.stats["duplicates"] == 4 and r.stats["delivered"] == 5 and r.stats["received"] == 9


def test_repeated_indicator_with_the_same_seq_is_delivered_once():
    # the HT801 sends its v21-preamble indicator three times as seq 2
    data = [encode(UdptlPacket(1, b"\x00")), *[encode(UdptlPacket(2, b"\x06", (b"\x00",)))] * 3,
            encode(UdptlPacket(3, b"\xc0\x01\x80\x00\x00\xff", (b"\x06",)))]
    out, r = run(data)
    assert out == [(1, b"\x00"), (2, b"\x06"), (3, b"\xc0\x01\x80\x00\x00\xff")]
    assert r.stats["duplicates"] == 2


def test_reordered_packet_is_recovered_from_the_later_ones_redundancy():
    s = UdptlSender(far_max_datagram=1400, redundancy=1)
    payloads = ifps(8)
    d = [s.packet(p) for p in payloads]
    out, r = run([d[0], d[1], d[2], d[3], d[5], d[4], d[7], d[6]])
    assert out == list(enumerate(payloads))
    assert r.stats["recovered_redundancy"] == 2 and r.stats["duplicates"] == 2 and r.stats["lost"] == 0


def test_reordered_packet_without_redundancy_is_late_not_delivered_out_of_order():
    s = UdptlSender(redundancy=0)
    payloads = ifps(4)
    d = [s.packet(p) for p in payloads]
    out, r = run([d[0], d[2], d[1], d[3]])
    assert [seq for seq, _ in out] == [0, 2, 3]
    assert r.stats["lost"] == 1 and r.stats["late"] == 1 and r.stats["duplicates"] == 0


@pytest.mark.parametrize("fec", [False, True])
def test_sequence_wraps_at_65535(fec):
    s = UdptlSender(far_max_datagram=1400, redundancy=1, fec=fec, fec_span=2, fec_entries=1, first_seq=65530)
    payloads = ifps(12, start=65530)
    d = [s.packet(p) for p in payloads]
    # lose seq 0 (index 6); a late copy of 65535 after the wrap is a duplicate, not a restart
    out, r = run([x for i, x in enumerate(d) if i != 6] + [d[5]])
    assert out == [((65530 + i) % 65536, p) for i, p in enumerate(payloads)]
    assert r.stats["lost"] == 0 and r.stats["duplicates"] == 1 and r.stats["resyncs"] == 0
    assert r.stats["recovered_fec" if fec else "recovered_redundancy"] == 1


def test_big_jump_forward_resyncs_without_counting_losses():
    data = [encode(UdptlPacket(i, b"\x06")) for i in range(3)]
    data += [encode(UdptlPacket(40000 + i, b"\x07")) for i in range(2)]
    out, r = run(data)
    assert [s for s, _ in out] == [0, 1, 2, 40000, 40001]
    assert r.stats["resyncs"] == 1 and r.stats["lost"] == 0


def test_gap_within_the_limit_counts_losses():
    data = [encode(UdptlPacket(0, b"\x06")), encode(UdptlPacket(UdptlReceiver.MAX_GAP + 1, b"\x07"))]
    out, r = run(data)
    assert [s for s, _ in out] == [0, UdptlReceiver.MAX_GAP + 1]
    assert r.stats["resyncs"] == 0 and r.stats["lost"] == UdptlReceiver.MAX_GAP


def test_peer_restarting_from_zero_resyncs():
    data = [encode(UdptlPacket(i, b"\x06")) for i in range(1000, 1003)]
    data += [encode(UdptlPacket(i, b"\x07")) for i in range(3)]
    out, r = run(data)
    assert [s for s, _ in out] == [1000, 1001, 1002, 0, 1, 2]
    assert r.stats["resyncs"] == 1 and r.stats["duplicates"] == 0


def test_malformed_datagram_is_counted_and_does_not_disturb_the_stream():
    s = UdptlSender(far_max_datagram=1400, redundancy=1)
    payloads = ifps(4)
    d = [s.packet(p) for p in payloads]
    out, r = run([d[0], b"\x00\x01\x05", d[1], b"", d[2][:-1], d[3]])
    assert out == list(enumerate(payloads))
    assert r.stats["rejected"] == 3 and r.stats["received"] == 6 and r.stats["recovered_redundancy"] == 1
