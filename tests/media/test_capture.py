"""A call's media as a pcap: read back with dpkt (as Wireshark would read it), bounded, and taken
by the media channel from real loopback traffic when capture is on, and not at all when off."""

from __future__ import annotations

import asyncio
import io
import socket
import struct

import pytest

from appliance.media.capture import MediaCapture
from appliance.media.channel import MediaChannel
from appliance.media.clock import MediaClock
from appliance.media.rtp import RtpPacket
from appliance.media.udptl import UdptlPacket, encode
from tests.budgets import async_wait_until
from tests.provided import require_import

dpkt = require_import("dpkt", "dpkt, of the test extra")


def records(data: bytes) -> list[tuple[float, bytes]]:
    reader = dpkt.pcap.Reader(io.BytesIO(data))
    assert reader.datalink() == dpkt.pcap.DLT_EN10MB
    return list(reader)


def ones_complement(data: bytes) -> int:
    """RFC 1071, written out independently of the code under test."""
    data += b"\x00" * (len(data) % 2)
    total = 0
    for i in range(0, len(data), 2):
        total += int.from_bytes(data[i:i + 2], "big")
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_ipv4_both_directions_as_on_the_wire() -> None:
    cap = MediaCapture(("127.0.0.1", 40000))
    rtp_in = RtpPacket(8, 1000, 160_000, 0xDEADBEEF, b"\xd5" * 160).build()
    rtp_out = RtpPacket(8, 7, 3200, 0x12345678, b"\x55" * 160).build()
    cap.received(rtp_in, ("192.0.2.10", 5004), 1_767_225_600.25)
    cap.sent(rtp_out, ("192.0.2.10", 5004), 1_767_225_600.5)
    got = records(cap.pcap())
    assert [ts for ts, _ in got] == [pytest.approx(1_767_225_600.25), pytest.approx(1_767_225_600.5)]
    frames = [dpkt.ethernet.Ethernet(buf) for _, buf in got]
    for eth, (src, sport, dst, dport, payload) in zip(frames, [
            ("192.0.2.10", 5004, "127.0.0.1", 40000, rtp_in), ("127.0.0.1", 40000, "192.0.2.10", 5004, rtp_out)]):
        ip = eth.data
        assert eth.type == dpkt.ethernet.ETH_TYPE_IP and isinstance(ip, dpkt.ip.IP)
        assert (socket.inet_ntoa(ip.src), ip.data.sport, socket.inet_ntoa(ip.dst), ip.data.dport) == (
            src, sport, dst, dport)
        assert ip.p == dpkt.ip.IP_PROTO_UDP and ip.len == 20 + 8 + len(payload) and ip.ttl == 64
        assert ones_complement(bytes(ip)[:20]) == 0xFFFF  # the header checksum checks out
        assert ip.data.ulen == 8 + len(payload) and ip.data.data == payload
        rtp = dpkt.rtp.RTP(ip.data.data)
        assert rtp.version == 2 and rtp.pt == 8
    assert frames[0].dst == frames[1].src and frames[0].src == frames[1].dst  # our MAC, theirs
    assert cap.packets == 2 and cap.dropped == 0


def test_ipv6_udptl_has_a_valid_udp_checksum() -> None:
    cap = MediaCapture(("::1", 40002))
    udptl = encode(UdptlPacket(5, b"\x06\x00", (b"\x01",)))
    cap.received(udptl, ("::1", 4545), 1000.0)
    ((_, buf),) = records(cap.pcap())
    eth = dpkt.ethernet.Ethernet(buf)
    ip6 = eth.data
    assert eth.type == dpkt.ethernet.ETH_TYPE_IP6 and isinstance(ip6, dpkt.ip6.IP6)
    udp = ip6.data
    assert (udp.sport, udp.dport, udp.data) == (4545, 40002, udptl)
    pseudo = ip6.src + ip6.dst + struct.pack("!I3xB", len(bytes(udp)), 17)
    assert ones_complement(pseudo + bytes(udp)) == 0xFFFF
    assert struct.unpack("!H", udp.data[:2])[0] == 5  # UDPTL's sequence number


