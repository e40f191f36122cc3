"""The recorded HT801 call (see shared/fixtures/pcaps/README.md) through the UDPTL code."""

from __future__ import annotations

import collections
import random
import struct
import sys
from pathlib import Path

import pytest

# the helper module beside this file imports by name under any --import-mode
sys.path.insert(0, str(Path(__file__).parent))

from udptl_helpers import UdpDatagram, ht801_udptl, read_pcap_udp  # noqa: E402

from appliance.media.udptl import UdptlReceiver, UdptlSender, decode, encode  # noqa: E402

SEQS = 1801  # seq 0..1800
REPEATED = [2, 1604, 1658, 1784, 1796]  # the v21-preamble indicator, sent three times each


@pytest.fixture(scope="module")
def stream() -> list[UdpDatagram]:
    return ht801_udptl()


@pytest.fixture(scope="module")
def truth(stream) -> dict[int, bytes]:
    """Every IFP by seq, from the primaries of the complete capture."""
    return {p.seq: p.primary for p in map(decode, (d.payload for d in stream))}


def _ipv4_udp(payload: bytes, sport: int, dport: int, *, proto: int = 17, frag: int = 0) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, frag, 64, proto, 0,
                       bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])) + udp


def _pcap(frames: list[bytes], linktype: int, endian: str = "<", nano: bool = False) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, f in enumerate(frames):
        out += struct.pack(endian + "IIII", 100 + i, 500, len(f), len(f)) + f
    return out


def test_pcap_reader_handles_ethernet_vlan_and_linux_cooked(tmp_path):
    eth = b"\x00" * 12 + b"\x08\x00"
    vlan = b"\x00" * 12 + b"\x81\x00\x00\x05\x08\x00"
    sll = b"\x00" * 14 + b"\x08\x00"
    frames = [eth + _ipv4_udp(b"one", 5004, 4545), vlan + _ipv4_udp(b"two", 5004, 4545),
              eth + _ipv4_udp(b"tcp", 5004, 4545, proto=6), eth + _ipv4_udp(b"frag", 1, 2, frag=0x2000),
              b"\x00" * 12 + b"\x86\xdd" + b"\x00" * 40]
    path = tmp_path / "eth.pcap"
    path.write_bytes(_pcap(frames, 1))
    got = read_pcap_udp(path)
    assert [(d.payload, d.src, d.dst) for d in got] == [
        (b"one", ("10.0.0.1", 5004), ("10.0.0.2", 4545)), (b"two", ("10.0.0.1", 5004), ("10.0.0.2", 4545))]
    assert got[0].time == pytest.approx(100.0005)
    path.write_bytes(_pcap([sll + _ipv4_udp(b"cooked", 7, 8)], 113, endian=">", nano=True))
    [d] = read_pcap_udp(path)
    assert (d.payload, d.src[1], d.dst[1], d.time) == (b"cooked", 7, 8, pytest.approx(100.0000005))
    path.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x00" * 40)  # pcapng is not read
    with pytest.raises(ValueError, match="not a classic pcap"):
        read_pcap_udp(path)


def test_capture_has_the_stream_the_readme_describes(stream):
    assert len(stream) == 1811
    assert {d.src[0] for d in stream} == {stream[0].src[0]}  # one sender
    packets = [decode(d.payload) for d in stream]
    assert sorted({p.seq for p in packets}) == list(range(SEQS))
    assert collections.Counter(len(p.secondaries) for p in packets) == {1: 1740, 2: 70, 0: 1}
    assert not any(p.fec for p in packets)
    assert sorted(s for s, n in collections.Counter(p.seq for p in packets).items() if n > 1) == REPEATED


def test_every_datagram_reencodes_byte_exact(stream):
    for d in stream:
        assert encode(decode(d.payload)) == d.payload
    assert bytes.fromhex("0003" "06c001800000ff" "0002" "0106" "0106") in {d.payload for d in stream}


def test_receiver_delivers_every_ifp_once_in_order(stream, truth):
    r = UdptlReceiver()
    out = [x for d in stream for x in r.receive(d.payload)]
    assert [s for s, _ in out] == list(range(SEQS))
    assert dict(out) == truth
    assert [ifp for s, ifp in out if s in REPEATED] == [b"\x06"] * len(REPEATED)
    assert r.stats["duplicates"] == 2 * len(REPEATED)  # the repeated indicators
    assert (r.stats["received"], r.stats["delivered"], r.stats["lost"], r.stats["rejected"]) == (1811, SEQS, 0, 0)


def drop(stream: list[UdpDatagram], rate: float, seed: int, *, isolated: bool) -> list[UdpDatagram]:
    """Drop ``rate`` of the datagrams at random; ``isolated``: never two in a row."""
    rng = random.Random(seed)
    kept, previous_dropped = [], False
    for d in stream:
        if rng.random() < rate and not (isolated and previous_dropped):
            previous_dropped = True
        else:
            previous_dropped = False
            kept.append(d)
    return kept


def test_five_percent_isolated_loss_is_fully_repaired_by_redundancy(stream, truth):
    # the HT801 carries one secondary on most packets: any loss not adjacent to another is covered
    kept = drop(stream, 0.05, seed=801, isolated=True)
    assert 0.04 < 1 - len(kept) / len(stream) < 0.06
    r = UdptlReceiver()
    out = [x for d in kept for x in r.receive(d.payload)]
    assert [s for s, _ in out] == list(range(SEQS))
    assert dict(out) == truth
    assert r.stats["lost"] == 0 and r.stats["recovered_redundancy"] >= 60


