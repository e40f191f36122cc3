"""Who may call, and how fast: the peer table, a per-IP token bucket, and the gate that applies
both to out-of-dialog requests before the user agent builds any state for them.

Why before the UA: a scanner or a flood must cost us neither a transaction nor a log line per
datagram. Requests inside a dialog we hold (BYE, re-INVITE, ACK, INFO of a call in progress) are
never limited, so a flood from a gateway's address cannot break its own calls.
"""
from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from ..config import PeerConfig
from .callinfo import answerable, make_response, reply_target, stamp_via
from .digest import DigestServer, VerifyResult
from .errors import SipParseError
from .events import Addr, Local
from .message import SipRequest, parse_message

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: used when no [[sip.peers]] are configured: the appliance's own LAN, never the Internet
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
    "::1/128", "fc00::/7", "fe80::/10",
))


class PeerTable:
    """Maps a caller's source address (and transport) to its [[sip.peers]] entry.

    The most specific network wins (a host entry beats its /24); equal prefixes go by file order.
    A peer restricted to one transport does not match the others, so a less specific entry (or
    nothing) applies there.
    """

    def __init__(self, peers: list[PeerConfig], allow_unknown: bool = False) -> None:
        self.peers = list(peers)
        self.allow_unknown = allow_unknown
        self._nets: list[tuple[Network, int, PeerConfig]] = [
            (ipaddress.ip_network(p.match, strict=False), i, p) for i, p in enumerate(self.peers)]
        self.default_private = not self.peers
        self._private_peer = PeerConfig(name="private-network", match="private", t38="accept")
        self._unknown_peer = PeerConfig(name="unknown", match="any", t38="accept")

    def match(self, ip: str, transport: str) -> PeerConfig | None:
        try:
            addr = ipaddress.ip_address(ip.strip("[]").split("%")[0])
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        best: tuple[int, int, PeerConfig] | None = None
        for net, index, peer in self._nets:
            if addr.version != net.version or addr not in net:
                continue
            if peer.transport and peer.transport != transport.lower():
                continue
            key = (-net.prefixlen, index, peer)
            if best is None or key[:2] < best[:2]:
                best = key
        if best is not None:
            return best[2]
        if self.default_private and any(addr.version == n.version and addr in n for n in PRIVATE_NETWORKS):
            return self._private_peer
        return self._unknown_peer if self.allow_unknown else None

    def describe(self) -> str:
        """One line for the start-up log: who is let in."""
        if self.default_private:
            text = ("SIP: no [[sip.peers]] configured: accepting calls from loopback and private networks "
                    "(RFC 1918, link-local, IPv6 ULA) with t38=accept, refusing public addresses")
            return text if not self.allow_unknown else text.replace("refusing public addresses",
                                                                    "and, as allow_unknown is set, from anyone")
        parts = [f"{p.name}={p.match}" + (f"/{p.transport}" if p.transport else "") + f" t38={p.t38}"
                 + (" (digest)" if p.username else "") for p in self.peers]
        tail = "; allow_unknown: anyone else too (t38=accept)" if self.allow_unknown else "; everyone else refused (403)"
        return "SIP: accepting calls from " + ", ".join(parts) + tail


class RateLimiter:
    """A token bucket per source IP: `rate` tokens a second up to `burst`.

    At most `max_sources` buckets are kept; full (idle) ones are forgotten first, so a spoofed
    source flood cannot grow memory without bound.
    """

    def __init__(self, rate: float = 20.0, burst: int = 40, max_sources: int = 10000) -> None:
        self.rate, self.burst, self.max_sources = rate, float(burst), max_sources
        self._buckets: dict[str, tuple[float, float]] = {}  # ip -> (tokens, last update)

    def allow(self, ip: str, now: float) -> bool:
        tokens, last = self._buckets.get(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        self._buckets[ip] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > self.max_sources:
            self._prune(now)
        return ok

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {ip: v for ip, v in self._buckets.items() if now - v[1] < full_after}
        while len(self._buckets) > self.max_sources:
            self._buckets.pop(next(iter(self._buckets)))


_START_RE = re.compile(rb"^([A-Za-z]+) [^ \r\n]+ SIP/2\.0\r?\n")
_CALL_ID_RE = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.I)
_TO_TAG_RE = re.compile(rb"\n(?:to|t)[ \t]*:[^\r\n]*;[ \t]*tag[ \t]*=", re.I)

