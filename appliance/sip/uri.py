"""SIP URIs, Via values and name-addr values (RFC 3261 §19.1, §20.10, §20.42).

Parsed strictly enough to route and match on, leniently enough for real gateways. Everything
raises SipParseError (the peer's fault) on bad input.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from appliance.sip.errors import SipParseError

_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9.])?$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")

Params = dict[str, "str | None"]


def is_token(text: str) -> bool:
    """True when `text` is an RFC 3261 token (method names, header names, tags)."""
    return bool(_TOKEN_RE.match(text))


def split_quoted(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes and <...>, so commas in display names survive."""
    if '"' not in text and "<" not in text:  # the common case, without a Python loop per character
        return text.split(sep)
    parts: list[str] = []
    buf: list[str] = []
    in_quote = escaped = False
    depth = 0
    for ch in text:
        if in_quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return parts


def parse_params(text: str) -> Params:
    """Parse ';name=value;flag' (leading ';' optional); names are lower-cased."""
    params: Params = {}
    for item in split_quoted(text, ";"):
        item = item.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not is_token(name):
            raise SipParseError("Bad parameter")
        params[name] = value.strip() if eq else None
    return params


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _parse_hostport(text: str) -> tuple[str, int | None]:
    """Parse host[:port] with IPv6 references in brackets; the host keeps its brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("Bad host")
        host, rest = text[: end + 1], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SipParseError("Bad host") from None
    else:
        host, _, port_text = text.partition(":")
        rest = ":" + port_text if _ else ""
        if not _HOSTNAME_RE.match(host):
            raise SipParseError("Bad host")
    if not rest:
        return host, None
    if not rest.startswith(":") or not _PORT_RE.match(rest[1:]) or not 0 < int(rest[1:]) < 65536:
        raise SipParseError("Bad port")
    return host, int(rest[1:])


def host_address(host: str) -> str:
    """The host as a socket address string (IPv6 brackets removed)."""
    return host[1:-1] if host.startswith("[") else host


def format_host(host: str) -> str:
    """Bracket a bare IPv6 address for use in a URI or Via."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass
class SipUri:
    """A sip:, sips: or tel: URI. For tel: the number is in `user` and `host` is empty."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    password: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips", "tel"):
            raise SipParseError("Unsupported URI scheme", status=416)
        rest, _, hdrs = rest.partition("?")
        headers: dict[str, str] = {}
        for item in filter(None, hdrs.split("&")):
            name, _, value = item.partition("=")
            headers[name] = value
        if scheme == "tel":
            number, _, ptext = rest.partition(";")
            if not number or any(c in number for c in ' <>"@'):
                raise SipParseError("Bad URI")
            return cls(scheme, number, "", None, parse_params(ptext), headers)
        user: str | None = None
        password: str | None = None
        if "@" in rest:
            userinfo, _, rest = rest.partition("@")
            user, _, pw = userinfo.partition(":")
            password = pw if _ else None
            if not user or any(c in user for c in ' <>"'):
                raise SipParseError("Bad URI")
        hostport, _, ptext = rest.partition(";")
        host, port = _parse_hostport(hostport)
        return cls(scheme, user, host, port, parse_params(ptext), headers, password)

    def __str__(self) -> str:
        if self.scheme == "tel":
            text = f"tel:{self.user}"
        else:
            userinfo = ""
            if self.user is not None:
                userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
            text = f"{self.scheme}:{userinfo}{self.host}" + (f":{self.port}" if self.port else "")
        text += format_params(self.params)
        if self.headers:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.headers.items())
        return text

    @property
    def transport(self) -> str:
        """The transport the URI asks for (lower case); udp unless said otherwise (or sips)."""
        return (self.params.get("transport") or ("tls" if self.scheme == "sips" else "udp")).lower()


_VIA_RE = re.compile(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;\s]+)\s*(;.*)?$", re.S)


@dataclass
class Via:
    """One Via value: transport, sent-by (host, port) and parameters (branch, rport, received)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA_RE.match(text.strip())
        if not m:
            raise SipParseError("Bad Via")
        try:
            host, port = _parse_hostport(m.group(2))
            params = parse_params(m.group(3) or "")
        except SipParseError:
            raise SipParseError("Bad Via") from None
        return cls(m.group(1).upper(), host, port, params)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        """host:port with the transport's default port filled in, for transaction matching."""
        default = 5061 if self.transport == "TLS" else 5060
        return f"{self.host.lower()}:{self.port or default}"


def parse_name_addr(text: str) -> tuple[str, str, Params]:
    """Parse a From/To/Contact style value into (display name, URI text, header parameters).

    Without angle brackets, parameters after the URI belong to the header (RFC 3261 §20.10).
    """
    text = text.strip()
    display = ""
    if text.startswith('"'):
        i, chars = 1, []
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            chars.append(text[i])
            i += 1
        if i >= len(text):
            raise SipParseError("Bad name-addr")
        display, text = "".join(chars), text[i + 1 :].lstrip()
        if not text.startswith("<"):
            raise SipParseError("Bad name-addr")
    elif "<" in text:
        idx = text.index("<")
        display, text = text[:idx].strip(), text[idx:]
    if text.startswith("<"):
        end = text.find(">")
        if end < 0:
            raise SipParseError("Bad name-addr")
        uri, rest = text[1:end].strip(), text[end + 1 :]
    else:
        uri, _, rest = text.partition(";")
        uri, rest = uri.strip(), ";" + rest if _ else ""
    if ":" not in uri or any(c in uri for c in ' <>"'):
        raise SipParseError("Bad name-addr")
    rest = rest.strip()
    if rest and not rest.startswith(";"):
        raise SipParseError("Bad name-addr")
    return display, uri, parse_params(rest)


def format_name_addr(display: str, uri: str, params: Params | None = None) -> str:
    """Inverse of parse_name_addr; always uses angle brackets."""
    name = ""
    if display:
        escaped = display.replace("\\", "\\\\").replace('"', '\\"')
        name = f'"{escaped}" '
    return f"{name}<{uri}>{format_params(params or {})}"
