"""One call's RTP or UDPTL as a pcap file Wireshark opens: what a support engineer asks for first.

Sans-I/O.  The media channel hands each datagram it receives from the peer or sends to it to
``received`` or ``sent``; ``pcap()`` is a classic libpcap file (microsecond timestamps, LINKTYPE_ETHERNET) whose
frames carry an IPv4 or IPv6 and a UDP header with the call's real addresses and ports, so
Wireshark's "Decode As" RTP or UDPTL (or its RTP/T.38 heuristics) reads the call as it was.  The
Ethernet addresses are made up (locally administered); the IPv4 header checksum is right, the
IPv4 UDP checksum is 0 ("none", which UDP over IPv4 allows).

Bounded: frames stop being kept once the file would pass ``max_bytes`` (they are counted in
``dropped``), so a long G.711 call costs at most that much memory and disk.  Only calls from peers
the owner switched capture on for get one; for every other call the channel holds None and pays
one attribute test per packet.  ``received``/``sent`` take the datagram, the peer's address and the
wall-clock time.
"""

from __future__ import annotations

import ipaddress
import struct

#: a call's capture stops growing here: about 5 minutes of G.711 both ways, hours of T.38
CAPTURE_MAX_BYTES = 8 * 1024 * 1024

_GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
_RECORD = struct.Struct("<IIII")
#: the made-up Ethernet addresses of the appliance and of the peer (locally administered)
OUR_MAC, PEER_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
_OURS, _THEIRS = OUR_MAC, PEER_MAC
_IPV4, _IPV6 = b"\x08\x00", b"\x86\xdd"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class MediaCapture:
    """The datagrams of one call, kept as pcap records from the first one on."""

    def __init__(self, local: tuple[str, int], max_bytes: int = CAPTURE_MAX_BYTES) -> None:
        self.local = local
        self.max_bytes = max_bytes
        self.packets = 0
        self.dropped = 0
        self._buf = bytearray(_GLOBAL_HEADER)
        self._ip_id = 0
        self._addrs: dict[str, bytes] = {}

    def _packed(self, host: str) -> bytes:
        packed = self._addrs.get(host)
        if packed is None:
            packed = self._addrs[host] = ipaddress.ip_address(host.split("%")[0]).packed
        return packed

    def received(self, data: bytes, remote: tuple[str, int], when: float) -> None:
        """A datagram from the peer, at wall-clock time ``when``."""
        self._add(data, remote, self.local, when, outgoing=False)

    def sent(self, data: bytes, remote: tuple[str, int], when: float) -> None:
        """A datagram we sent to the peer."""
        self._add(data, self.local, remote, when, outgoing=True)

    def _add(self, data: bytes, src: tuple[str, int], dst: tuple[str, int], when: float, *, outgoing: bool) -> None:
        size = 16 + 14 + 40 + 8 + len(data)
        if len(self._buf) + size > self.max_bytes:
            self.dropped += 1
            return
        try:
            s, d = self._packed(src[0]), self._packed(dst[0])
        except ValueError:  # not an address (cannot happen for a bound socket): not worth a crash
            self.dropped += 1
            return
        udp_len = 8 + len(data)
        if len(s) == 4 and len(d) == 4:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, self._ip_id, 0x4000, 64, 17, 0, s, d)
            ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
            udp = struct.pack("!HHHH", src[1], dst[1], udp_len, 0)
            ether = _IPV4
        elif len(s) == 16 and len(d) == 16:
            ip = struct.pack("!IHBB16s16s", 6 << 28, udp_len, 17, 64, s, d)
            pseudo = s + d + struct.pack("!IxxxB", udp_len, 17)
            csum = _checksum(pseudo + struct.pack("!HHHH", src[1], dst[1], udp_len, 0) + data) or 0xFFFF
            udp = struct.pack("!HHHH", src[1], dst[1], udp_len, csum)
            ether = _IPV6
        else:  # a mixed pair cannot be one UDP flow
            self.dropped += 1
            return
        frame = (_THEIRS if outgoing else _OURS) + (_OURS if outgoing else _THEIRS) + ether + ip + udp + data
        sec = int(when)
        self._buf += _RECORD.pack(sec, int((when - sec) * 1e6), len(frame), len(frame))
        self._buf += frame
        self.packets += 1

    def pcap(self) -> bytes:
        """The capture so far, a complete pcap file (the global header alone if nothing came)."""
        return bytes(self._buf)

    def take(self) -> bytearray:
        """The pcap file, handed over without a copy; nothing more is kept after this."""
        buf, self._buf = self._buf, bytearray(_GLOBAL_HEADER)
        self.max_bytes = len(self._buf)  # the call is over: later datagrams are only counted
        return buf

    @property
    def size(self) -> int:
        return len(self._buf)
