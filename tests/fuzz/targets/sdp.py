"""SDP (appliance/sip/sdp.py): the parser, the T.38 attributes and the offer/answer built on them.

Contract: SessionDescription.parse returns a description or raises SdpParseError; what parses
serialises to text that parses again and serialises to the same text; reading T.38 parameters
never raises; answering the offer (audio and T.38) either answers or raises NoUsableCodec, and
our answer, read back as the peer would, states exactly what we agreed, within what was offered.
"""
from __future__ import annotations

from appliance.sip.sdp import (EC_FEC, EC_NONE, EC_REDUNDANCY, MAX_UDPTL_DATAGRAM, T38_MAX_BITRATE,
                               NoUsableCodec, SdpParseError, SessionDescription, _usable_image,
                               answer_audio, answer_t38,
                               has_audio, has_t38, parse_answer, parse_t38_answer, t38_params)

MAX_LEN = 2048
DICTS = ("sdp", "_text")
_STRENGTH = {EC_NONE: 0, EC_REDUNDANCY: 1, EC_FEC: 2}


def TestOneInput(data: bytes) -> None:
    audio_seen, t38_seen = has_audio(data), has_t38(data)
    try:
        sd = SessionDescription.parse(data)
    except SdpParseError:
        assert not audio_seen and not t38_seen
        return
    text = str(sd)
    again = SessionDescription.parse(text)
    assert str(again) == text, (text, str(again))
    for m in sd.media:
        assert 0 <= m.port <= 65535
        p = t38_params(m)
        assert p.udp_ec in _STRENGTH and 0 <= p.version <= 255
        m.rtpmap(), m.direction  # noqa: B018 - must not raise
    for read in (parse_answer, parse_t38_answer):
        try:
            read(sd)
        except NoUsableCodec:
            pass
    try:
        audio = answer_audio(sd, "192.0.2.1", 40000, 7, 1)
    except NoUsableCodec:
        audio = None
    try:
        t38 = answer_t38(sd, "192.0.2.1", 40002, 7, 1, t38_version=1)
    except NoUsableCodec:
        t38 = None
    if audio is not None:
        ours = SessionDescription.parse(audio.sdp)
        assert len(ours.media) == len(sd.media)
        back = parse_answer(ours)
        assert (back.codec, back.payload_type) == (audio.codec, audio.payload_type)
        assert back.remote == ("192.0.2.1", 40000)
    if t38 is not None:
        ours = SessionDescription.parse(t38.sdp)
        assert len(ours.media) == len(sd.media)
        back38 = parse_t38_answer(ours)
        assert back38.params == t38.params, (back38.params, t38.params)
        assert back38.remote == ("192.0.2.1", 40002)
        offered = t38_params(next(m for m in sd.media if _usable_image(m) and sd.connection_address(m)))
        assert t38.params.version <= min(offered.version, 1)
        assert t38.params.max_bitrate <= min(offered.max_bitrate, T38_MAX_BITRATE)
        assert _STRENGTH[t38.params.udp_ec] <= _STRENGTH[offered.udp_ec]
        assert 0 < t38.far_max_datagram <= MAX_UDPTL_DATAGRAM
