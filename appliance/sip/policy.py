"""Who may call, and how fast: the peer table, token buckets, connection limits, and the call gate
that every message passes before the user agent builds any state for it.

Theory of operation. The gate sees each datagram or stream frame as bytes and decides with the
one SIP parser (message.parse_message); nothing here reads SIP with a regex. Before that full
parse, only two cheap things happen: a size cap, and a bounded scan for the Call-ID
(`prescan_call_id`) that tells traffic of our own calls and transactions (never limited, so a
flood from a gateway's address cannot break its own calls) from everything else, which pays a
token from its source's bucket and from a global one first. The scan grants nothing by itself:
a message let through on its Call-ID must carry exactly that Call-ID once parsed, and every
decision after that (in dialog or new, which peer, authenticated, capacity) is made on the
parsed message. What cannot be parsed or classified is dropped (or, from a peer, answered 400).

Verdicts: a new INVITE needs a peer (else 403), valid digest credentials when that peer has a
username (else 401/403), and room under sip.max_calls and the peer's max_calls (else 503 with
Retry-After); it is handed on with an `Admission` that the daemon checks again.  The one
exception to "needs a peer" is the appliance's own test call (`SelfTestPass`): a one-time secret
the daemon hands to the test-fax sender it starts, accepted once, from this machine only, for a
few minutes, whatever the peer table says.  Requests from
sources that are no peer are dropped silently (scanners learn nothing), in-dialog requests too
unless they come from a peer or from the address the dialog was set up with.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypedDict, TypeVar

from appliance.sip.callinfo import answerable, make_response, reply_target, stamp_via
from appliance.sip.digest import DigestServer, VerifyResult
from appliance.sip.errors import SipParseError
from appliance.sip.events import Addr, Admission, Local
from appliance.sip.message import CALL_ID_RE, MAX_DATAGRAM, SipMessage, SipRequest, SipResponse, parse_message

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: used when no [[sip.peers]] are configured: the appliance's own LAN, never the Internet
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)


class PeerRule(Protocol):
    """What the gate reads of a peer (a [[sip.peers]] entry; the application's config passes its
    own dataclass, which carries more for the call itself)."""

    @property
    def name(self) -> str: ...
    @property
    def match(self) -> str: ...  # an IP address or network
    @property
    def transport(self) -> str: ...  # "" = any
    @property
    def t38(self) -> str: ...  # only shown in describe()
    @property
    def username(self) -> str: ...  # set: its INVITEs need digest credentials
    @property
    def password(self) -> str: ...
    @property
    def max_calls(self) -> int: ...  # 0 = only the gate's max_calls


P = TypeVar("P", bound=PeerRule)


class PeerTable(Generic[P]):
    """Maps a caller's source address (and transport) to its [[sip.peers]] entry.

    The most specific network wins (a host entry beats its /24); equal prefixes go by file order.
    A peer restricted to one transport does not match the others, so a less specific entry (or
    nothing) applies there. Callers that match no entry but are let in anyway (no peers
    configured: the private networks; allow_unknown: anyone) get an implicit peer made by
    `implicit(name, match)`, named "private-network" or "unknown".
    """

    def __init__(self, peers: Sequence[P], allow_unknown: bool = False, *, implicit: Callable[[str, str], P]) -> None:
        self.peers = list(peers)
        self.allow_unknown = allow_unknown
        self._nets: list[tuple[Network, int, P]] = [
            (ipaddress.ip_network(p.match, strict=False), i, p) for i, p in enumerate(self.peers)
        ]
        self.default_private = not self.peers
        self._private_peer = implicit("private-network", "private")
        self._unknown_peer = implicit("unknown", "any")

    def match(self, ip: str, transport: str) -> P | None:
        try:
            addr = ipaddress.ip_address(ip.strip("[]").split("%")[0])
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        best: tuple[int, int, P] | None = None
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
            text = (
                "SIP: no [[sip.peers]] configured: accepting calls from loopback and private networks "
                "(RFC 1918, link-local, IPv6 ULA) with t38=accept, refusing public addresses"
            )
            return (
                text
                if not self.allow_unknown
                else text.replace("refusing public addresses", "and, as allow_unknown is set, from anyone")
            )
        parts = [
            f"{p.name}={p.match}"
            + (f"/{p.transport}" if p.transport else "")
            + f" t38={p.t38}"
            + (" (digest)" if p.username else "")
            for p in self.peers
        ]
        tail = (
            "; allow_unknown: anyone else too (t38=accept)" if self.allow_unknown else "; everyone else refused (403)"
        )
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


Reply = tuple[bytes, Addr]

#: seconds a caller that found sip.max_calls (or its peer's) full is asked to wait
RETRY_AFTER = 10
#: an internal error is logged with its traceback at most this often (the rest are counted)
ERROR_LOG_INTERVAL = 60.0
log = logging.getLogger("faxbridge.sip.policy")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(rb"\r?\n")
_CALL_ID_NAMES = (b"call-id", b"i")


def prescan_call_id(data: bytes) -> str | None:
    """The Call-ID exactly as parse_message will read it, or None when in any doubt.

    Cheap (one bounded pass over the header), and safe to be wrong only one way: a None makes the
    message pay its source's token, a value is checked against the parsed message."""
    m = _HEAD_END.search(data)
    head = data[: m.start()] if m else data
    lines = _LINE_SPLIT.split(head.lstrip(b"\r\n"))
    for i in range(1, len(lines)):
        name, colon, value = lines[i].partition(b":")
        if not colon or name.strip(b" \t").lower() not in _CALL_ID_NAMES or name[:1] in (b" ", b"\t"):
            continue
        if i + 1 < len(lines) and lines[i + 1][:1] in (b" ", b"\t"):
            return None  # folded onto the next line
        try:
            text = value.strip(b" \t").decode("ascii")
        except UnicodeDecodeError:
            return None
        return text if CALL_ID_RE.fullmatch(text) else None
    return None


