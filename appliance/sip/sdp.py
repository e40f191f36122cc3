"""SDP (RFC 4566) and the offer/answer rules (RFC 3264) for a fax endpoint: G.711 audio and T.38.

The parser keeps every line it does not interpret, and media sections of any kind (audio, image
for T.38 over UDPTL, video). T.38 attributes follow RFC 4612 / T.38 Annex D, read the way real
gateways write them: names in any case, booleans as a bare flag or `:0`/`:1`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from appliance.sip.errors import RemoteProtocolError
from appliance.strictnum import ascii_digits, is_uint

G711 = {"PCMU": 0, "PCMA": 8}
_STATIC_PT = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_RECIPROCAL = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class SdpParseError(RemoteProtocolError, ValueError):
    """The peer's SDP is malformed (answer 400 or 488)."""


class NoUsableCodec(RemoteProtocolError):
    """No stream we can use: no PCMU/PCMA audio, or no T.38 image stream (answer 488 Not Acceptable Here)."""


Attribute = tuple[str, "str | None"]


def _find(attrs: list[Attribute], name: str) -> list[str | None]:
    name = name.lower()
    return [v for n, v in attrs if n.lower() == name]


@dataclass
class MediaDescription:
    """One m= section: media type, port, proto, formats, its own c= and attributes."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)  # i=, b=, k= kept verbatim

    def attr(self, name: str) -> str | None:
        """First value of attribute `name` (case-insensitive); "" for a bare flag, None if absent."""
        values = _find(self.attributes, name)
        return None if not values else (values[0] or "")

    def attrs(self, name: str) -> list[str]:
        return [v or "" for v in _find(self.attributes, name)]

    def has_attr(self, name: str) -> bool:
        return bool(_find(self.attributes, name))

    def rtpmap(self) -> dict[str, tuple[str, int]]:
        """Payload type -> (encoding name upper-cased, clock rate), static types filled in."""
        result = {str(pt): enc for pt, enc in _STATIC_PT.items() if str(pt) in self.formats}
        for value in self.attrs("rtpmap"):
            pt, _, spec = value.partition(" ")
            name, _, rest = spec.strip().partition("/")
            rate = rest.partition("/")[0]
            if is_uint(pt, 127) and name and is_uint(rate, 10**6):
                result[pt] = (name.upper(), int(rate))
        return result

    def fmtp(self, pt: str) -> str | None:
        for value in self.attrs("fmtp"):
            fpt, _, params = value.partition(" ")
            if fpt == pt:
                return params.strip()
        return None

    @property
    def direction(self) -> str | None:
        return next((d for d in DIRECTIONS if self.has_attr(d)), None)

    def lines(self) -> list[str]:
        out = [f"m={self.media} {self.port} {self.proto} {' '.join(self.formats)}"]
        out += [f"{k}={v}" for k, v in self.other if k == "i"]
        if self.connection:
            out.append(f"c={self.connection}")
        out += [f"{k}={v}" for k, v in self.other if k != "i"]
        out += [f"a={n}" if v is None else f"a={n}:{v}" for n, v in self.attributes]
        return out


@dataclass
class SessionDescription:
    origin: str = "- 0 0 IN IP4 0.0.0.0"
    session_name: str = "-"
    connection: str | None = None
    timing: list[str] = field(default_factory=lambda: ["0 0"])
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)
    version: str = "0"

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise SdpParseError("SDP is not UTF-8") from None
        sd = cls(timing=[])
        seen_version = False
        current: MediaDescription | None = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            kind, eq, value = line.partition("=")
            if not eq or len(kind) != 1:
                raise SdpParseError(f"Bad SDP line: {line[:40]!r}")
            if kind == "v":
                sd.version, seen_version = value, True
            elif kind == "m":
                parts = value.split()
                port = parts[1].partition("/")[0] if len(parts) >= 3 else ""
                if len(parts) < 3 or not is_uint(port, 65535):
                    raise SdpParseError("Bad m= line")
                current = MediaDescription(parts[0].lower(), int(port), parts[2], parts[3:])
                sd.media.append(current)
            elif kind == "c":
                if len(value.split()) != 3:
                    raise SdpParseError("Bad c= line")
                if current is None:
                    sd.connection = value
                else:
                    current.connection = value
            elif kind == "a":
                name, colon, avalue = value.partition(":")
                attr = (name.strip(), avalue.strip() if colon else None)
                (current.attributes if current else sd.attributes).append(attr)
            elif current is not None:
                current.other.append((kind, value))
            elif kind == "o":
                if len(value.split()) != 6:
                    raise SdpParseError("Bad o= line")
                sd.origin = value
            elif kind == "s":
                sd.session_name = value
            elif kind == "t":
                sd.timing.append(value)
            else:
                sd.other.append((kind, value))
        if not seen_version:
            raise SdpParseError("SDP without v= line")
        return sd

    def __str__(self) -> str:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        out += [f"{k}={v}" for k, v in self.other if k in "iuepb"]
        if self.connection:
            out.append(f"c={self.connection}")
        out += [f"t={t}" for t in self.timing or ["0 0"]]
        out += [f"{k}={v}" for k, v in self.other if k not in "iuepb"]
        out += [f"a={n}" if v is None else f"a={n}:{v}" for n, v in self.attributes]
        for m in self.media:
            out += m.lines()
        return "\r\n".join(out) + "\r\n"

    def connection_address(self, media: MediaDescription) -> str | None:
        """The media's c= address, else the session's (RFC 4566 §5.7)."""
        conn = media.connection or self.connection
        return conn.split()[2].partition("/")[0] if conn else None


@dataclass
class AudioAnswer:
    """What was negotiated for the G.711 stream: the SDP text (our answer, or the peer's) and the
    parameters the RTP endpoint needs."""

    sdp: str
    codec: str
    payload_type: int
    remote: tuple[str, int]
    ptime: int = 20
    telephone_event_pt: int | None = None
    direction: str = "sendrecv"


def _addr_type(ip: str) -> str:
    return "IP6" if ":" in ip else "IP4"


def _session(local_ip: str, session_id: int, version: int) -> SessionDescription:
    return SessionDescription(
        origin=f"faxbridge {session_id} {version} IN {_addr_type(local_ip)} {local_ip}",
        session_name="Faxbridge",
        connection=f"IN {_addr_type(local_ip)} {local_ip}",
    )


def _pick_g711(m: MediaDescription) -> tuple[str, str] | None:
    """The first PCMU/PCMA payload type in the offer's preference order, as (pt, codec)."""
    rtpmap = m.rtpmap()
    for pt in m.formats:
        enc = rtpmap.get(pt)
        if enc and enc[0] in G711 and enc[1] == 8000:
            return pt, enc[0]
    return None


def _telephone_event(m: MediaDescription) -> str | None:
    return next(
        (
            pt
            for pt, (name, rate) in m.rtpmap().items()
            if name == "TELEPHONE-EVENT" and rate == 8000 and pt in m.formats
        ),
        None,
    )


def _ptime(m: MediaDescription) -> int:
    value = (m.attr("ptime") or "").strip()
    return int(value) if is_uint(value, 200, min_value=1) else 20


def _usable_audio(m: MediaDescription) -> bool:
    return m.media == "audio" and m.port != 0 and m.proto.upper() in ("RTP/AVP", "RTP/AVPF")


def rejected(m: MediaDescription) -> MediaDescription:
    """An m-line answered with port 0 (RFC 3264 §6): same media, proto and formats."""
    return MediaDescription(m.media, 0, m.proto, list(m.formats) or ["0"])


def answer_audio(
    offer: SessionDescription | str | bytes, local_ip: str, rtp_port: int, session_id: int, version: int
) -> AudioAnswer:
    """Answer an offer accepting the first usable audio stream with PCMU or PCMA.

    Raises NoUsableCodec if there is none; the caller answers 488.
    """
    _, audio, _ = _answer_streams(
        _as_sd(offer), local_ip, session_id, version, rtp_port, None, 0, EC_NONE, DEFAULT_MAX_DATAGRAM, None
    )
    if audio is None:
        raise NoUsableCodec("no PCMU/PCMA audio stream in the offer")
    return audio


def offer_audio(
    local_ip: str,
    rtp_port: int,
    session_id: int,
    version: int,
    codecs: Iterable[str] = ("PCMU", "PCMA"),
    ptime: int = 20,
    telephone_event_pt: int | None = 101,
) -> str:
    """An offer for one G.711 audio stream, codecs in our preference order."""
    sd = _session(local_ip, session_id, version)
    pts = [str(G711[c.upper()]) for c in codecs]
    if not pts:
        raise ValueError("offer_audio needs at least one codec")
    m = MediaDescription("audio", rtp_port, "RTP/AVP", pts)
    for c in codecs:
        m.attributes.append(("rtpmap", f"{G711[c.upper()]} {c.upper()}/8000"))
    if telephone_event_pt is not None:
        m.formats.append(str(telephone_event_pt))
        m.attributes.append(("rtpmap", f"{telephone_event_pt} telephone-event/8000"))
        m.attributes.append(("fmtp", f"{telephone_event_pt} 0-15"))
    m.attributes += [("ptime", str(ptime)), ("sendrecv", None)]
    sd.media.append(m)
    return str(sd)


def parse_answer(text: str | bytes | SessionDescription) -> AudioAnswer:
    """Read the peer's answer to our offer_audio: the accepted G.711 stream and where to send it."""
    sd = text if isinstance(text, SessionDescription) else SessionDescription.parse(text)
    for m in sd.media:
        pick = _pick_g711(m) if _usable_audio(m) else None
        address = sd.connection_address(m)
        if pick and address:
            te = _telephone_event(m)
            return AudioAnswer(
                str(sd),
                pick[1],
                int(pick[0]),
                (address, m.port),
                _ptime(m),
                int(te) if te else None,
                m.direction or "sendrecv",
            )
    raise NoUsableCodec("the answer accepts no PCMU/PCMA audio stream")


# --- T.38 over UDPTL (RFC 4612, T.38 Annex D) ----------------------------------------------------

EC_FEC = "t38UDPFEC"
EC_REDUNDANCY = "t38UDPRedundancy"
EC_NONE = "none"  # no T38FaxUdpEC attribute (or t38UDPNoEC)
_EC_STRENGTH = {EC_NONE: 0, EC_REDUNDANCY: 1, EC_FEC: 2}
_EC_NAMES = {"t38udpfec": EC_FEC, "t38udpredundancy": EC_REDUNDANCY, "t38udpnoec": EC_NONE}
_RATE_NAMES = {"transferredtcf": "transferredTCF", "localtcf": "localTCF"}
DEFAULT_MAX_DATAGRAM = 400  # what a peer that says nothing is assumed to accept (Asterisk too)
MAX_UDPTL_DATAGRAM = 1400
T38_MAX_BITRATE = 14400


@dataclass
class T38Params:
    """The T.38 session parameters of one image stream (offered, answered or agreed).

    udp_ec is EC_FEC, EC_REDUNDANCY or EC_NONE; max_buffer/max_datagram None = not stated.
    ec_depth, fec_max_span and vendor_info are kept when a peer sends them (never negotiated).
    """

    version: int = 0
    max_bitrate: int = T38_MAX_BITRATE
    rate_management: str = "transferredTCF"
    max_buffer: int | None = None
    max_datagram: int | None = None
    udp_ec: str = EC_REDUNDANCY
    fill_bit_removal: bool = False
    transcoding_mmr: bool = False
    transcoding_jbig: bool = False
    ec_depth: str | None = None
    fec_max_span: int | None = None
    vendor_info: str | None = None


@dataclass
class T38Answer:
    """A negotiated T.38 stream: the SDP (our answer, or the peer's), what was agreed, where to
    send UDPTL, and the largest UDPTL datagram the peer accepts (size redundancy to it)."""

    sdp: str
    params: T38Params
    remote: tuple[str, int]
    far_max_datagram: int = DEFAULT_MAX_DATAGRAM


def _int_attr(m: MediaDescription, *names: str) -> int | None:
    for name in names:
        value = (m.attr(name) or "").strip()
        if ascii_digits(value, 9):
            return int(value)
    return None


def _bool_attr(m: MediaDescription, name: str) -> bool:
    """A bare flag is true (RFC 4612); `:0`/`:1` (Vega, T.38 Annex D 2002+) say it explicitly."""
    value = m.attr(name)
    if value is None:
        return False
    return value.strip().lower() not in ("0", "false", "no", "off")


def t38_params(media: MediaDescription) -> T38Params:
    """Read the T.38 attributes of an m=image line; anything unreadable takes its default."""
    m = media
    version = _int_attr(m, "T38FaxVersion")
    ec_value = m.attr("T38FaxUdpEC")
    rate = (m.attr("T38FaxRateManagement") or "").strip()
    vendor = m.attr("T38VendorInfo")
    return T38Params(
        version=min(version, 255) if version is not None else 0,
        max_bitrate=_int_attr(m, "T38MaxBitRate", "T38FaxMaxBitRate") or T38_MAX_BITRATE,
        rate_management=_RATE_NAMES.get(rate.lower(), rate or "transferredTCF"),
        max_buffer=_int_attr(m, "T38FaxMaxBuffer"),
        max_datagram=_int_attr(m, "T38FaxMaxDatagram", "T38MaxDatagram"),
        udp_ec=EC_NONE if ec_value is None else _EC_NAMES.get(ec_value.strip().lower(), EC_NONE),
        fill_bit_removal=_bool_attr(m, "T38FaxFillBitRemoval"),
        transcoding_mmr=_bool_attr(m, "T38FaxTranscodingMMR"),
        transcoding_jbig=_bool_attr(m, "T38FaxTranscodingJBIG"),
        ec_depth=(m.attr("T38FaxUdpECDepth") or "").strip() or None,
        fec_max_span=_int_attr(m, "T38FaxUdpFECMaxSpan"),
        vendor_info=vendor.strip() if vendor else None,
    )


def _far_max_datagram(params: T38Params) -> int:
    """The peer's T38FaxMaxDatagram; absent, 0 or beyond any UDP datagram -> 400 (as Asterisk)."""
    value = params.max_datagram
    return value if value and value <= MAX_UDPTL_DATAGRAM else DEFAULT_MAX_DATAGRAM


def _usable_image(m: MediaDescription) -> bool:
    return (
        m.media == "image" and m.port != 0 and m.proto.lower() == "udptl" and any(f.lower() == "t38" for f in m.formats)
    )


def _image_media(udptl_port: int, p: T38Params) -> MediaDescription:
    m = MediaDescription("image", udptl_port, "udptl", ["t38"])
    m.attributes += [("T38FaxVersion", str(p.version)), ("T38MaxBitRate", str(p.max_bitrate))]
    for flag, name in (
        (p.fill_bit_removal, "T38FaxFillBitRemoval"),
        (p.transcoding_mmr, "T38FaxTranscodingMMR"),
        (p.transcoding_jbig, "T38FaxTranscodingJBIG"),
    ):
        if flag:
            m.attributes.append((name, None))
    m.attributes.append(("T38FaxRateManagement", p.rate_management))
    if p.max_buffer is not None:
        m.attributes.append(("T38FaxMaxBuffer", str(p.max_buffer)))
    if p.max_datagram is not None:
        m.attributes.append(("T38FaxMaxDatagram", str(p.max_datagram)))
    if p.udp_ec != EC_NONE:
        m.attributes.append(("T38FaxUdpEC", p.udp_ec))
    return m


def _agree_t38(
    offered: T38Params, t38_version: int, max_ec: str, our_max_datagram: int, our_max_buffer: int | None
) -> T38Params:
    """Our answer to `offered`: never more than the offer, never more than we do."""
    ec = min(offered.udp_ec, max_ec, key=lambda e: _EC_STRENGTH.get(e, 0))
    return T38Params(
        version=min(offered.version, t38_version),
        max_bitrate=min(offered.max_bitrate, T38_MAX_BITRATE),
        rate_management=offered.rate_management,
        max_buffer=our_max_buffer,
        max_datagram=our_max_datagram,
        udp_ec=ec,
    )


def _as_sd(sdp: SessionDescription | str | bytes) -> SessionDescription:
    return sdp if isinstance(sdp, SessionDescription) else SessionDescription.parse(sdp)


def _audio_media(
    m: MediaDescription, rtp_port: int, pick: tuple[str, str], address: str
) -> tuple[MediaDescription, AudioAnswer]:
    pt, codec = pick
    te = _telephone_event(m)
    direction = _RECIPROCAL[m.direction or "sendrecv"]
    am = MediaDescription("audio", rtp_port, m.proto, [pt] + ([te] if te else []))
    am.attributes.append(("rtpmap", f"{pt} {codec}/8000"))
    if te:
        am.attributes.append(("rtpmap", f"{te} telephone-event/8000"))
        am.attributes.append(("fmtp", f"{te} {m.fmtp(te) or '0-15'}"))
    ptime = _ptime(m)
    if m.has_attr("ptime"):
        am.attributes.append(("ptime", str(ptime)))
    am.attributes.append((direction, None))
    return am, AudioAnswer("", codec, int(pt), (address, m.port), ptime, int(te) if te else None, direction)


def _answer_streams(
    offer: SessionDescription,
    local_ip: str,
    session_id: int,
    version: int,
    rtp_port: int | None,
    udptl_port: int | None,
    t38_version: int,
    max_ec: str,
    our_max_datagram: int,
    our_max_buffer: int | None,
) -> tuple[str, AudioAnswer | None, T38Answer | None]:
    """Accept the first usable audio stream (if rtp_port) and the first usable T.38 stream (if
    udptl_port); every other m-line is answered with port 0, in the offer's order."""
    answer = _session(local_ip, session_id, version)
    audio: AudioAnswer | None = None
    t38: T38Answer | None = None
    for m in offer.media:
        address = offer.connection_address(m)
        if address and audio is None and rtp_port is not None and _usable_audio(m):
            pick = _pick_g711(m)
            if pick is not None:
                media, audio = _audio_media(m, rtp_port, pick, address)
                answer.media.append(media)
                continue
        if address and t38 is None and udptl_port is not None and _usable_image(m):
            offered = t38_params(m)
            agreed = _agree_t38(offered, t38_version, max_ec, our_max_datagram, our_max_buffer)
            answer.media.append(_image_media(udptl_port, agreed))
            t38 = T38Answer("", agreed, (address, m.port), _far_max_datagram(offered))
            continue
        answer.media.append(rejected(m))
    text = str(answer)
    for result in (audio, t38):
        if result is not None:
            result.sdp = text
    return text, audio, t38


def answer_t38(
    offer: SessionDescription | str | bytes,
    local_ip: str,
    udptl_port: int,
    session_id: int,
    version: int,
    *,
    our_max_datagram: int = DEFAULT_MAX_DATAGRAM,
    t38_version: int = 0,
    max_ec: str = EC_REDUNDANCY,
    our_max_buffer: int | None = None,
) -> T38Answer:
    """Answer an offer accepting its first usable T.38 image stream (every other m-line, audio
    included, gets port 0). The agreed parameters never exceed the offer: version <= offer and
    <= t38_version, bit rate <= offer and <= 14400, rate management echoed, error correction the
    same or weaker (FEC -> redundancy -> none, capped at max_ec), fill-bit removal, MMR and JBIG
    transcoding off (absent). Raises NoUsableCodec if there is no usable image stream."""
    _, _, t38 = _answer_streams(
        _as_sd(offer),
        local_ip,
        session_id,
        version,
        None,
        udptl_port,
        t38_version,
        max_ec,
        our_max_datagram,
        our_max_buffer,
    )
    if t38 is None:
        raise NoUsableCodec("no T.38 (m=image udptl t38) stream in the offer")
    return t38


def offer_t38(local_ip: str, udptl_port: int, session_id: int, version: int, params: T38Params | None = None) -> str:
    """An offer for one T.38 image stream (our re-INVITE to T.38)."""
    sd = _session(local_ip, session_id, version)
    sd.media.append(_image_media(udptl_port, params or T38Params(max_datagram=DEFAULT_MAX_DATAGRAM)))
    return str(sd)


def parse_t38_answer(text: str | bytes | SessionDescription) -> T38Answer:
    """Read the peer's answer to our offer_t38: its T.38 parameters and where to send UDPTL."""
    sd = _as_sd(text)
    for m in sd.media:
        address = sd.connection_address(m)
        if _usable_image(m) and address:
            params = t38_params(m)
            return T38Answer(str(sd), params, (address, m.port), _far_max_datagram(params))
    raise NoUsableCodec("the answer accepts no T.38 stream")


def _maybe_sd(sdp: SessionDescription | str | bytes | None) -> SessionDescription | None:
    if sdp is None or isinstance(sdp, SessionDescription):
        return sdp
    try:
        return SessionDescription.parse(sdp)
    except SdpParseError:
        return None


def has_t38(sdp: SessionDescription | str | bytes | None) -> bool:
    """An m=image udptl t38 line with a port other than 0 (unparsable SDP: False)."""
    sd = _maybe_sd(sdp)
    return sd is not None and any(_usable_image(m) for m in sd.media)


def has_audio(sdp: SessionDescription | str | bytes | None) -> bool:
    """An m=audio RTP/AVP(F) line with a port other than 0 (the codecs are not checked)."""
    sd = _maybe_sd(sdp)
    return sd is not None and any(_usable_audio(m) for m in sd.media)