def recoverable(kept: list[UdpDatagram]) -> set[int]:
    """The seqs a no-wait receiver can deliver: each datagram covers its seq and its secondaries
    from the delivery point on (an oracle written independently of UdptlReceiver)."""
    got: set[int] = set()
    next_seq = None
    for p in map(decode, (d.payload for d in kept)):
        if next_seq is not None and p.seq < next_seq:
            continue
        covered = {p.seq} | {p.seq - 1 - i for i, ifp in enumerate(p.secondaries) if ifp}
        got |= {s for s in covered if next_seq is None or s >= next_seq}
        next_seq = p.seq + 1
    return got


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_five_percent_random_loss_loses_only_what_no_surviving_datagram_carries(stream, truth, seed):
    kept = drop(stream, 0.05, seed=seed, isolated=False)
    r = UdptlReceiver()
    out = [x for d in kept for x in r.receive(d.payload)]
    expected = recoverable(kept)
    assert [s for s, _ in out] == sorted(expected)
    assert r.stats["lost"] == SEQS - len(expected)
    # with depth-1 redundancy only two losses in a row lose an IFP: a handful out of 1801
    assert SEQS - len(expected) < 15
    for s, ifp in out:
        # the HT801 fills its redundancy from what it last *sent*: after the repeated indicator
        # the copies carry 06 where seq-1 was 00 (no-signal); both are indicators, harmless
        assert ifp == truth[s] or (ifp, truth[s], s + 1 in REPEATED) == (b"\x06", b"\x00", True)


def test_ht801_redundancy_follows_transmissions_not_sequence_numbers(stream, truth):
    # documents a peer quirk: lose seq 1 and the first copy of seq 2, and the second copy's
    # "seq 1" secondary is the indicator it repeated, not the no-signal seq 1 really was
    kept = [d for i, d in enumerate(stream) if i not in (1, 2)]
    out = dict(x for r in [UdptlReceiver()] for d in kept for x in r.receive(d.payload))
    assert truth[1] == b"\x00" and out[1] == b"\x06"


def test_ifps_reframed_with_fec_survive_a_burst_every_second(stream, truth):
    # the same IFPs through our own FEC sender (span 3, 3 interleaved entries): bursts of 3 repaired
    s = UdptlSender(fec=True, fec_span=3, fec_entries=3)
    datagrams = [s.packet(truth[i]) for i in range(SEQS)]
    kept = [d for i, d in enumerate(datagrams) if not (20 <= i < SEQS - 10 and i % 50 in (0, 1, 2))]
    r = UdptlReceiver()
    out = [x for d in kept for x in r.receive(d)]
    assert [s for s, _ in out] == list(range(SEQS))
    assert r.stats["recovered_fec"] == len(datagrams) - len(kept) and r.stats["lost"] == 0
    # a rebuilt IFP is zero-padded to the longest of its group; otherwise identical
    for s, ifp in out:
        assert ifp.rstrip(b"\x00") == truth[s].rstrip(b"\x00") and len(ifp) >= len(truth[s])


def decode_fax(tmp_path: Path, deliveries: list[tuple[float, list[tuple[int, bytes]]]]):
    """Play (arrival time, IFPs) into an answering T.38 terminal on the capture's clock."""
    from appliance.spandsp import t38  # built by make venv: failing to import is a bug, not a reason to skip

    term = t38.T38FaxTerminal(calling=False, rx_file=tmp_path / "rx.tif")
    start, clock = deliveries[0][0], 0
    for when, ifps in deliveries:
        due = round((when - start) * 8000)
        if due > clock:
            term.advance(due - clock)
            clock = due
        for seq, ifp in ifps:
            term.receive_ifp(seq, ifp)
    for _ in range(50 * 10):  # up to 10 s more for the last timers
        if term.finished is not None:
            break
        term.advance(160)
    events = list(term.events)
    term.close()
    return term.finished, [e for e in events if type(e).__name__ == "PageDone"]


def assert_one_clean_page(finished, pages, tmp_path: Path):
    assert finished is not None and finished.ok, finished
    assert len(pages) == 1
    page = pages[0].stats
    assert (page.width, page.length, page.x_dpi, page.y_dpi) == (1728, 2118, 204, 196)
    assert page.ecm and page.bad_rows == 0
    from appliance.fax.pages import read_pages
    images = read_pages(tmp_path / "rx.tif")
    assert [im.size for im in images] == [(1728, 2118)]


def test_recorded_call_decodes_to_one_page(stream, tmp_path):
    r = UdptlReceiver()
    finished, pages = decode_fax(tmp_path, [(d.time, r.receive(d.payload)) for d in stream])
    assert_one_clean_page(finished, pages, tmp_path)


def test_recorded_call_decodes_through_fec_with_padded_rebuilt_ifps(stream, truth, tmp_path):
    # spandsp's IFP decoder must tolerate the zero padding FEC repair leaves on rebuilt IFPs;
    # one datagram per captured one, on its timestamp (so a repeated indicator gets three seqs)
    s = UdptlSender(fec=True, fec_span=3, fec_entries=3)
    datagrams = [s.packet(truth[p.seq]) for p in map(decode, (d.payload for d in stream))]
    r = UdptlReceiver()
    deliveries = [(d.time, r.receive(x)) for i, (d, x) in enumerate(zip(stream, datagrams))
                  if not (20 <= i < len(stream) - 10 and i % 40 in (0, 1))]
    assert r.stats["recovered_fec"] > 50 and r.stats["lost"] == 0
    finished, pages = decode_fax(tmp_path, deliveries)
    assert_one_clean_page(finished, pages, tmp_path)