#: the INVITE header that carries a SelfTestPass's secret
SELF_TEST_HEADER = "X-Faxbridge-Self-Test"
#: the environment variable that hands the secret to the test-fax sender the daemon starts
SELF_TEST_ENV = "FAXBRIDGE_SELF_TEST"
#: the peer name a self-test call is admitted and recorded under (its line is "sip:self-test")
SELF_TEST_PEER_NAME = "self-test"


def is_own_address(ip: str, local: Local) -> bool:
    """Loopback, or the very address the message arrived on: a sender on this machine."""
    try:
        addr = ipaddress.ip_address(ip.strip("[]").split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return True
    try:
        return addr == ipaddress.ip_address(local.host.strip("[]").split("%")[0])
    except ValueError:
        return False


class SelfTestPass:
    """Admits exactly one call: the test fax the appliance sends itself (the wizard's and the
    control socket's ``test-fax``), even when [[sip.peers]] leaves this machine out.

    ``issue`` makes a random secret that only the daemon and the sender it starts know (handed
    over in the child's environment, never on a command line); the gate admits the first INVITE
    that carries it in ``X-Faxbridge-Self-Test``, from loopback or the listener's own address,
    before the pass expires, and then forgets the secret.  The daemon asks ``admitted`` for the
    call's Call-ID before it opens a media port (the gate's word is checked again)."""

    def __init__(self) -> None:
        self._secret: str | None = None
        self._until = 0.0
        self._admitted: str | None = None

    def issue(self, now: float, lifetime: float) -> str:
        """A new secret for the next test call (a previous, unused one stops working)."""
        self._secret = secrets.token_urlsafe(24)
        self._until = now + lifetime
        self._admitted = None
        return self._secret

    def revoke(self) -> None:
        """The test is over: no call may use the secret any more."""
        self._secret = None
        self._admitted = None

    def pending(self, ip: str, local: Local, now: float) -> bool:
        """A secret is out and ``ip`` could be its sender (lets its TCP connection in)."""
        return self._secret is not None and now <= self._until and is_own_address(ip, local)

    def admit(self, req: SipRequest, remote: Addr, local: Local, now: float) -> bool:
        """True (once) for the INVITE that carries the secret from this machine."""
        offered = req.headers.get(SELF_TEST_HEADER)
        if not offered or self._secret is None or not self.pending(remote[0], local, now):
            return False
        if not hmac.compare_digest(offered.encode("utf-8", "replace"), self._secret.encode()):
            return False
        self._secret = None  # one call per pass
        self._admitted = req.call_id
        return True

    def admitted(self, call_id: str) -> bool:
        """Whether this Call-ID is the one call the current pass let in."""
        return self._admitted is not None and hmac.compare_digest(self._admitted, call_id)


class CallState(Protocol):
    """What the gate asks the user agent (UserAgent implements it)."""

    def knows_call_id(self, call_id: str) -> bool: ...
    def dialog_remote(self, req: SipRequest) -> Addr | None: ...
    def matches_transaction(self, req: SipRequest) -> bool: ...
    def incoming_calls(self, peer: str | None = None) -> int: ...


class _NoCalls:
    def knows_call_id(self, call_id: str) -> bool:
        return False

    def dialog_remote(self, req: SipRequest) -> Addr | None:
        return None

    def matches_transaction(self, req: SipRequest) -> bool:
        return False

    def incoming_calls(self, peer: str | None = None) -> int:
        return 0


@dataclass
class Verdict:
    """The gate's decision on one message: pass `message` to the UA (with `admission` for a new
    INVITE), or send `replies` instead (none: dropped). `reason` names a refusal for the stats."""

    message: SipMessage | None = None
    admission: Admission | None = None
    replies: list[Reply] = field(default_factory=list)
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.message is not None


class CallGate:
    """Applied by SipEndpoint to every message before the UA sees it (see the module docstring).

    `stats` counts every refusal by reason; they reach the status page and /metrics."""

    def __init__(
        self,
        peers: PeerTable[Any],
        limiter: RateLimiter | None = None,
        digest: DigestServer | None = None,
        *,
        state: CallState | None = None,
        server: str = "",
        max_calls: int = 0,
        global_limiter: RateLimiter | None = None,
    ) -> None:
        self.peers = peers
        self.limiter = limiter or RateLimiter()
        #: every source together: a flood from spoofed addresses still meets a ceiling
        self.global_limiter = global_limiter or RateLimiter(
            rate=self.limiter.rate * 10, burst=int(self.limiter.burst * 10)
        )
        self.digest = digest or DigestServer("faxbridge")
        self.state: CallState = state or _NoCalls()
        self.server = server
        self.max_calls = max_calls
        self.stats: Counter[str] = Counter()
        self._last_error_log = float("-inf")
        #: the appliance's own test call, let in whatever the peer table says
        self.self_test = SelfTestPass()

    def check(self, data: bytes, remote: Addr, local: Local, now: float) -> Verdict:
        """Never raises: a bug here drops the message and is counted as internal_error."""
        try:
            verdict = self._check(data, remote, local, now)
        except Exception:  # logged below: the listener must outlive any one message
            verdict = Verdict(reason="internal_error")
            if now - self._last_error_log >= ERROR_LOG_INTERVAL:  # a traceback a minute, not a packet
                self._last_error_log = now
                log.exception(
                    "SIP gate: internal error on a message from %s (dropped; further ones for %.0f s only counted)",
                    remote,
                    ERROR_LOG_INTERVAL,
                )
        if verdict.reason:
            self.stats[verdict.reason] += 1
        return verdict

    def _check(self, data: bytes, remote: Addr, local: Local, now: float) -> Verdict:
        if local.transport == "udp" and len(data) > MAX_DATAGRAM:
            return Verdict(reason="oversize")
        call_id = prescan_call_id(data)
        ours = call_id is not None and self.state.knows_call_id(call_id)
        if not ours:
            if not self.limiter.allow(remote[0], now):
                return Verdict(reason="rate_limited")
            if not self.global_limiter.allow("*", now):
                return Verdict(reason="rate_limited_global")
        peer = self.peers.match(remote[0], local.transport)
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            return self._malformed(exc, remote, local, peer)
        if ours and msg.call_id != call_id:
            return Verdict(reason="unclassified")  # cannot happen unless prescan and parser disagree
        if isinstance(msg, SipResponse):
            return Verdict(msg) if ours else Verdict(reason="stray_response")
        return self._request(msg, remote, local, now, peer)

    def _request(self, req: SipRequest, remote: Addr, local: Local, now: float, peer: PeerRule | None) -> Verdict:
        dialog = self.state.dialog_remote(req) if req.to_tag else None
        # a dialog's requests come from a peer or from the address the dialog was set up with
        ours = dialog is not None and (peer is not None or dialog[0] == remote[0])
        if req.method == "ACK":
            if ours or self.state.matches_transaction(req):
                return Verdict(req)
            if dialog is not None:
                return Verdict(reason="unknown_dropped")  # a stranger's ACK for someone else's dialog
            return Verdict(reason="stray_ack")  # e.g. for a stateless 401/403 of ours
        if req.to_tag:
            if ours:
                return Verdict(req)
            if peer is None:
                return Verdict(reason="unknown_dropped")
            return Verdict(req)  # the UA answers 481 (or 405...)
        if self.state.matches_transaction(req):
            return Verdict(req)  # a retransmission, or a CANCEL for an INVITE we hold
        if req.method == "INVITE" and self.self_test.admit(req, remote, local, now):
            if self.max_calls and self.state.incoming_calls() >= self.max_calls:
                return self._busy(req, remote, local, "max_calls")
            return Verdict(req, Admission(SELF_TEST_PEER_NAME, "", self_test=True))
        if peer is None:
            if req.method != "INVITE":
                return Verdict(reason="unknown_dropped")
            return self._reply(req, remote, local, 403, "Forbidden", reason="unknown_refused", to_source=True)
        if req.method != "INVITE":
            return Verdict(req)
        authenticated = ""
        if peer.username:
            result = self.digest.verify(req.headers.get("Authorization"), req.method, peer.username, peer.password, now)
            if result == VerifyResult.FAILED:
                return self._reply(req, remote, local, 403, "Forbidden", reason="auth_failed")
            if result != VerifyResult.OK:
                stale = result == VerifyResult.STALE
                headers = [("WWW-Authenticate", c) for c in self.digest.challenges(now, stale=stale)]
                return self._reply(req, remote, local, 401, "Unauthorized", headers, reason=f"auth_{result}")
            authenticated = peer.username
        if self.max_calls and self.state.incoming_calls() >= self.max_calls:
            return self._busy(req, remote, local, "max_calls")
        if peer.max_calls and self.state.incoming_calls(peer.name) >= peer.max_calls:
            return self._busy(req, remote, local, "peer_max_calls")
        return Verdict(req, Admission(peer.name, authenticated))

    def _busy(self, req: SipRequest, remote: Addr, local: Local, reason: str) -> Verdict:
        return self._reply(
            req, remote, local, 503, "Service Unavailable", [("Retry-After", str(RETRY_AFTER))], reason=reason
        )

    def _malformed(self, exc: SipParseError, remote: Addr, local: Local, peer: PeerRule | None) -> Verdict:
        """A peer's broken request that names enough to be answered gets 400 (or 505, 513);
        anything else is dropped: an unknown source learns nothing."""
        partial = exc.partial
        if peer is None or not isinstance(partial, SipRequest) or partial.method == "ACK" or not answerable(partial):
            return Verdict(reason="malformed")
        return self._reply(partial, remote, local, exc.status, exc.reason, reason="malformed_answered")

    def _reply(
        self,
        req: SipRequest,
        remote: Addr,
        local: Local,
        status: int,
        reason_phrase: str,
        headers: list[tuple[str, str]] | None = None,
        *,
        reason: str,
        to_source: bool = False,
    ) -> Verdict:
        """A stateless final response; the ACK to it is dropped as a stray ACK. An unknown source
        is answered only at its own address (never at a Via it wrote: no reflection)."""
        stamp_via(req, remote)
        tag = f"{abs(hash((req.call_id, req.from_tag))) & 0xFFFFFFFFFFFF:012x}"
        resp = make_response(req, status, reason_phrase, tag, headers or [], b"", self.server)
        dest = remote if to_source else reply_target(req, remote, local)
        return Verdict(replies=[(bytes(resp), dest)], reason=reason)

    def status(self) -> GateStatus:
        """What the gate refused so far, by reason, and the capacity it enforces."""
        return GateStatus(refused=dict(self.stats), max_calls=self.max_calls)


class GateStatus(TypedDict):
    refused: dict[str, int]
    max_calls: int


class ConnectionLimiter:
    """Accepted TCP/TLS connections: at most `total`, and `per_address` from one IP.

    Sans-I/O bookkeeping; the transport asks `admit` when a connection arrives (before any TLS
    handshake) and calls `release` when it goes."""

    def __init__(self, total: int = 128, per_address: int = 16) -> None:
        self.total, self.per_address = total, per_address
        self._by_ip: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return sum(self._by_ip.values())

    def admit(self, ip: str) -> bool:
        if self.open >= self.total:
            self.stats["connections_refused_total"] += 1
            return False
        if self._by_ip[ip] >= self.per_address:
            self.stats["connections_refused_address"] += 1
            return False
        self._by_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        if self._by_ip[ip] <= 1:
            self._by_ip.pop(ip, None)
        else:
            self._by_ip[ip] -= 1