Reply = tuple[bytes, Addr]


@dataclass
class Peek:
    """What the gate reads of a request without parsing it."""

    method: str
    call_id: str
    has_to_tag: bool


def peek(data: bytes) -> Peek | None:
    """Start line, Call-ID and whether To carries a tag; None for responses and junk (the UA copes)."""
    m = _START_RE.match(data.lstrip(b"\r\n")[:2048])
    if not m:
        return None
    head = data.split(b"\r\n\r\n", 1)[0][:16384]
    cid = _CALL_ID_RE.search(head)
    return Peek(m.group(1).decode("ascii").upper(), cid.group(1).strip().decode("utf-8", "replace") if cid else "",
                bool(_TO_TAG_RE.search(head)))


class CallGate:
    """Applied by SipEndpoint to every message before the UA sees it.

    `check` returns None to pass the message on, or the replies to send instead ([] = drop
    silently). Order: in-dialog requests pass; ACK passes (it never starts a transaction); then the
    source's token bucket (excess dropped, counted); then an out-of-dialog INVITE needs a peer
    (else 403) and, when that peer has a username, valid digest credentials (else 401).
    Other out-of-dialog requests (OPTIONS, REGISTER...) from unknown sources are dropped: scanners
    learn nothing.
    """

    def __init__(self, peers: PeerTable, limiter: RateLimiter | None = None, digest: DigestServer | None = None,
                 in_dialog: Callable[[str], bool] = lambda call_id: False, server: str = "") -> None:
        self.peers = peers
        self.limiter = limiter or RateLimiter()
        self.digest = digest or DigestServer("faxbridge")
        self.in_dialog = in_dialog
        self.server = server
        self.stats: Counter[str] = Counter()

    def check(self, data: bytes, remote: Addr, local: Local, now: float) -> list[Reply] | None:
        p = peek(data)
        if p is None:
            return None  # a response (matched to our own transactions) or junk the UA drops
        if p.has_to_tag and p.call_id and self.in_dialog(p.call_id):
            return None
        if p.method == "ACK" or (p.method == "CANCEL" and p.call_id and self.in_dialog(p.call_id)):
            return None  # ACKs start no transaction; a CANCEL ends a call we already hold
        if not self.limiter.allow(remote[0], now):
            self.stats["rate_limited"] += 1
            return []
        peer = self.peers.match(remote[0], local.transport)
        if peer is None:
            if p.method != "INVITE":
                self.stats["unknown_dropped"] += 1
                return []
            self.stats["unknown_refused"] += 1
            return self._reply(data, remote, local, 403, "Forbidden")
        if p.method == "INVITE" and not p.has_to_tag and peer.username:
            return self._authenticate(data, remote, local, peer)
        return None

    def _authenticate(self, data: bytes, remote: Addr, local: Local, peer: PeerConfig) -> list[Reply] | None:
        try:
            req = parse_message(data)
        except SipParseError:
            return None  # the UA answers 400 (or drops) as usual
        if not isinstance(req, SipRequest):
            return None
        result = self.digest.verify(req.headers.get("Authorization"), req.method, peer.username, peer.password)
        if result == VerifyResult.OK:
            return None
        self.stats[f"auth_{result}"] += 1
        if result == VerifyResult.FAILED:
            return self._reply(data, remote, local, 403, "Forbidden", req)
        headers = [("WWW-Authenticate", c) for c in self.digest.challenges(stale=result == VerifyResult.STALE)]
        return self._reply(data, remote, local, 401, "Unauthorized", req, headers)

    def _reply(self, data: bytes, remote: Addr, local: Local, status: int, reason: str,
               req: SipRequest | None = None, headers: list[tuple[str, str]] = ()) -> list[Reply]:  # type: ignore[assignment]
        """A stateless final response; the ACK to it is absorbed by the UA (no transaction)."""
        if req is None:
            try:
                msg = parse_message(data)
            except SipParseError as exc:
                msg = exc.partial  # type: ignore[assignment]
            if not isinstance(msg, SipRequest) or not answerable(msg):
                return []
            req = msg
        stamp_via(req, remote)
        tag = f"{abs(hash((req.call_id, req.from_tag))) & 0xFFFFFFFFFFFF:012x}"
        resp = make_response(req, status, reason, tag, headers, b"", self.server)
        return [(bytes(resp), reply_target(req, remote, local))]
