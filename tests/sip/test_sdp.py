"""SDP parsing and RFC 3264 answers for G.711 fax calls."""
from __future__ import annotations

import pytest

from appliance.sip.sdp import (
    NoUsableCodec,
    SdpParseError,
    SessionDescription,
    answer_audio,
    offer_audio,
    parse_answer,
)


def offer(media: str, session_c: str | None = "c=IN IP4 192.0.2.10\r\n") -> str:
    return ("v=0\r\no=gw 123 456 IN IP4 192.0.2.10\r\ns=-\r\n" + (session_c or "")
            + "t=0 0\r\n" + media)


AUDIO_PCMU_FIRST = "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:30\r\na=sendrecv\r\n"


def m_lines(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("m=")]


def test_parse_keeps_structure() -> None:
    sd = SessionDescription.parse(offer(AUDIO_PCMU_FIRST + "m=image 4002 udptl t38\r\na=T38FaxVersion:0\r\na=T38FaxFillBitRemoval\r\n"))
    assert [m.media for m in sd.media] == ["audio", "image"]
    image = sd.media[1]
    assert (image.port, image.proto, image.formats) == (4002, "udptl", ["t38"])
    assert image.attr("t38faxversion") == "0"
    assert image.attr("T38FAXFILLBITREMOVAL") == "" and image.attr("T38MaxBitRate") is None
    assert sd.media[0].rtpmap()["101"] == ("TELEPHONE-EVENT", 8000)
    assert sd.media[0].rtpmap()["0"] == ("PCMU", 8000)
    assert sd.media[0].fmtp("101") == "0-16"
    assert sd.media[0].direction == "sendrecv"
    assert sd.connection_address(image) == "192.0.2.10"


def test_str_roundtrip() -> None:
    text = offer(AUDIO_PCMU_FIRST + "m=video 5000 RTP/AVP 31\r\nc=IN IP4 192.0.2.11\r\nb=AS:64\r\n")
    sd = SessionDescription.parse(text)
    assert str(sd) == text
    assert str(SessionDescription.parse(str(sd))) == text


@pytest.mark.parametrize("text", [
    "o=x 1 1 IN IP4 h\r\n",                       # no v=
    "v=0\r\nm=audio\r\n",                           # short m=
    "v=0\r\nm=audio port RTP/AVP 0\r\n",            # non-numeric port
    "v=0\r\nc=IN IP4\r\n",                          # short c=
    "v=0\r\nthis is not sdp\r\n",
    b"v=0\r\ns=\xff\r\n",
])
def test_parse_rejects(text: str | bytes) -> None:
    with pytest.raises(SdpParseError):
        SessionDescription.parse(text)


def test_answer_pcmu_first_with_telephone_event_and_ptime() -> None:
    ans = answer_audio(SessionDescription.parse(offer(AUDIO_PCMU_FIRST)), "192.0.2.1", 20000, 7, 1)
    assert (ans.codec, ans.payload_type, ans.remote, ans.ptime) == ("PCMU", 0, ("192.0.2.10", 4000), 30)
    assert ans.telephone_event_pt == 101
    sd = SessionDescription.parse(ans.sdp)
    assert sd.origin == "faxbridge 7 1 IN IP4 192.0.2.1"
    assert sd.connection == "IN IP4 192.0.2.1"
    m = sd.media[0]
    assert (m.port, m.formats) == (20000, ["0", "101"])
    assert m.fmtp("101") == "0-16" and m.attr("ptime") == "30" and m.direction == "sendrecv"


def test_answer_pcma_first_follows_offer_preference() -> None:
    ans = answer_audio(offer("m=audio 4000 RTP/AVP 8 0\r\n"), "192.0.2.1", 20000, 1, 1)
    assert (ans.codec, ans.payload_type, ans.ptime, ans.telephone_event_pt) == ("PCMA", 8, 20, None)
    assert m_lines(ans.sdp) == ["m=audio 20000 RTP/AVP 8"]
    assert "a=ptime" not in ans.sdp


def test_answer_dynamic_payload_type_for_pcmu() -> None:
    ans = answer_audio(offer("m=audio 4000 RTP/AVP 96 97\r\na=rtpmap:96 pcmu/8000\r\na=rtpmap:97 PCMA/8000\r\n"),
                       "192.0.2.1", 20000, 1, 1)
    assert (ans.codec, ans.payload_type) == ("PCMU", 96)
    assert "a=rtpmap:96 PCMU/8000" in ans.sdp