def test_bounded_in_bytes_then_only_counted() -> None:
    cap = MediaCapture(("127.0.0.1", 40000), max_bytes=2000)
    for seq in range(20):
        cap.received(RtpPacket(0, seq, seq * 160, 1, b"\xff" * 160).build(), ("192.0.2.10", 5004), 1.0 + seq / 50)
    assert cap.size <= 2000 and cap.packets == 8 and cap.dropped == 12
    got = records(cap.pcap())  # still a whole file
    assert [dpkt.rtp.RTP(dpkt.ethernet.Ethernet(b).data.data.data).seq for _, b in got] == list(range(8))
    taken = cap.take()
    assert len(records(bytes(taken))) == 8  # handed over whole
    cap.received(b"\x80" * 20, ("192.0.2.10", 5004), 2.0)  # after the call: counted, not kept
    assert len(records(cap.pcap())) == 0 and cap.dropped == 13


class Echo:
    """An audio terminal that sends a fixed pattern."""

    def receive_g711(self, payload: bytes) -> None:
        pass

    def receive_fillin(self, samples: int) -> None:
        pass

    def transmit_g711(self, samples: int = 160) -> bytes:
        return b"\x2a" * samples


def channel_traffic(capture: bool) -> tuple[MediaChannel, tuple[str, int]]:
    """Ten RTP packets each way between a peer socket and a channel, plus one UDPTL packet from
    the peer and one RTP packet from a stranger; returns the closed channel and the peer's address."""
    async def main() -> tuple[MediaChannel, tuple[str, int]]:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.2", 0))
        ch = await MediaChannel.open_ephemeral("127.0.0.1", delay=0.02)
        if capture:
            ch.start_capture()
        ch.use_audio(Echo(), 0, peer.getsockname())
        ch.start_clock(MediaClock())
        dest = ("127.0.0.1", ch.port)
        for i in range(10):
            peer.sendto(RtpPacket(0, 100 + i, i * 160, 7, bytes([i]) * 160).build(), dest)
        peer.sendto(encode(UdptlPacket(0, b"\x00")), dest)  # early T.38 on the same port: kept too
        stranger.sendto(RtpPacket(0, 1, 0, 9, b"\x00" * 160).build(), dest)  # not the call's
        await async_wait_until(lambda: ch.stats["sent"] >= 10 and ch.playout.stats["received"] >= 10
                               and ch.stats["from_stranger"] == 1, "ten packets each way")
        ch.close()
        addr = peer.getsockname()
        peer.close(), stranger.close()
        return ch, addr

    return asyncio.run(main())


def test_the_channel_captures_the_calls_datagrams_both_ways() -> None:
    ch, peer = channel_traffic(capture=True)
    assert ch.capture is not None
    flows: dict[tuple[int, int], list[bytes]] = {}
    for _, buf in records(ch.capture.pcap()):
        ip = dpkt.ethernet.Ethernet(buf).data
        assert socket.inet_ntoa(ip.src) == "127.0.0.1" and socket.inet_ntoa(ip.dst) == "127.0.0.1"
        flows.setdefault((ip.data.sport, ip.data.dport), []).append(ip.data.data)
    assert set(flows) == {(peer[1], ch.port), (ch.port, peer[1])}
    incoming = flows[(peer[1], ch.port)]
    assert [dpkt.rtp.RTP(d).seq for d in incoming[:10]] == list(range(100, 110))
    assert incoming[10] == encode(UdptlPacket(0, b"\x00"))  # the UDPTL among it, as it came
    outgoing = [dpkt.rtp.RTP(d) for d in flows[(ch.port, peer[1])]]
    assert len(outgoing) == ch.stats["sent"] and {p.pt for p in outgoing} == {0}
    assert all((b.seq - a.seq) % 65536 == 1 for a, b in zip(outgoing, outgoing[1:]))
    assert {p.data for p in outgoing} == {b"\x2a" * 160}


def test_capture_off_keeps_nothing() -> None:
    ch, _ = channel_traffic(capture=False)
    assert ch.capture is None and ch.stats["sent"] >= 10
