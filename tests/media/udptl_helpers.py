"""Test helpers for UDPTL: a tiny classic-pcap reader and the recorded HT801 call."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from tests.provided import require

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
HT801_PCAP = FIXTURES / "pcaps" / "grandstream-ht801-t38-ecm.pcap"

_LINKTYPE_ETHERNET = 1
_LINKTYPE_LINUX_SLL = 113
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_VLAN = 0x8100


@dataclass(frozen=True)
class UdpDatagram:
    time: float  # seconds since the epoch, from the capture
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def read_pcap_udp(path: Path) -> list[UdpDatagram]:
    """Every unfragmented IPv4 UDP datagram of a classic pcap (Ethernet or Linux cooked)."""
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"not a classic pcap (magic {magic.hex()})")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    out: list[UdpDatagram] = []
    pos = 24
    while pos + record.size <= len(data):
        sec, frac, caplen, _origlen = record.unpack_from(data, pos)
        pos += record.size
        frame = data[pos:pos + caplen]
        pos += caplen
        when = sec + frac / (1e9 if nano else 1e6)
        if linktype == _LINKTYPE_ETHERNET:
            ethertype, off = struct.unpack_from("!H", frame, 12)[0], 14
            while ethertype == _ETHERTYPE_VLAN and len(frame) >= off + 4:
                ethertype, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
        elif linktype == _LINKTYPE_LINUX_SLL:
            ethertype, off = struct.unpack_from("!H", frame, 14)[0], 16
        else:
            raise ValueError(f"link type {linktype} not supported")
        if ethertype != _ETHERTYPE_IPV4 or len(frame) < off + 20:
            continue
        ver_ihl, total_len, frag, proto = frame[off], *struct.unpack_from("!H2xHxB", frame, off + 2)
        if ver_ihl >> 4 != 4 or proto != 17 or frag & 0x3FFF:  # not IPv4 UDP, or a fragment
            continue
        ip = frame[off:off + total_len]
        ihl = (ver_ihl & 0x0F) * 4
        src_ip = ".".join(map(str, ip[12:16]))
        dst_ip = ".".join(map(str, ip[16:20]))
        sport, dport, ulen = struct.unpack_from("!HHH", ip, ihl)
        payload = ip[ihl + 8:ihl + ulen]
        out.append(UdpDatagram(when, (src_ip, sport), (dst_ip, dport), bytes(payload)))
    return out


def ht801_udptl() -> list[UdpDatagram]:
    """The HT801's UDPTL stream (5004 -> 4545), or skip when the fixture is not checked out."""
    require(HT801_PCAP.exists(), f"recorded call not available: {HT801_PCAP} (../shared beside the checkout)")
    return [d for d in read_pcap_udp(HT801_PCAP) if d.src[1] == 5004 and d.dst[1] == 4545]


def play_into_terminal(stream: list[UdpDatagram], rx_file: Path):  # type: ignore[no-untyped-def]
    """A recorded sender's UDPTL into an answering T38FaxTerminal on the capture's own clock (no
    network), then up to 10 s more for the end of the call; the terminal, still open: the caller
    reads its result or trace, then closes it."""
    from appliance.media.udptl import UdptlReceiver
    from appliance.spandsp.t38 import T38FaxTerminal

    term = T38FaxTerminal(calling=False, rx_file=rx_file)
    receiver = UdptlReceiver()
    start, clock = stream[0].time, 0
    for d in stream:
        due = round((d.time - start) * 8000)
        if due > clock:
            term.advance(due - clock)
            clock = due
        for seq, ifp in receiver.receive(d.payload):
            term.receive_ifp(seq, ifp)
    for _ in range(500):
        if term.finished is not None:
            break
        term.advance(160)
    return term
