"""T.38 (m=image udptl t38) in SDP: parsing what real gateways write, answering, offering."""
from __future__ import annotations

import pytest

from appliance.sip.sdp import (
    EC_FEC, EC_NONE, EC_REDUNDANCY, NoUsableCodec, SessionDescription, T38Params, answer_audio,
    answer_t38, has_audio, has_t38, offer_t38, parse_t38_answer, t38_params,
)


def sdp(media: str, origin: str = "gw 123 456") -> str:
    return f"v=0\r\no={origin} IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n" + media


def image(port: int = 4000, *attrs: str, proto: str = "udptl t38") -> str:
    return f"m=image {port} {proto}\r\n" + "".join(f"a={a}\r\n" for a in attrs)


def params_of(text: str) -> T38Params:
    return t38_params(next(m for m in SessionDescription.parse(text).media if m.media == "image"))


def image_attrs(text: str) -> dict[str, str | None]:
    m = next(m for m in SessionDescription.parse(text).media if m.media == "image")
    return {n: v for n, v in m.attributes}


# The Thirdlane SBC's (Asterisk 13) T.38 re-INVITE to the Grandstream HT801, and the HT801's 200 OK,
# verbatim from the capture in fixtures/pcaps/grandstream-ht801-t38-ecm.pcap.
THIRDLANE_OFFER = (
    "v=0\r\no=root 132915792 132915793 IN IP4 74.117.149.128\r\ns=Asterisk PBX 13.25.0-rc3\r\n"
    "c=IN IP4 74.117.149.128\r\nt=0 0\r\nm=image 4545 udptl t38\r\na=T38FaxVersion:0\r\n"
    "a=T38MaxBitRate:14400\r\na=T38FaxFillBitRemoval\r\na=T38FaxRateManagement:transferredTCF\r\n"
    "a=T38FaxMaxDatagram:397\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n")
HT801_ANSWER = (
    "v=0\r\no=3906-improcom 8000 8001 IN IP4 172.16.1.165\r\ns=SIP Call\r\nc=IN IP4 172.16.1.165\r\n"
    "t=0 0\r\nm=image 5004 udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\n"
    "a=T38FaxRateManagement:transferredTCF\r\na=T38FaxMaxBuffer:400\r\na=T38FaxMaxDatagram:397\r\n"
    "a=T38FaxUdpEC:t38UDPRedundancy\r\n")
# A Vega gateway style: explicit :0/:1 booleans and localTCF.
VEGA = sdp(image(6000, "T38FaxVersion:0", "T38MaxBitRate:9600", "T38FaxFillBitRemoval:0",
                 "T38FaxTranscodingMMR:0", "T38FaxTranscodingJBIG:0", "T38FaxRateManagement:localTCF",
                 "T38FaxMaxBuffer:200", "T38FaxMaxDatagram:200", "T38FaxUdpEC:t38UDPRedundancy"))


def test_thirdlane_offer_bare_flag() -> None:
    p = params_of(THIRDLANE_OFFER)
    assert p == T38Params(version=0, max_bitrate=14400, rate_management="transferredTCF", max_datagram=397,
                          udp_ec=EC_REDUNDANCY, fill_bit_removal=True)
    assert has_t38(THIRDLANE_OFFER) and not has_audio(THIRDLANE_OFFER)


def test_answer_to_thirdlane_offer_switches_fill_bit_removal_off() -> None:
    ans = answer_t38(THIRDLANE_OFFER, "192.0.2.1", 30000, 7, 2)
    assert ans.remote == ("74.117.149.128", 4545) and ans.far_max_datagram == 397
    assert ans.params == T38Params(0, 14400, "transferredTCF", None, 400, EC_REDUNDANCY)
    attrs = image_attrs(ans.sdp)
    assert attrs == {"T38FaxVersion": "0", "T38MaxBitRate": "14400", "T38FaxRateManagement": "transferredTCF",
                     "T38FaxMaxDatagram": "400", "T38FaxUdpEC": "t38UDPRedundancy"}
    sd = SessionDescription.parse(ans.sdp)
    assert sd.origin == "faxbridge 7 2 IN IP4 192.0.2.1" and sd.media[0].port == 30000
    assert ans.sdp.splitlines()[5] == "m=image 30000 udptl t38"


def test_ht801_answer_parsed_as_answer_to_our_offer() -> None:
    ans = parse_t38_answer(HT801_ANSWER)
    assert ans.remote == ("172.16.1.165", 5004) and ans.far_max_datagram == 397
    assert ans.params.max_buffer == 400 and ans.params.udp_ec == EC_REDUNDANCY
    assert not ans.params.fill_bit_removal


