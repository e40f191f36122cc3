"""The SIP call gate against the one parser (appliance/sip/policy.py vs message.parse_message).

Input: byte 0 configures the gate (bit 0: peer "gw" must authenticate with digest; bit 1:
allow_unknown; bit 2: no [[sip.peers]] at all, so private networks are the peers; bits 3-5:
sip.max_calls; bits 6-7: gw's max_calls), byte 1 the per-source token bucket (rate, burst), byte 2
its max_sources (1-8).  Then records: a control byte (bit 0: TCP, else UDP; bit 1: the message is
padded with spaces past MAX_DATAGRAM; bit 2: the user agent forgets every call first), a source
byte (0: gw, 1: pbx, 2: a stranger, 3: loopback, 4: gw as IPv4-mapped IPv6, 5: an IPv6 stranger,
else 198.51.100.<n>), 2 bytes of milliseconds the clock moves on (0xFFFF: a day), 2 bytes of
length and the message.  In a message "@NONCE@" becomes a nonce the gate issued and "@RESPONSE@"
the right digest response for gw's password, so the fuzzer reaches the authenticated path.  The
user agent behind the gate is a small fake CallState that remembers what the gate admitted (the
Call-ID, the INVITE's branch, its source), as the real one does.

Contract, for every message:
- prescan_call_id is None or equals parse_message(data).call_id when that parses;
- check never raises and the gate never counts an internal_error (a bug of its own it swallowed);
- what the parser refuses never passes (at most a 400, 505 or 513 answers a peer); what passes
  is exactly the parsed message, never a datagram over MAX_DATAGRAM;
- a new INVITE passes only with an Admission naming the peer its source matches, authenticated
  as that peer's username when it has one, under sip.max_calls and the peer's max_calls; nothing
  else carries an Admission;
- from a source that is no peer, a request passes only when the user agent holds its transaction
  or its dialog was set up with that address; a response passes only on a Call-ID of ours, and
  replies go only to the source's own address;
- the per-source tables (both token buckets, the digest nonce counts) stay within their caps.
"""
from __future__ import annotations

import logging

from appliance.config import PeerConfig
from appliance.sip.digest import ALGORITHMS, DigestServer, parse_auth_params, response_digest
from appliance.sip.errors import SipParseError
from appliance.sip.events import Addr, Local
from appliance.sip.message import MAX_DATAGRAM, SipRequest, SipResponse, parse_message
from appliance.calls.sip_setup import peer_table
from appliance.sip.policy import CallGate, RateLimiter, prescan_call_id

MAX_LEN = 8192
DICTS = ("sip", "digest", "_text")

GW, PBX = ("192.0.2.50", 5099), ("192.0.2.60", 5060)
SOURCES: tuple[Addr, ...] = (GW, PBX, ("203.0.113.9", 5060), ("127.0.0.1", 5062), ("::ffff:192.0.2.50", 5099),
                             ("2001:db8::9", 5060))
USER, PASSWORD = "gw", "pw"
_KEY = b"k" * 32
#: calls the fake user agent remembers at most (the real one is bounded by sip.max_calls)
_CALLS = 64


class _Calls:
    """The user agent as the gate sees it: what was admitted, by Call-ID, with its INVITE's branch."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[Addr, str, str | None]] = {}  # call_id -> (source, peer, branch)

    def knows_call_id(self, call_id: str) -> bool:
        return call_id in self.calls

    def dialog_remote(self, req: SipRequest) -> Addr | None:
        call = self.calls.get(req.call_id)
        return call[0] if call is not None and req.to_tag else None

    def matches_transaction(self, req: SipRequest) -> bool:
        call = self.calls.get(req.call_id)
        return call is not None and call[2] is not None and req.via.branch == call[2]

    def incoming_calls(self, peer: str | None = None) -> int:
        return sum(1 for _, name, _ in self.calls.values() if peer is None or name == peer)

    def admitted(self, req: SipRequest, remote: Addr, peer: str) -> None:
        self.calls[req.call_id] = (remote, peer, req.via.branch)
        while len(self.calls) > _CALLS:
            self.calls.pop(next(iter(self.calls)))


class _Log(logging.Handler):
    """Keeps the gate's internal-error tracebacks, so a finding shows where the gate broke."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


_log = _Log()


def _source(index: int) -> Addr:
    return SOURCES[index] if index < len(SOURCES) else (f"198.51.100.{index}", 5060)


def _fill_credentials(data: bytes, digest: DigestServer, now: float) -> bytes:
    """The placeholders replaced: a nonce of ours, and the response gw's password gives."""
    if b"@NONCE@" in data:
        data = data.replace(b"@NONCE@", digest.nonce(now).encode())
    if b"@RESPONSE@" not in data:
        return data
    try:
        msg = parse_message(data)
        _, _, rest = (msg.headers.get("Authorization") or "").strip().partition(" ")
        p = parse_auth_params(rest.replace("@RESPONSE@", ""))
    except SipParseError:
        return data
    algorithm = p.get("algorithm", "MD5").upper()
    if not isinstance(msg, SipRequest) or algorithm not in ALGORITHMS:
        return data
    try:
        response = response_digest(algorithm, USER, digest.realm, PASSWORD, msg.method, p.get("uri", ""),
                                   p.get("nonce", ""), p.get("nc", ""), p.get("cnonce", ""), p.get("qop", ""))
    except UnicodeEncodeError:
        return data
    return data.replace(b"@RESPONSE@", response.encode())


