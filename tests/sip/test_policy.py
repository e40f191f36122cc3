"""Who may call: peer matching, the private-network default, token buckets, the pre-UA gate."""
from __future__ import annotations

import asyncio
import socket

import pytest

from appliance.config import Config, PeerConfig, RegistrationConfig
from appliance.sip.digest import DigestServer, build_authorization, parse_challenge
from appliance.sip.events import Admission, Local
from appliance.sip.message import SipRequest, SipResponse, parse_message
from appliance.sip.policy import CallGate, ConnectionLimiter, PeerTable, RateLimiter, prescan_call_id
from appliance.sip.registration import ChallengeAnswerer, Registration
from appliance.calls.sip_setup import build_endpoint, peer_table
from appliance.sip.transport import SipEndpoint
from appliance.sip.useragent import UserAgent
from tests.budgets import LOADED, async_wait_until

from sip_helpers import raw

UDP = Local("udp", "192.0.2.1", 5060)
PEER_ADDR = ("192.0.2.50", 5099)


def table(*peers: PeerConfig, allow_unknown: bool = False) -> PeerTable[PeerConfig]:
    return peer_table(list(peers), allow_unknown)


def test_most_specific_match_wins_and_transport_restricts() -> None:
    lan = PeerConfig(name="lan", match="192.0.2.0/24", t38="off")
    gw = PeerConfig(name="gw", match="192.0.2.10", transport="tls", t38="request")
    v6 = PeerConfig(name="v6", match="2001:db8::/32")
    t = table(lan, gw, v6)
    assert t.match("192.0.2.10", "tls") is gw
    assert t.match("192.0.2.10", "udp") is lan  # gw only over TLS: the /24 applies
    assert t.match("192.0.2.99", "TCP") is lan
    assert t.match("2001:db8::5", "udp") is v6
    assert t.match("::ffff:192.0.2.7", "udp") is lan
    assert t.match("198.51.100.1", "udp") is None
    assert t.match("10.0.0.1", "udp") is None  # peers configured: no private default
    assert t.match("not an ip", "udp") is None
    assert "gw=192.0.2.10/tls t38=request" in t.describe() and "refused (403)" in t.describe()


def test_no_peers_means_private_networks_only() -> None:
    t = table()
    for ip in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.1", "169.254.1.1",
               "::1", "fd12::1", "fe80::1"):
        peer = t.match(ip, "udp")
        assert peer is not None and peer.t38 == "accept", ip
    for ip in ("8.8.8.8", "172.32.0.1", "2001:db8::1", "192.0.2.1"):
        assert t.match(ip, "udp") is None, ip
    assert "loopback and private networks" in t.describe() and "refusing public" in t.describe()


def test_allow_unknown_lets_anyone_in_with_accept() -> None:
    t = table(PeerConfig(name="gw", match="192.0.2.10", t38="off"), allow_unknown=True)
    assert t.match("192.0.2.10", "udp").t38 == "off"
    assert t.match("203.0.113.9", "udp").name == "unknown"
    assert "anyone else too" in t.describe()


