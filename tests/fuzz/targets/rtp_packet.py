"""RTP packets (appliance/media/rtp.py RtpPacket.parse).  The playout buffer gets its own target
once its rewrite lands.

Contract: parse returns a packet or raises RtpError; a packet's fields are in range, its payload
is a slice of the datagram after the headers; building it and parsing that gives the same packet
(CSRCs, extension and padding are not kept); looks_like_rtp agrees with every packet parse takes.
"""
from __future__ import annotations

from appliance.media.rtp import RtpError, RtpPacket, looks_like_rtp

MAX_LEN = 1500


def TestOneInput(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert looks_like_rtp(data)
    assert 0 <= packet.payload_type < 128 and 0 <= packet.sequence < 65536
    assert 0 <= packet.timestamp < 2**32 and 0 <= packet.ssrc < 2**32
    assert len(packet.payload) <= len(data) - 12 and packet.payload in data[12:]
    assert RtpPacket.parse(packet.build()) == packet