def test_answer_skips_wideband_and_unknown_codecs() -> None:
    ans = answer_audio(offer("m=audio 4000 RTP/AVP 9 18 96 8\r\na=rtpmap:96 PCMU/16000\r\n"), "h", 1, 1, 1)
    assert (ans.codec, ans.payload_type) == ("PCMA", 8)


def test_answer_video_and_audio_keeps_order_and_rejects_video() -> None:
    ans = answer_audio(offer("m=video 5000 RTP/AVP 31\r\n" + AUDIO_PCMU_FIRST + "m=image 6000 udptl t38\r\n"),
                       "192.0.2.1", 20000, 1, 1)
    assert m_lines(ans.sdp) == ["m=video 0 RTP/AVP 31", "m=audio 20000 RTP/AVP 0 101", "m=image 0 udptl t38"]


def test_only_first_usable_audio_accepted() -> None:
    ans = answer_audio(offer("m=audio 0 RTP/AVP 0\r\nm=audio 4000 RTP/AVP 8\r\nm=audio 4002 RTP/AVP 0\r\n"),
                       "192.0.2.1", 20000, 1, 1)
    assert m_lines(ans.sdp) == ["m=audio 0 RTP/AVP 0", "m=audio 20000 RTP/AVP 8", "m=audio 0 RTP/AVP 0"]
    assert ans.remote == ("192.0.2.10", 4000)


def test_no_usable_codec() -> None:
    with pytest.raises(NoUsableCodec):
        answer_audio(offer("m=audio 4000 RTP/AVP 9 18\r\nm=image 4002 udptl t38\r\n"), "h", 1, 1, 1)
    with pytest.raises(NoUsableCodec):
        answer_audio(offer("m=audio 4000 RTP/SAVP 0\r\n"), "h", 1, 1, 1)


def test_connection_media_level_overrides_session() -> None:
    text = offer("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 198.51.100.7\r\n")
    assert answer_audio(text, "h", 1, 1, 1).remote == ("198.51.100.7", 4000)


def test_connection_only_at_media_level() -> None:
    text = offer("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 198.51.100.8/127\r\n", session_c=None)
    assert answer_audio(text, "h", 1, 1, 1).remote == ("198.51.100.8", 4000)


def test_missing_connection_rejects_stream() -> None:
    with pytest.raises(NoUsableCodec):
        answer_audio(offer("m=audio 4000 RTP/AVP 0\r\n", session_c=None), "h", 1, 1, 1)


@pytest.mark.parametrize("offered,answered", [
    ("sendonly", "recvonly"), ("recvonly", "sendonly"), ("inactive", "inactive"), ("sendrecv", "sendrecv"),
    (None, "sendrecv"),
])
def test_direction_reciprocal(offered: str | None, answered: str) -> None:
    media = "m=audio 4000 RTP/AVP 0\r\n" + (f"a={offered}\r\n" if offered else "")
    ans = answer_audio(offer(media), "h", 1, 1, 1)
    assert ans.direction == answered
    assert SessionDescription.parse(ans.sdp).media[0].direction == answered


def test_ipv6_answer() -> None:
    ans = answer_audio(offer("m=audio 4000 RTP/AVP 0\r\n", "c=IN IP6 2001:db8::5\r\n"), "2001:db8::1", 1, 1, 1)
    assert ans.remote == ("2001:db8::5", 4000)
    assert "c=IN IP6 2001:db8::1" in ans.sdp


def test_offer_audio_and_parse_answer_roundtrip() -> None:
    text = offer_audio("192.0.2.1", 30000, 5, 2, codecs=("PCMA", "PCMU"))
    sd = SessionDescription.parse(text)
    assert sd.media[0].formats == ["8", "0", "101"]
    answer = answer_audio(text, "192.0.2.9", 40000, 9, 1)
    assert answer.codec == "PCMA"
    info = parse_answer(answer.sdp)
    assert (info.codec, info.payload_type, info.remote, info.telephone_event_pt) == ("PCMA", 8, ("192.0.2.9", 40000), 101)


def test_parse_answer_without_audio() -> None:
    with pytest.raises(NoUsableCodec):
        parse_answer(offer("m=audio 0 RTP/AVP 0\r\n"))