def test_token_bucket_burst_refill_and_bounded_memory() -> None:
    lim = RateLimiter(rate=2, burst=3, max_sources=100)
    assert [lim.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert lim.allow("b", 0.0)  # per source
    assert not lim.allow("a", 0.2) and lim.allow("a", 0.6)
    for i in range(500):
        lim.allow(f"10.0.{i // 256}.{i % 256}", 100.0 + i)
    assert len(lim._buckets) <= 100


def test_prescan_reads_the_call_id_exactly_as_the_parser_or_not_at_all() -> None:
    assert prescan_call_id(raw("BYE", call_id="c-9@h")) == "c-9@h"
    assert prescan_call_id(raw(replace={"Call-ID": None}, extra=["i: short@h"])) == "short@h"
    assert prescan_call_id(raw(replace={"Call-ID": "  spaced@h \t"})) == "spaced@h"
    folded = raw(replace={"Call-ID": "a@h\r\n b"})
    assert prescan_call_id(folded) is None
    assert prescan_call_id(raw(replace={"Call-ID": "caf\u00e9@h"})) is None
    assert prescan_call_id(b"SIP/2.0 200 OK\r\nCall-ID: r@h\r\n\r\n") == "r@h"
    assert prescan_call_id(b"\x00\xff") is None
    # the body is not the header
    assert prescan_call_id(raw(replace={"Call-ID": None}, body="Call-ID: body@h\r\n")) is None


class Calls:
    """A CallState with fixed answers (the UA's side of the gate, as a table)."""

    def __init__(self, call_ids: set[str] = frozenset(), dialogs: dict[str, tuple[str, int]] | None = None,
                 transactions: set[str] = frozenset(), incoming: dict[str | None, int] | None = None) -> None:
        self.call_ids, self.dialogs, self.transactions = set(call_ids), dict(dialogs or {}), set(transactions)
        self.incoming = incoming or {}

    def knows_call_id(self, call_id: str) -> bool:
        return call_id in self.call_ids or call_id in self.dialogs

    def dialog_remote(self, req: SipRequest) -> tuple[str, int] | None:
        return self.dialogs.get(req.call_id) if req.to_tag else None

    def matches_transaction(self, req: SipRequest) -> bool:
        return req.via.branch in self.transactions

    def incoming_calls(self, peer: str | None = None) -> int:
        return self.incoming.get(peer, 0)


def test_gate_floods_are_dropped_but_dialogs_never() -> None:
    state = Calls(dialogs={"live@peer": PEER_ADDR}, transactions={"z9hG4bKinv"})
    gate = CallGate(table(PeerConfig(name="gw", match="192.0.2.50")), RateLimiter(rate=1, burst=2), state=state)
    results = [gate.check(raw("OPTIONS", branch=f"z9hG4bK{i}"), PEER_ADDR, UDP, 0.0) for i in range(10)]
    assert [r.passed for r in results] == [True, True] + [False] * 8
    assert all(r.replies == [] for r in results[2:]) and gate.stats["rate_limited"] == 8
    bye = raw("BYE", call_id="live@peer", to="<sip:100@192.0.2.1>;tag=x")
    assert gate.check(bye, PEER_ADDR, UDP, 0.0).passed  # in-dialog: never limited
    ack = raw("ACK", call_id="live@peer", to="<sip:1@x>;tag=y", cseq="1 ACK")
    assert gate.check(ack, PEER_ADDR, UDP, 0.0).passed
    # a made-up To tag, an ACK or a CANCEL on an unknown Call-ID does not escape the bucket
    assert gate.check(raw("BYE", call_id="forged", to="<sip:1@x>;tag=y"), PEER_ADDR, UDP, 0.0).reason == "rate_limited"
    assert gate.check(raw("ACK", call_id="other", cseq="1 ACK"), PEER_ADDR, UDP, 0.0).reason == "rate_limited"
    # responses: ours (a known Call-ID) pass, strangers' are dropped
    assert gate.check(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
                      b"To: <sip:a@b>\r\nCall-ID: live@peer\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
                      PEER_ADDR, UDP, 0.0).passed


def test_in_dialog_requests_from_a_stranger_are_dropped_unless_from_the_dialogs_own_address() -> None:
    state = Calls(dialogs={"live@peer": PEER_ADDR})
    gate = CallGate(table(PeerConfig(name="gw", match="192.0.2.50")), state=state)
    bye = raw("BYE", call_id="live@peer", to="<sip:100@192.0.2.1>;tag=x")
    assert not gate.check(bye, ("203.0.113.9", 5060), UDP, 0.0).passed
    assert gate.stats["unknown_dropped"] == 1
    state.dialogs["live@peer"] = ("203.0.113.9", 5060)  # e.g. our own call to a far end that is no peer
    assert gate.check(bye, ("203.0.113.9", 5060), UDP, 0.0).passed


def test_an_ack_from_a_stranger_for_a_peers_dialog_is_dropped_too() -> None:
    """Found by the sip_gate fuzz target: the ACK skipped the rule for in-dialog requests above."""
    state = Calls(dialogs={"live@peer": PEER_ADDR})
    gate = CallGate(table(PeerConfig(name="gw", match="192.0.2.50")), state=state)
    ack = raw("ACK", call_id="live@peer", branch="z9hG4bKack", to="<sip:100@192.0.2.1>;tag=x", cseq="1 ACK")
    assert not gate.check(ack, ("203.0.113.9", 5060), UDP, 0.0).passed
    assert gate.stats["unknown_dropped"] == 1
    assert gate.check(ack, PEER_ADDR, UDP, 0.0).passed
    state.dialogs["live@peer"] = ("203.0.113.9", 5060)  # a dialog set up with that address
    assert gate.check(ack, ("203.0.113.9", 5060), UDP, 0.0).passed


def test_gate_refuses_unknown_invite_with_403_and_drops_unknown_options() -> None:
    gate = CallGate(table(), server="fb")
    out = gate.check(raw("INVITE"), ("203.0.113.7", 5060), UDP, 0.0)
    assert not out.passed and len(out.replies) == 1
    resp = parse_message(out.replies[0][0])
    assert isinstance(resp, SipResponse) and resp.status == 403 and resp.to_tag
    assert out.replies[0][1] == ("203.0.113.7", 5060)  # rport: back where it came from
    no_rport = raw("INVITE", via="SIP/2.0/UDP 198.51.100.99:5060;branch=z9hG4bKrefl")
    out = gate.check(no_rport, ("203.0.113.7", 5062), UDP, 0.0)
    assert out.replies[0][1] == ("203.0.113.7", 5062)  # never reflected to the address a stranger wrote
    assert not gate.check(raw("OPTIONS"), ("203.0.113.7", 5060), UDP, 0.0).replies
    verdict = gate.check(raw("INVITE"), ("10.0.0.8", 5060), UDP, 0.0)  # private default
    assert verdict.passed and verdict.admission == Admission("private-network", "")
    assert gate.stats == {"unknown_refused": 2, "unknown_dropped": 1}


def test_what_cannot_be_parsed_is_dropped_or_from_a_peer_answered_400() -> None:
    gate = CallGate(table(PeerConfig(name="gw", match="192.0.2.50")))
    broken = raw("INVITE", replace={"CSeq": "1 INVITE", "Max-Forwards": "seventy"})
    out = gate.check(broken, PEER_ADDR, UDP, 0.0)
    assert parse_message(out.replies[0][0]).status == 400
    assert gate.check(broken, ("203.0.113.7", 5060), UDP, 0.0).replies == []
    assert gate.check(b"\x16\x03\x01 not sip at all", PEER_ADDR, UDP, 0.0).replies == []
    assert gate.stats == {"malformed_answered": 1, "malformed": 2}


def test_oversized_datagrams_are_dropped_before_any_parse() -> None:
    gate = CallGate(table())
    big = raw("OPTIONS", extra=["X-Pad: " + "a" * 9000])
    assert gate.check(big, PEER_ADDR, UDP, 0.0).reason == "oversize"
    assert gate.check(big, PEER_ADDR, Local("tcp", "192.0.2.1", 5060), 0.0).reason != "oversize"


def test_capacity_503_for_the_box_and_for_one_peer() -> None:
    gw = PeerConfig(name="gw", match="192.0.2.50", max_calls=2)
    state = Calls(incoming={None: 3, "gw": 2})
    gate = CallGate(table(gw, PeerConfig(name="pbx", match="192.0.2.60")), state=state, max_calls=4)
    out = gate.check(raw("INVITE"), PEER_ADDR, UDP, 0.0)
    resp = parse_message(out.replies[0][0])
    assert (resp.status, resp.headers.get("Retry-After"), out.reason) == (503, "10", "peer_max_calls")
    assert gate.check(raw("INVITE"), ("192.0.2.60", 5060), UDP, 0.0).admission == Admission("pbx")
    state.incoming[None] = 4
    assert gate.check(raw("INVITE"), ("192.0.2.60", 5060), UDP, 0.0).reason == "max_calls"
    state.transactions.add("z9hG4bKraw1")  # a retransmission of an INVITE we hold is no new call
    assert gate.check(raw("INVITE"), ("192.0.2.60", 5060), UDP, 0.0).passed


def test_connection_limiter_total_and_per_address() -> None:
    lim = ConnectionLimiter(total=3, per_address=2)
    assert [lim.admit("a"), lim.admit("a"), lim.admit("a")] == [True, True, False]
    assert lim.admit("b") and not lim.admit("c")
    lim.release("a")
    assert lim.admit("c") and lim.open == 3
    assert lim.stats == {"connections_refused_address": 1, "connections_refused_total": 1}


class Clock:
    t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def test_gate_challenges_a_peer_with_credentials() -> None:
    peer = PeerConfig(name="gw", match="192.0.2.50", username="gw", password="pw")
    gate = CallGate(table(peer), digest=DigestServer("faxbridge"))
    out = gate.check(raw("INVITE"), PEER_ADDR, UDP, 0.0)
    resp = parse_message(out.replies[0][0])
    assert resp.status == 401
    challenges = [parse_challenge(v) for v in resp.headers.get_all("WWW-Authenticate")]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]

    def invite_with(password: str, branch: str, nc: int = 1) -> bytes:
        value = build_authorization(challenges[0], "gw", password, "INVITE", "sip:100@192.0.2.1", nc, "cn")
        return raw("INVITE", branch=branch, cseq="2 INVITE", extra=[f"Authorization: {value}"])

    assert gate.check(invite_with("pw", "z9hG4bKa"), PEER_ADDR, UDP, 1.0).admission == Admission("gw", "gw")
    assert parse_message(gate.check(invite_with("bad", "z9hG4bKb", 2), PEER_ADDR, UDP, 1.0).replies[0][0]).status == 403
    stale = parse_message(gate.check(invite_with("pw", "z9hG4bKc", 3), PEER_ADDR, UDP, 3600.0).replies[0][0])
    assert stale.status == 401 and "stale=true" in stale.headers.get("WWW-Authenticate")
    # re-INVITEs inside a call we hold are not challenged again; with a made-up tag they go to the UA (481)
    gate.state = Calls(dialogs={"raw-1@peer": PEER_ADDR})
    reinvite = gate.check(raw("INVITE", to="<sip:100@192.0.2.1>;tag=t"), PEER_ADDR, UDP, 3601.0)
    assert reinvite.passed and reinvite.admission is None


