"""A G.711 call's tick in one C call (``AudioFaxTerminal.rtp_tick``) does what the three Python
calls did: the same audio into spandsp, the same audio out, behind the header the stream chose."""

from __future__ import annotations

import random

from appliance.media.rtp import PT_PCMA, RtpPacket, RtpStream
from appliance.spandsp.audio import AudioFaxTerminal


def test_one_c_call_a_tick_equals_feeding_and_pulling_in_python(tmp_path):
    rng = random.Random(5)
    old = AudioFaxTerminal(calling=False, codec="PCMA", rx_file=tmp_path / "a.tif", trace=False)
    new = AudioFaxTerminal(calling=False, codec="PCMA", rx_file=tmp_path / "b.tif", trace=False)
    stream_old, stream_new = RtpStream(PT_PCMA, random.Random(1)), RtpStream(PT_PCMA, random.Random(1))
    sounding = 0
    for tick in range(400):  # 8 s: CED, then DIS and its repeats
        roll = rng.random()
        due: bytes | int | None = (None if roll < 0.1 else 80 if roll < 0.2
                                   else bytes(rng.getrandbits(8) for _ in range(160)))
        if isinstance(due, int):
            old.receive_fillin(due)
        elif due is not None:
            old.receive_g711(due)
        want = stream_old.packet(old.transmit_g711(160))
        got = new.rtp_tick(due, stream_new.next_header(160))
        assert got == want, tick
        pkt = RtpPacket.parse(got)
        assert pkt.payload_type == PT_PCMA and len(pkt.payload) == 160 and pkt.marker == (tick == 0)
        sounding += len(set(pkt.payload)) > 2
    assert sounding > 100  # CED and V.21 went out: the comparison was of audio, not of silence
    old.close(), new.close()


def test_a_closed_terminal_still_makes_packets_of_silence(tmp_path):
    term = AudioFaxTerminal(calling=False, rx_file=tmp_path / "c.tif", trace=False)
    term.close()
    stream = RtpStream(0, random.Random(2))
    pkt = RtpPacket.parse(term.rtp_tick(b"\x00" * 160, stream.next_header(160)))
    assert pkt.marker and pkt.payload == b"\xff" * 160
    nxt = RtpPacket.parse(term.rtp_tick(None, stream.next_header(160)))
    assert not nxt.marker and nxt.sequence == (pkt.sequence + 1) & 0xFFFF
    assert nxt.timestamp == (pkt.timestamp + 160) & 0xFFFFFFFF


def test_packets_made_ahead_are_restamped_past_a_gap():
    stream = RtpStream(0, random.Random(3))
    made = stream.packet(b"\xff" * 160)
    later = RtpPacket.parse(RtpStream.restamp(made, 15 * 160))
    before = RtpPacket.parse(made)
    assert later.timestamp == (before.timestamp + 2400) & 0xFFFFFFFF
    assert later._replace(timestamp=before.timestamp) == before
