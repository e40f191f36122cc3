"""UDPTL datagrams byte by byte: vectors, a hostile corpus, and a bounded fuzz run."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.media.udptl import (MAX_DATAGRAM, MAX_SECONDARIES, UdptlError, UdptlPacket, UdptlReceiver,
                                   decode, encode)

# the reference's example, seq 3 of the HT801 capture: V.21 hdlc-data ff, the 06 indicator twice
HT801_SEQ3 = bytes.fromhex("0003" "06c001800000ff" "00" "02" "0106" "0106")


def test_ht801_example_decodes_and_reencodes_byte_exact():
    p = decode(HT801_SEQ3)
    assert p == UdptlPacket(3, bytes.fromhex("c001800000ff"), (b"\x06", b"\x06"))
    assert not p.fec
    assert encode(p) == HT801_SEQ3


@pytest.mark.parametrize("n,determinant", [
    (1, "01"), (127, "7f"), (128, "8080"), (255, "80ff"), (1000, "83e8"), (16383, "bfff"),
])
def test_length_determinant_boundaries(n, determinant):
    ifp = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    data = encode(UdptlPacket(0x1234, ifp))
    assert data == bytes.fromhex("1234" + determinant) + ifp + b"\x00\x00"
    if len(data) <= MAX_DATAGRAM:
        assert decode(data) == UdptlPacket(0x1234, ifp)


def test_secondary_with_two_byte_length_round_trips():
    old = b"\xaa" * 200
    data = bytes.fromhex("fffe" "0106" "00" "02" "80c8") + old + bytes.fromhex("0107")
    p = decode(data)
    assert p.seq == 65534 and p.secondaries == (old, b"\x07")
    assert encode(p) == data


def test_16384_bytes_would_need_fragmentation():
    with pytest.raises(ValueError, match="fragmented"):
        encode(UdptlPacket(0, b"x" * 16384))


def test_non_minimal_two_byte_length_is_accepted_and_reencoded_minimal():
    # aligned PER wants the short form; a peer that pads it is still understood
    p = decode(bytes.fromhex("0009" "8001" "06" "00" "00"))
    assert p.primary == b"\x06"
    assert encode(p) == bytes.fromhex("0009" "01" "06" "00" "00")


def test_fec_packet_vector():
    data = bytes.fromhex("0007" "02c001" "80" "0103" "02" "02aabb" "01cc")
    p = decode(data)
    assert p == UdptlPacket(7, b"\xc0\x01", fec_span=3, fec_entries=(b"\xaa\xbb", b"\xcc"))
    assert p.fec and p.secondaries == ()
    assert encode(p) == data


def test_fec_packet_without_entries_keeps_its_mode():
    # what Asterisk sends while its FEC winds up: span 0, no entries, still the FEC choice
    data = bytes.fromhex("0000" "0106" "80" "0100" "00")
    p = decode(data)
    assert p.fec and p.fec_span == 0 and p.fec_entries == ()
    assert encode(p) == data
    assert encode(UdptlPacket(0, b"\x06")) == bytes.fromhex("0000010600" "00")


def test_zero_length_secondaries_are_accepted():
    # AST-2016-003: Asterisk crashed on these; they are legal PER and must just be skipped later
    data = bytes.fromhex("0005" "0106" "00" "03" "00" "0106" "00")
    p = decode(data)
    assert p.secondaries == (b"", b"\x06", b"")
    assert encode(p) == data


def test_fifteen_secondaries_are_the_limit():
    data = bytes.fromhex("0020" "0106" "00") + bytes([MAX_SECONDARIES]) + b"\x01\x06" * MAX_SECONDARIES
    assert len(decode(data).secondaries) == MAX_SECONDARIES


def test_packet_cannot_mix_redundancy_and_fec():
    with pytest.raises(ValueError, match="either secondaries or FEC"):
        UdptlPacket(1, b"\x06", (b"\x06",), fec_span=1, fec_entries=(b"\x06",))


@pytest.mark.parametrize("packet,why", [
    (UdptlPacket(65536, b"\x06"), "outside 0..65535"),
    (UdptlPacket(-1, b"\x06"), "outside 0..65535"),
    (UdptlPacket(1, b""), "primary IFP is empty"),
    (UdptlPacket(1, b"\x06", (b"\x06",) * 16), "more than 15"),
    (UdptlPacket(1, b"\x06", fec_span=16, fec_entries=(b"\x01",)), "out of range"),
])
def test_encode_refuses_what_cannot_be_sent(packet, why):
    with pytest.raises(ValueError, match=why):
        encode(packet)


OK = "0001" "0106"  # seq 1, primary 06: a valid start for the error-recovery cases

HOSTILE = [
    ("", "ends before the sequence number"),
    ("00", "ends before the sequence number"),
    ("0001", "ends before the length of the primary IFP"),
    ("000105" "06", "primary IFP of 5 bytes runs past the end"),
    ("00018500" + "06" * 10, "primary IFP of 1280 bytes runs past the end"),
    ("000181", "ends before the second length octet of the primary IFP"),
    ("0001c1" + "06" * 20, "fragmented length (0xc1) for the primary IFP"),
    ("0001" "00" "00" "00", "primary IFP is empty"),
    (OK, "ends before the error-recovery choice"),
    (OK + "40" "00", "error-recovery choice 0x40 is neither"),
    (OK + "ff", "error-recovery choice 0xff is neither"),
    (OK + "00", "ends before the length of the secondary IFP count"),
    (OK + "00" "10" + "0106" * 16, "16 secondary IFPs exceed the limit of 15"),
    (OK + "00" "7f" + "0106" * 127, "127 secondary IFPs exceed the limit of 15"),
    (OK + "00" "8100", "256 secondary IFPs exceed the limit of 15"),
    (OK + "00" "c0", "fragmented length (0xc0) for the secondary IFP count"),
    (OK + "00" "02" "0106", "ends before the length of the secondary IFP 1"),
    (OK + "00" "01" "05" "06", "secondary IFP 0 of 5 bytes runs past the end"),
    (OK + "00" "01" "ffff", "fragmented length (0xff) for the secondary IFP 0"),
    (OK + "00" "01" "8100" + "06" * 8, "secondary IFP 0 of 256 bytes runs past the end"),
    (OK + "00" "00" "00", "1 trailing byte(s) after the packet"),
    (OK + "00" "01" "0106" "0106", "2 trailing byte(s) after the packet"),
    (OK + "80", "ends before the length of the FEC span"),
    (OK + "80" "00" "00", "FEC span encoded in 0 octets"),
    (OK + "80" "03" "000001" "00", "FEC span encoded in 3 octets"),
    (OK + "80" "01", "FEC span of 1 bytes runs past the end"),
    (OK + "80" "01ff" "00", "FEC span -1 is outside 0..15"),
    (OK + "80" "0110" "00", "FEC span 16 is outside 0..15"),
    (OK + "80" "020100" "00", "FEC span 256 is outside 0..15"),
    (OK + "80" "0103", "ends before the length of the FEC entry count"),
    (OK + "80" "0103" "10" + "01aa" * 16, "16 FEC entries exceed the limit of 15"),
    (OK + "80" "0103" "02" "01aa", "ends before the length of the FEC entry 1"),
    (OK + "80" "0103" "01" "05aa", "FEC entry 0 of 5 bytes runs past the end"),
    (OK + "80" "0103" "01" "01aa" "00", "1 trailing byte(s) after the packet"),
    ("0001" "8575" + "06" * 1397, "datagram of 1401 bytes exceeds 1400"),
]


@pytest.mark.parametrize("hexdata,why", HOSTILE, ids=[w for _, w in HOSTILE])
def test_hostile_datagrams_are_rejected_with_the_reason(hexdata, why):
    data = bytes.fromhex(hexdata)
    with pytest.raises(UdptlError) as info:
        decode(data)
    assert why in str(info.value)
    r = UdptlReceiver()
    assert r.receive(data) == []
    assert r.stats["rejected"] == 1 and r.stats["received"] == 1 and r.stats["delivered"] == 0


def test_1400_byte_datagram_is_accepted():
    data = bytes.fromhex("0001" "8572") + b"\x06" * 1394 + b"\x00\x00"
    assert len(data) == MAX_DATAGRAM
    assert len(decode(data).primary) == 1394


# -- fuzz --------------------------------------------------------------------------------------

ifps = st.binary(min_size=1, max_size=150)


@st.composite
def packets(draw) -> UdptlPacket:
    seq = draw(st.integers(0, 65535))
    primary = draw(ifps)
    if draw(st.booleans()):
        return UdptlPacket(seq, primary, tuple(draw(st.lists(st.binary(max_size=150), max_size=4))))
    return UdptlPacket(seq, primary, fec_span=draw(st.integers(0, 15)),
                       fec_entries=tuple(draw(st.lists(ifps, max_size=4))), fec=True)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(encode(draw(packets())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            data[pos] = draw(st.sampled_from([0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xff]))
    return bytes(data)


FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(packets())
def test_valid_packets_round_trip(p):
    assert decode(encode(p)) == p


@FUZZ
@given(st.one_of(st.binary(max_size=64), st.binary(min_size=1390, max_size=1410), mutated()))
def test_decode_returns_a_packet_or_raises_udptl_error(data):
    try:
        p = decode(data)
    except UdptlError:
        return
    # whatever decodes, re-encodes to something that decodes the same
    assert decode(encode(p)) == p


@FUZZ
@given(st.lists(st.one_of(mutated(), st.builds(encode, packets()), st.binary(max_size=40)), max_size=30))
def test_receiver_never_raises_and_never_repeats_itself(datagrams):
    r = UdptlReceiver()
    for data in datagrams:
        before = r.stats["resyncs"]
        out = r.receive(data)
        for seq, ifp in out:
            assert 0 <= seq <= 65535 and isinstance(ifp, bytes) and ifp
        seqs = [s for s, _ in out]
        assert len(set(seqs)) == len(seqs)
        if r.stats["resyncs"] == before and out:
            assert all(0 < (b - a) % 65536 < 32768 for a, b in zip(seqs, seqs[1:]))
    assert r.stats["received"] == len(datagrams)
    assert r.stats["rejected"] <= len(datagrams)