def test_vega_explicit_booleans_and_local_tcf_echoed() -> None:
    p = params_of(VEGA)
    assert (p.fill_bit_removal, p.transcoding_mmr, p.transcoding_jbig) == (False, False, False)
    assert (p.rate_management, p.max_buffer, p.max_datagram, p.max_bitrate) == ("localTCF", 200, 200, 9600)
    ans = answer_t38(VEGA, "192.0.2.1", 30000, 1, 1)
    assert ans.params.rate_management == "localTCF" and ans.params.max_bitrate == 9600
    assert image_attrs(ans.sdp)["T38FaxRateManagement"] == "localTCF"


@pytest.mark.parametrize("flag,expected", [
    ("T38FaxFillBitRemoval", True), ("T38FaxFillBitRemoval:1", True), ("T38FaxFillBitRemoval:0", False),
    ("t38faxfillbitremoval", True), ("T38FAXFILLBITREMOVAL:1", True), (None, False),
])
def test_boolean_forms(flag: str | None, expected: bool) -> None:
    assert params_of(sdp(image(4000, *([flag] if flag else [])))).fill_bit_removal is expected


@pytest.mark.parametrize("attrs,field,value", [
    (["T38maxBitRate:9600"], "max_bitrate", 9600),                    # Aculab's spelling
    (["t38faxversion:3"], "version", 3),
    (["T38MaxDatagram:612"], "max_datagram", 612),                      # Asterisk's alias
    (["T38FaxMaxDatagram:176"], "max_datagram", 176),                   # BroadWorks
    (["T38FaxUdpEC:T38UDPFEC"], "udp_ec", EC_FEC),
    (["T38FaxUdpEC:t38UDPNoEC"], "udp_ec", EC_NONE),
    ([], "udp_ec", EC_NONE),
    (["T38FaxRateManagement:LOCALTCF"], "rate_management", "localTCF"),
    (["T38FaxTranscodingMMR", "T38FaxTranscodingJBIG:1"], "transcoding_jbig", True),
    (["T38FaxUdpECDepth:1 3"], "ec_depth", "1 3"),
    (["T38FaxUdpFECMaxSpan:3"], "fec_max_span", 3),
    (["T38VendorInfo:0 0 0"], "vendor_info", "0 0 0"),
    (["T38FaxVersion:x", "T38MaxBitRate:-5"], "version", 0),            # junk takes the default
    (["T38MaxBitRate:"], "max_bitrate", 14400),
])
def test_attribute_variants(attrs: list[str], field: str, value: object) -> None:
    assert getattr(params_of(sdp(image(4000, *attrs))), field) == value


@pytest.mark.parametrize("proto", ["udptl t38", "UDPTL t38", "udptl T38", "UDPTL T38"])
def test_proto_case_insensitive(proto: str) -> None:
    text = sdp(image(4000, "T38FaxVersion:0", proto=proto))
    assert has_t38(text)
    assert answer_t38(text, "192.0.2.1", 30000, 1, 1).remote == ("192.0.2.10", 4000)


@pytest.mark.parametrize("offered,max_ec,answered", [
    (EC_FEC, EC_REDUNDANCY, EC_REDUNDANCY),
    (EC_FEC, EC_FEC, EC_FEC),
    (EC_FEC, EC_NONE, EC_NONE),
    (EC_REDUNDANCY, EC_FEC, EC_REDUNDANCY),
    (EC_REDUNDANCY, EC_REDUNDANCY, EC_REDUNDANCY),
    (EC_NONE, EC_FEC, EC_NONE),
    (EC_NONE, EC_REDUNDANCY, EC_NONE),
])
def test_error_correction_same_or_weaker(offered: str, max_ec: str, answered: str) -> None:
    attrs = [] if offered == EC_NONE else [f"T38FaxUdpEC:{offered}"]
    ans = answer_t38(sdp(image(4000, *attrs)), "192.0.2.1", 30000, 1, 1, max_ec=max_ec)
    assert ans.params.udp_ec == answered
    assert image_attrs(ans.sdp).get("T38FaxUdpEC") == (None if answered == EC_NONE else answered)


@pytest.mark.parametrize("offer_version,ours,agreed", [(0, 0, 0), (3, 0, 0), (2, 3, 2), (1, 1, 1), (0, 3, 0)])
def test_version_never_above_offer_or_ours(offer_version: int, ours: int, agreed: int) -> None:
    ans = answer_t38(sdp(image(4000, f"T38FaxVersion:{offer_version}")), "h", 1, 1, 1, t38_version=ours)
    assert ans.params.version == agreed and image_attrs(ans.sdp)["T38FaxVersion"] == str(agreed)


@pytest.mark.parametrize("offered,agreed", [("33600", 14400), ("14400", 14400), ("9600", 9600), ("2400", 2400)])
def test_bitrate_capped(offered: str, agreed: int) -> None:
    ans = answer_t38(sdp(image(4000, f"T38MaxBitRate:{offered}")), "h", 1, 1, 1)
    assert ans.params.max_bitrate == agreed and image_attrs(ans.sdp)["T38MaxBitRate"] == str(agreed)


