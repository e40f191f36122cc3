"""SDP (RFC 4566) and the offer/answer rules (RFC 3264) for a G.711 fax endpoint.

The parser keeps every line it does not interpret, and media sections of any kind (audio, image
for T.38 over UDPTL, video), so the T.38 answerer can be added next to answer_audio.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .errors import RemoteProtocolError

G711 = {"PCMU": 0, "PCMA": 8}
_STATIC_PT = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_RECIPROCAL = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class SdpParseError(RemoteProtocolError, ValueError):
    """The peer's SDP is malformed (answer 400 or 488)."""


class NoUsableCodec(RemoteProtocolError):
    """No audio stream offers PCMU or PCMA (answer 488 Not Acceptable Here)."""


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
            if pt and name and rate.isdigit():
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
    def parse(cls, text: str | bytes) -> "SessionDescription":
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
                if len(parts) < 3 or not port.isdigit() or int(port) > 65535:
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

    def session_attr(self, name: str) -> str | None:
        values = _find(self.attributes, name)
        return None if not values else (values[0] or "")


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
    return next((pt for pt, (name, rate) in m.rtpmap().items()
                 if name == "TELEPHONE-EVENT" and rate == 8000 and pt in m.formats), None)


def _ptime(m: MediaDescription) -> int:
    value = (m.attr("ptime") or "").strip()
    return int(value) if value.isdigit() and 0 < int(value) <= 200 else 20


def _usable_audio(m: MediaDescription) -> bool:
    return m.media == "audio" and m.port != 0 and m.proto.upper() in ("RTP/AVP", "RTP/AVPF")


def rejected(m: MediaDescription) -> MediaDescription:
    """An m-line answered with port 0 (RFC 3264 §6): same media, proto and formats."""
    return MediaDescription(m.media, 0, m.proto, list(m.formats) or ["0"])


def answer_audio(offer: SessionDescription | str | bytes, local_ip: str, rtp_port: int,
                 session_id: int, version: int) -> AudioAnswer:
    """Answer an offer accepting the first usable audio stream with PCMU or PCMA.

    Raises NoUsableCodec if there is none; the caller answers 488.
    """
    if not isinstance(offer, SessionDescription):
        offer = SessionDescription.parse(offer)
    answer = _session(local_ip, session_id, version)
    chosen: AudioAnswer | None = None
    for m in offer.media:
        pick = _pick_g711(m) if chosen is None and _usable_audio(m) else None
        address = offer.connection_address(m)
        if pick is None or address is None:
            answer.media.append(rejected(m))
            continue
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
        answer.media.append(am)
        chosen = AudioAnswer("", codec, int(pt), (address, m.port), ptime,
                             int(te) if te else None, direction)
    if chosen is None:
        raise NoUsableCodec("no PCMU/PCMA audio stream in the offer")
    chosen.sdp = str(answer)
    return chosen


def offer_audio(local_ip: str, rtp_port: int, session_id: int, version: int,
                codecs: Iterable[str] = ("PCMU", "PCMA"), ptime: int = 20,
                telephone_event_pt: int | None = 101) -> str:
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
            return AudioAnswer(str(sd), pick[1], int(pick[0]), (address, m.port), _ptime(m),
                               int(te) if te else None, m.direction or "sendrecv")
    raise NoUsableCodec("the answer accepts no PCMU/PCMA audio stream")
