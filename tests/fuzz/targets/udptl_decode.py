"""UDPTL datagrams (appliance/media/udptl.py decode).

Contract: decode returns a packet or raises UdptlError; a packet re-encodes to a datagram no
longer than the one received (we always write the minimal form) that decodes to the same
packet; its primary IFP is never empty and its counts are within the limits.
"""
from __future__ import annotations

from appliance.media.udptl import (MAX_DATAGRAM, MAX_FEC_ENTRIES, MAX_FEC_SPAN, MAX_SECONDARIES, UdptlError,
                                   decode, encode)

MAX_LEN = MAX_DATAGRAM + 100


def TestOneInput(data: bytes) -> None:
    try:
        packet = decode(data)
    except UdptlError:
        return
    assert packet.primary and 0 <= packet.seq < 65536
    assert len(packet.secondaries) <= MAX_SECONDARIES and len(packet.fec_entries) <= MAX_FEC_ENTRIES
    assert 0 <= packet.fec_span <= MAX_FEC_SPAN and not (packet.fec and packet.secondaries)
    again = encode(packet)
    assert len(again) <= len(data)
    assert decode(again) == packet