def test_answer_turns_off_transcoding_offered() -> None:
    text = sdp(image(4000, "T38FaxFillBitRemoval:1", "T38FaxTranscodingMMR", "T38FaxTranscodingJBIG:1"))
    ans = answer_t38(text, "h", 1, 1, 1)
    assert not (ans.params.fill_bit_removal or ans.params.transcoding_mmr or ans.params.transcoding_jbig)
    assert not any("Transcoding" in n or "FillBit" in n for n in image_attrs(ans.sdp))


@pytest.mark.parametrize("declared,far", [
    ("176", 176), ("397", 397), ("612", 612), (None, 400), ("0", 400), ("65000", 400),
])
def test_far_max_datagram(declared: str | None, far: int) -> None:
    attrs = [f"T38FaxMaxDatagram:{declared}"] if declared else []
    ans = answer_t38(sdp(image(4000, *attrs)), "h", 1, 1, 1, our_max_datagram=1400)
    assert ans.far_max_datagram == far
    assert image_attrs(ans.sdp)["T38FaxMaxDatagram"] == "1400"   # ours is declarative, not the peer's


def test_audio_and_image_offer_answered_with_t38_only() -> None:
    text = sdp("m=audio 5000 RTP/AVP 0 8\r\na=sendrecv\r\n" + image(5002, "T38FaxVersion:0")
               + "m=video 5004 RTP/AVP 31\r\n")
    ans = answer_t38(text, "192.0.2.1", 30000, 1, 1)
    assert [line for line in ans.sdp.splitlines() if line.startswith("m=")] == [
        "m=audio 0 RTP/AVP 0 8", "m=image 30000 udptl t38", "m=video 0 RTP/AVP 31"]
    assert ans.remote == ("192.0.2.10", 5002)


def test_audio_answer_rejects_image_still() -> None:
    text = sdp("m=audio 5000 RTP/AVP 0\r\n" + image(5002))
    ans = answer_audio(text, "192.0.2.1", 30000, 1, 1)
    assert "m=image 0 udptl t38" in ans.sdp


def test_image_with_port_zero_is_not_t38() -> None:
    text = sdp("m=audio 5000 RTP/AVP 0\r\n" + image(0, "T38FaxVersion:0"))
    assert not has_t38(text) and has_audio(text)
    with pytest.raises(NoUsableCodec):
        answer_t38(text, "h", 1, 1, 1)
    with pytest.raises(NoUsableCodec):
        parse_t38_answer(text)


@pytest.mark.parametrize("media", [
    "m=image 4000 udptl t4\r\n", "m=image 4000 tcptl t38\r\n", "m=audio 4000 udptl t38\r\n",
    "m=image 4000 UDP/TLS/UDPTL t38\r\n",
])
def test_not_t38(media: str) -> None:
    assert not has_t38(sdp(media))


def test_has_helpers_tolerate_junk() -> None:
    assert not has_t38(None) and not has_audio(None)
    assert not has_t38(b"not sdp") and not has_audio("v=0\r\nm=audio x\r\n")
    assert has_audio(SessionDescription.parse(sdp("m=audio 5000 RTP/AVP 0\r\n")))


def test_image_without_connection_address_is_unusable() -> None:
    text = "v=0\r\no=gw 1 1 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\n" + image(4000)
    with pytest.raises(NoUsableCodec):
        answer_t38(text, "h", 1, 1, 1)


def test_offer_t38_roundtrip() -> None:
    text = offer_t38("192.0.2.1", 31000, 9, 4)
    sd = SessionDescription.parse(text)
    assert sd.origin == "faxbridge 9 4 IN IP4 192.0.2.1" and len(sd.media) == 1
    assert image_attrs(text) == {"T38FaxVersion": "0", "T38MaxBitRate": "14400",
                                 "T38FaxRateManagement": "transferredTCF", "T38FaxMaxDatagram": "400",
                                 "T38FaxUdpEC": "t38UDPRedundancy"}
    assert params_of(text) == T38Params(max_datagram=400)
    # a peer (the HT801 style answerer) answering our offer, read back with parse_t38_answer
    peer = answer_t38(text, "192.0.2.9", 5004, 8000, 8001, our_max_datagram=397, our_max_buffer=400)
    back = parse_t38_answer(peer.sdp)
    assert back.remote == ("192.0.2.9", 5004) and back.far_max_datagram == 397 and back.params.max_buffer == 400
    custom = offer_t38("192.0.2.1", 31000, 9, 5, T38Params(version=3, max_bitrate=33600, udp_ec=EC_FEC,
                                                           fill_bit_removal=True, max_datagram=None))
    attrs = image_attrs(custom)
    assert attrs["T38FaxFillBitRemoval"] is None and attrs["T38FaxUdpEC"] == "t38UDPFEC"
    assert "T38FaxMaxDatagram" not in attrs


def test_offer_t38_ipv6() -> None:
    text = offer_t38("2001:db8::1", 31000, 1, 1)
    assert "c=IN IP6 2001:db8::1" in text