# --- the gate in SipEndpoint, and the daemon's wiring ---------------------------------------------

async def _gate_on_udp() -> None:
    # only 127.0.0.2 may call: our socket on 127.0.0.1 is an unknown caller
    gate = CallGate(table(PeerConfig(name="other", match="127.0.0.2")), RateLimiter(rate=1, burst=3))
    ep = SipEndpoint(gate=gate)
    await ep.start([("udp", "127.0.0.1", 0)])
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        me, dest = sock.getsockname()[1], ("127.0.0.1", ep.locals[0].port)
        via = f"SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKg1;rport"
        await loop.sock_sendto(sock, raw("INVITE", via=via), dest)
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), LOADED)
        assert parse_message(data).status == 403
        for i in range(10):  # OPTIONS from an unknown source, then a flood: all silent
            await loop.sock_sendto(sock, raw("OPTIONS", via=via.replace("g1", f"o{i}")), dest)
        # every one judged first (however slow the machine), then: nothing came back
        await async_wait_until(lambda: gate.stats["rate_limited"] + gate.stats["unknown_dropped"] >= 10,
                               "the endpoint judged the 10 OPTIONS")
        await asyncio.sleep(0.05)  # an answer would have been sent while each was judged
        with pytest.raises(BlockingIOError):
            sock.recv(65535)
        assert gate.stats["rate_limited"] == 8 and gate.stats["unknown_dropped"] == 2
        assert ep.ua.stats["internal_errors"] == 0 and not ep.ua._server_txs
        assert ep.security_stats() == {"unknown_refused": 1, "unknown_dropped": 2, "rate_limited": 8}
    finally:
        sock.close()
        await ep.close()