def _gate(config: bytes, clock: list[float], state: _Calls) -> CallGate:
    flags, bucket, sources = config
    gw = PeerConfig(name="gw", match=GW[0], username=USER if flags & 1 else "",
                    password=PASSWORD if flags & 1 else "", max_calls=flags >> 6)
    pbx = PeerConfig(name="pbx", match="192.0.2.56/29", transport="udp")
    peers = peer_table([] if flags & 4 else [gw, pbx], allow_unknown=bool(flags & 2))
    limiter = RateLimiter(rate=1 + (bucket & 0x0F), burst=1 + (bucket >> 4), max_sources=1 + sources % 8)
    digest = DigestServer("faxbridge", key=_KEY)
    return CallGate(peers, limiter, digest, state=state, server="fuzz", max_calls=flags >> 3 & 7,
                    global_limiter=RateLimiter(rate=5, burst=10, max_sources=4))


def _check_one(gate: CallGate, state: _Calls, data: bytes, remote: Addr, local: Local, now: float) -> None:
    call_id = prescan_call_id(data)
    try:
        parsed: SipRequest | SipResponse | None = parse_message(data)
    except SipParseError as e:
        parsed, refused = None, e
    if parsed is not None:
        assert call_id is None or call_id == parsed.call_id, (call_id, parsed.call_id)
    peer = gate.peers.match(remote[0], local.transport)
    ours = parsed is not None and state.knows_call_id(parsed.call_id)
    dialog = state.dialog_remote(parsed) if isinstance(parsed, SipRequest) else None
    knew = isinstance(parsed, SipRequest) and (state.matches_transaction(parsed)
                                               or (dialog is not None and dialog[0] == remote[0]))
    calls, peer_calls = state.incoming_calls(), state.incoming_calls(peer.name if peer else None)
    errors = len(_log.records)

    verdict = gate.check(data, remote, local, now)

    assert gate.stats["internal_error"] == 0 and len(_log.records) == errors, _log.records[errors:]
    assert len(verdict.replies) <= 1, verdict.replies
    for reply, dest in verdict.replies:
        assert reply.startswith(b"SIP/2.0 "), reply[:80]
        assert peer is not None or dest == remote, (dest, remote)
    if parsed is None:
        assert not verdict.passed and verdict.admission is None, verdict
        assert not verdict.replies or (peer is not None and refused.status == int(verdict.replies[0][0][8:11])), verdict
        return
    if not verdict.passed:
        assert verdict.admission is None
        return
    assert local.transport != "udp" or len(data) <= MAX_DATAGRAM
    assert type(verdict.message) is type(parsed) and bytes(verdict.message) == bytes(parsed), (verdict.message, parsed)
    msg = verdict.message
    if isinstance(msg, SipResponse):
        assert ours and verdict.admission is None, msg
        return
    assert isinstance(msg, SipRequest)
    new_call = msg.method == "INVITE" and msg.to_tag is None and not state.matches_transaction(msg)
    if verdict.admission is not None:
        assert new_call and peer is not None, (msg, peer)
        assert verdict.admission.peer == peer.name and verdict.admission.authenticated == peer.username, (
            verdict.admission, peer)
        assert not gate.max_calls or calls < gate.max_calls, (calls, gate.max_calls)
        assert not peer.max_calls or peer_calls < peer.max_calls, (peer_calls, peer.max_calls)
        state.admitted(msg, remote, peer.name)
        return
    assert not new_call, msg
    if peer is None:
        assert knew, (msg, remote)
    if msg.method == "BYE" and state.dialog_remote(msg) is not None:
        state.calls.pop(msg.call_id, None)  # the call ends


def TestOneInput(data: bytes) -> None:
    if len(data) < 3:
        return
    logger = logging.getLogger("faxbridge.sip.policy")
    logger.addHandler(_log)  # for this input only: the corpus replay runs inside pytest
    try:
        _run(data)
    finally:
        logger.removeHandler(_log)
        _log.records.clear()


def _run(data: bytes) -> None:
    clock = [0.0]
    state = _Calls()
    gate = _gate(data[:3], clock, state)
    i = 3
    while i + 6 <= len(data):
        control, source = data[i], data[i + 1]
        step = int.from_bytes(data[i + 2:i + 4], "big")
        n = int.from_bytes(data[i + 4:i + 6], "big")
        message, i = data[i + 6:i + 6 + n], i + 6 + n
        clock[0] += 86400.0 if step == 0xFFFF else step / 1000
        if control & 4:
            state.calls.clear()
        message = _fill_credentials(message, gate.digest, clock[0])
        if control & 2:
            message += b" " * (MAX_DATAGRAM + 1 - len(message))
        local = Local("tcp" if control & 1 else "udp", "192.0.2.1", 5060)
        _check_one(gate, state, message, _source(source), local, clock[0])
        assert len(gate.limiter._buckets) <= gate.limiter.max_sources, len(gate.limiter._buckets)
        assert len(gate.global_limiter._buckets) <= gate.global_limiter.max_sources
        assert len(gate.digest._nc) <= 4096
