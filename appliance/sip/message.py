"""SIP messages: an ordered case-insensitive header multi-dict, requests, responses, the parser.

The parser is defensive: peers are gateways with firmware bugs and the occasional scanner. Every
failure raises SipParseError with a reason fit for a reason phrase and the part that was readable,
so the user agent can still answer 400 when Via, From, To, Call-ID and CSeq were intact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TypeAlias

from appliance.sip.errors import SipParseError
from appliance.sip.framing import KeepAlive, StreamFramer
from appliance.sip.uri import SipUri, Via, format_name_addr, is_token, parse_name_addr, split_quoted
from appliance.strictnum import ascii_digits, is_uint

__all__ = [
    "Headers",
    "SipRequest",
    "SipResponse",
    "SipMessage",
    "SipParseError",
    "parse_message",
    "SipUri",
    "Via",
    "parse_name_addr",
    "format_name_addr",
    "StreamFramer",
    "KeepAlive",
    "canonical_name",
    "MAX_MESSAGE_SIZE",
    "MAX_DATAGRAM",
    "MAX_HEADERS",
    "MAX_VALUES",
    "MAX_LINE_LENGTH",
    "CALL_ID_RE",
]

#: the largest message on a stream (TCP/TLS); real fax INVITEs, Exchange UM's included, are 1-4 KB
MAX_MESSAGE_SIZE = 16384
#: the largest UDP datagram looked at (RFC 3261 §18.1.1 wants anything near the MTU on TCP anyway)
MAX_DATAGRAM = 8192
#: header fields per message, and values of one comma-separated header (Via, Route, Contact...):
#: a gateway sends ~20 fields and a Via per proxy; 1300 Via values were once a 11 ms parse
MAX_HEADERS = 100
MAX_VALUES = 32
MAX_LINE_LENGTH = 8192
#: RFC 3261 §25.1 callid = word ["@" word]: printable ASCII, no white space; 256 is plenty
CALL_ID_RE = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]{1,256}(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]{1,256})?"
)

COMPACT_FORMS = {
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "v": "Via",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
}
_SPECIAL_NAMES = {
    name.lower(): name
    for name in (
        "Call-ID",
        "CSeq",
        "WWW-Authenticate",
        "MIME-Version",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "RAck",
        "RSeq",
        "SIP-ETag",
        "SIP-If-Match",
        "Min-SE",
    )
}
# Values of these may be comma-joined on one line; they are stored one value per entry.
_MULTI_VALUE = {"Via", "Contact", "Route", "Record-Route"}
_SINGLE_VALUE = ("Call-ID", "CSeq", "From", "To", "Content-Length", "Max-Forwards")

_START_REQUEST = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (SIP/\d+\.\d+)$")
_START_RESPONSE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?$")
_CSEQ_RE = re.compile(r"^([0-9]{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)$")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(rb"\r?\n")


def canonical_name(name: str) -> str:
    """'call-id', 'i' and 'CALL-ID' all become 'Call-ID'."""
    lower = name.strip().lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    if lower in _SPECIAL_NAMES:
        return _SPECIAL_NAMES[lower]
    return "-".join(part.capitalize() for part in lower.split("-"))


class Headers:
    """Ordered multi-dict of header fields; names are matched case-insensitively and compact forms
    are expanded, so callers always use the full names."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name)
        return next((v for n, v in self._items if n == key), default)

    def get_all(self, name: str) -> list[str]:
        key = canonical_name(name)
        return [v for n, v in self._items if n == key]

    def get_list(self, name: str) -> list[str]:
        """All comma-separated items of a header (Allow, Supported, Require...)."""
        return [p.strip() for v in self.get_all(name) for p in split_quoted(v, ",") if p.strip()]

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), str(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` by one, keeping the position of the first."""
        key = canonical_name(name)
        for i, (n, _) in enumerate(self._items):
            if n == key:
                self._items[i] = (key, str(value))
                self._items[i + 1 :] = [(n2, v2) for n2, v2 in self._items[i + 1 :] if n2 != key]
                return
        self._items.append((key, str(value)))

    def set_all(self, name: str, values: Iterable[str]) -> None:
        """Replace every value of `name` by `values`, at the position of the first."""
        key = canonical_name(name)
        index = next((i for i, (n, _) in enumerate(self._items) if n == key), len(self._items))
        rest = [(n, v) for n, v in self._items[index:] if n != key]
        self._items[index:] = [(key, str(v)) for v in values] + rest

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [(n, v) for n, v in self._items if n != key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        return Headers(self._items)


class _Message:
    """Common part of requests and responses: headers, body and the fields every layer reads."""

    def __init__(self, headers: Headers | Iterable[tuple[str, str]] = (), body: bytes | str = b"") -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body.encode("utf-8") if isinstance(body, str) else bytes(body)

    def _serialise(self, start_line: str) -> bytes:
        lines = [start_line]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, method = (self.headers.get("CSeq") or "0 ?").split(None, 1)
        return int(number), method.strip()

    @property
    def via(self) -> Via:
        """The top Via."""
        return Via.parse(self.headers.get_all("Via")[0])

    @property
    def from_tag(self) -> str | None:
        return parse_name_addr(self.headers.get("From") or "")[2].get("tag")

    @property
    def to_tag(self) -> str | None:
        return parse_name_addr(self.headers.get("To") or "")[2].get("tag")


class SipRequest(_Message):
    def __init__(
        self, method: str, uri: str, headers: Headers | Iterable[tuple[str, str]] = (), body: bytes | str = b""
    ) -> None:
        super().__init__(headers, body)
        self.method, self.uri = method, str(uri)

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.method} {self.uri} SIP/2.0")

    def __repr__(self) -> str:
        return f"SipRequest({self.method!r}, {self.uri!r}, {self.headers!r}, {self.body!r})"


class SipResponse(_Message):
    def __init__(
        self, status: int, reason: str, headers: Headers | Iterable[tuple[str, str]] = (), body: bytes | str = b""
    ) -> None:
        super().__init__(headers, body)
        self.status, self.reason = status, reason

    def __bytes__(self) -> bytes:
        return self._serialise(f"SIP/2.0 {self.status} {self.reason}")

    def __repr__(self) -> str:
        return f"SipResponse({self.status!r}, {self.reason!r}, {self.headers!r}, {self.body!r})"


SipMessage: TypeAlias = SipRequest | SipResponse


def _parse_start_line(raw: bytes) -> tuple[SipMessage, bool]:
    """The empty message of the start line, and whether its SIP version is one we speak."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("Bad start line") from None
    m = _START_RESPONSE.match(line)
    if m:
        return SipResponse(int(m.group(1)), m.group(2) or ""), True
    m = _START_REQUEST.match(line)
    if not m or ":" not in m.group(2) or "\x00" in line:
        raise SipParseError("Bad start line")
    return SipRequest(m.group(1), m.group(2)), m.group(3) == "SIP/2.0"


#: the white space SIP folds and trims (RFC 3261 LWS); str.strip() would also eat \x1c-\x1f, \x85
#: and U+2028, which bytes(msg) then writes back differently
_LWS = " \t"


def _parse_header_lines(lines: list[bytes], msg: SipMessage) -> str | None:
    """Fill msg.headers from raw lines (folding undone); return the first problem found, if any.

    Bad lines are skipped rather than fatal, so the partial message keeps every readable header.
    """
    error: str | None = None
    fields: list[list[str]] = []
    for raw in lines:
        if len(raw) > MAX_LINE_LENGTH:
            error = error or "Header line too long"
            continue
        if b"\x00" in raw:
            error = error or "NUL byte in header"
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            error = error or "Invalid UTF-8 in header"
            continue
        if line[:1] in (" ", "\t"):
            if not fields:
                error = error or "Malformed header line"
            else:
                fields[-1][1] = (fields[-1][1] + " " + line.strip(_LWS)).strip(_LWS)
            continue
        name, colon, value = line.partition(":")
        if not colon or not is_token(name.strip(_LWS)):
            error = error or "Malformed header line"
            continue
        if len(fields) >= MAX_HEADERS:
            error = error or "Too many headers"
            break
        fields.append([name.strip(_LWS), value.strip(_LWS)])
    counts: dict[str, int] = {}
    for name, value in fields:
        cname = canonical_name(name)
        if cname in _MULTI_VALUE:
            for part in split_quoted(value, ","):
                if not part.strip(_LWS):
                    continue
                counts[cname] = counts.get(cname, 0) + 1
                if counts[cname] > MAX_VALUES:
                    return error or f"Too many {cname} values"
                msg.headers.add(cname, part.strip(_LWS))
        else:
            msg.headers.add(cname, value)
    return error


def _check_required(msg: SipMessage) -> None:
    h = msg.headers
    for name in _SINGLE_VALUE:
        if len(set(h.get_all(name))) > 1:
            raise SipParseError(f"Duplicate {name}", msg)
    vias = h.get_all("Via")
    if not vias:
        raise SipParseError("Missing Via", msg)
    for via in vias:
        Via.parse(via)  # raises "Bad Via"
    for name in ("From", "To"):
        value = h.get(name)
        if value is None:
            raise SipParseError(f"Missing {name}", msg)
        try:
            parse_name_addr(value)
        except SipParseError:
            raise SipParseError(f"Bad {name}", msg) from None
    call_id = h.get("Call-ID")
    if not call_id:
        raise SipParseError("Missing Call-ID", msg)
    if not CALL_ID_RE.fullmatch(call_id):
        raise SipParseError("Bad Call-ID", msg)
    cseq = h.get("CSeq")
    if cseq is None:
        raise SipParseError("Missing CSeq", msg)
    m = _CSEQ_RE.match(cseq)
    if not m or int(m.group(1)) >= 2**31:
        raise SipParseError("Bad CSeq", msg)
    if isinstance(msg, SipRequest) and m.group(2) != msg.method:
        raise SipParseError("CSeq method mismatch", msg)
    max_forwards = h.get("Max-Forwards")
    if max_forwards is not None and not is_uint(max_forwards, 255):
        raise SipParseError("Bad Max-Forwards", msg)


def parse_message(data: bytes) -> SipMessage:
    """Parse one complete message (a UDP datagram, or a frame cut by StreamFramer).

    Bytes beyond Content-Length are ignored (RFC 3261 §18.3 for datagrams).
    """
    data = data.lstrip(b"\r\n")
    m = _HEAD_END.search(data)
    head, body = (data[: m.start()], data[m.end() :]) if m else (data, b"")
    lines = _LINE_SPLIT.split(head)
    msg, version_ok = _parse_start_line(lines[0][: MAX_LINE_LENGTH + 1])
    error = _parse_header_lines(lines[1:], msg)
    if not version_ok:
        raise SipParseError("Version Not Supported", msg, status=505)
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("Message Too Large", msg, status=513)
    if error:
        raise SipParseError(error, msg)
    _check_required(msg)
    length_text = msg.headers.get("Content-Length")
    if length_text is not None:
        if not ascii_digits(length_text, 9):
            raise SipParseError("Bad Content-Length", msg)
        length = int(length_text)
        if length > len(body):
            raise SipParseError("Content-Length mismatch", msg)
        body = body[:length]
    msg.body = body
    return msg