def test_gate_in_the_endpoint_answers_403_and_drops_floods() -> None:
    asyncio.run(_gate_on_udp())


def test_build_endpoint_from_config() -> None:
    cfg = Config.from_dict({"sip": {"peers": [{"name": "gw", "match": "192.0.2.0/24", "t38": "request"}],
                                    "registrations": [{"registrar": "sip:127.0.0.1:5080", "user": "u",
                                                       "password": "pw"}]}})
    ua = UserAgent()
    ep, peers = build_endpoint(cfg, ua)
    assert ep.gate is not None and ep.gate.peers is peers and ep.tls is None
    assert peers.match("192.0.2.7", "udp").t38 == "request"
    assert ep.gate.state is ua and ep.gate.max_calls == 24 and ep.conn_limiter.total == 128
    assert isinstance(ua.challenge_hook, ChallengeAnswerer)


class Resends:
    def __init__(self) -> None:
        self.resent: list[tuple[str, list[tuple[str, str]]]] = []

    def __call__(self, call_id: str, request: SipRequest, extra: list, now: float) -> None:
        self.resent.append((call_id, extra))


def test_challenge_answerer_answers_only_its_registrars_own_realm() -> None:
    reg = Registration(RegistrationConfig(registrar="sip:pbx.example", user="v", password="x"),
                       Local("udp", "192.0.2.1", 5060))
    reg.remote = ("192.0.2.70", 5060)
    resend = Resends()
    hook = ChallengeAnswerer(lambda: [reg], resend)
    bye = SipRequest("BYE", "sip:5551000@pbx.example", [("CSeq", "2 BYE")])
    challenge = SipResponse(407, "Proxy Auth", [("Proxy-Authenticate", 'Digest realm="r", nonce="n", qop="auth"')])
    pbx = ("192.0.2.70", 5060)
    assert not hook("c1", bye, pbx, challenge, pbx, 0.0)  # the registrar never challenged us: no realm known
    reg.realms.add("r")
    assert not hook("c1", bye, ("198.51.100.1", 5060), challenge, ("198.51.100.1", 5060), 0.0)  # elsewhere
    assert not hook("c1", bye, pbx, challenge, ("198.51.100.1", 5060), 0.0)  # the 407 came from someone else
    other_realm = SipResponse(407, "Proxy Auth", [("Proxy-Authenticate", 'Digest realm="evil", nonce="n"')])
    assert not hook("c1", bye, pbx, other_realm, pbx, 0.0)
    assert hook("c1", bye, pbx, challenge, pbx, 0.0)
    [(call_id, extra)] = resend.resent
    assert call_id == "c1" and extra[0][0] == "Proxy-Authorization" and 'username="v"' in extra[0][1]
    bye.headers.add("Proxy-Authorization", extra[0][1])
    assert not hook("c1", bye, pbx, challenge, pbx, 0.0)  # refused credentials are final


def test_a_bug_in_the_gate_drops_the_message_counts_it_and_logs_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Calls):
        def matches_transaction(self, req: SipRequest) -> bool:
            raise RuntimeError("a bug of ours")

    gate = CallGate(table(PeerConfig(name="gw", match="192.0.2.50")), state=Broken())
    with caplog.at_level("ERROR", logger="faxbridge.sip.policy"):
        verdicts = [gate.check(raw("OPTIONS", branch=f"z9hG4bK{i}"), PEER_ADDR, UDP, float(i)) for i in range(30)]
    assert not any(v.passed or v.replies for v in verdicts)
    assert gate.stats["internal_error"] == 30 and len(caplog.records) == 1


def test_the_appliances_own_test_call_gets_in_once_by_its_pass_and_nothing_else_does() -> None:
    """[[sip.peers]] that leave out this machine still let the box's own test fax in: the INVITE
    carrying the one-time secret, from loopback or the listener's own address, once, in time."""
    from appliance.sip.policy import SELF_TEST_HEADER

    gate = CallGate(table(PeerConfig(name="gw", match="192.0.2.50")), server="fb")
    lo, here = ("127.0.0.1", 40000), Local("udp", "127.0.0.1", 5060)

    def invite(secret: str | None, call_id: str) -> bytes:
        return raw("INVITE", call_id=call_id, extra=[f"{SELF_TEST_HEADER}: {secret}"] if secret else [])

    assert gate.check(invite(None, "a@lo"), lo, here, 0.0).reason == "unknown_refused"  # no pass out
    secret = gate.self_test.issue(0.0, 60.0)
    assert gate.check(invite(None, "b@lo"), lo, here, 1.0).reason == "unknown_refused"  # loopback alone: no
    assert gate.check(invite("x" + secret[1:], "c@lo"), lo, here, 1.0).reason == "unknown_refused"
    far = gate.check(invite(secret, "d@far"), ("203.0.113.7", 5060), UDP, 1.0)  # the secret from elsewhere
    assert far.reason == "unknown_refused"
    ok = gate.check(invite(secret, "e@lo"), lo, here, 2.0)
    assert ok.passed and ok.admission == Admission("self-test", "", self_test=True)
    assert gate.self_test.admitted("e@lo") and not gate.self_test.admitted("d@far")
    assert gate.check(invite(secret, "f@lo"), lo, here, 3.0).reason == "unknown_refused"  # once only
    # on the listener's own (non-loopback) address, before the pass expires
    lan = Local("udp", "192.0.2.1", 5060)
    secret = gate.self_test.issue(10.0, 60.0)
    assert gate.check(invite(secret, "g@lan"), ("192.0.2.1", 40000), lan, 71.0).reason == "unknown_refused"
    secret = gate.self_test.issue(100.0, 60.0)
    assert gate.check(invite(secret, "h@lan"), ("192.0.2.1", 40000), lan, 101.0).admission.self_test
    secret = gate.self_test.issue(200.0, 60.0)
    gate.self_test.revoke()
    assert gate.check(invite(secret, "i@lo"), lo, here, 201.0).reason == "unknown_refused"
    assert not gate.self_test.admitted("h@lan")  # revoked: the daemon no longer vouches for it


def test_a_self_test_admission_is_checked_again_by_the_daemon() -> None:
    """The daemon opens media for a self-test call only when the pass admitted exactly that call."""
    from appliance.daemon import admission_refusal
    from appliance.sip.events import IncomingCall
    from appliance.calls.sip_setup import SELF_TEST_PEER
    from appliance.sip.policy import SELF_TEST_HEADER, SelfTestPass

    own = SelfTestPass()

    def call(call_id: str) -> IncomingCall:
        req = parse_message(raw("INVITE", call_id=call_id, extra=[f"{SELF_TEST_HEADER}: {secret}"]))
        return IncomingCall(call_id, req, None, "test", "", "test", ("127.0.0.1", 40000),
                            Local("udp", "127.0.0.1", 5060), admission=Admission("self-test", "", self_test=True))

    secret = own.issue(0.0, 60.0)
    assert admission_refusal(call("c@lo"), SELF_TEST_PEER, 0, 4, own)[0] == 403  # the pass let nothing in
    assert own.admit(call("c@lo").request, ("127.0.0.1", 40000), Local("udp", "127.0.0.1", 5060), 1.0)
    assert admission_refusal(call("c@lo"), SELF_TEST_PEER, 0, 4, own) is None
    assert admission_refusal(call("other@lo"), SELF_TEST_PEER, 0, 4, own)[0] == 403
    assert admission_refusal(call("c@lo"), SELF_TEST_PEER, 0, 4, None)[0] == 403  # no gate: no pass
    assert admission_refusal(call("c@lo"), SELF_TEST_PEER, 4, 4, own)[0] == 503
