"""Who may call: peer matching, the private-network default, token buckets, the pre-UA gate."""
from __future__ import annotations

import asyncio
import socket

import pytest

from appliance.config import Config, PeerConfig, RegistrationConfig
from appliance.sip.digest import DigestServer, build_authorization, parse_challenge
from appliance.sip.events import Local
from appliance.sip.message import SipRequest, SipResponse, parse_message
from appliance.sip.policy import CallGate, PeerTable, RateLimiter, peek
from appliance.sip.setup import ChallengeAnswerer, build_endpoint
from appliance.sip.transport import SipEndpoint
from appliance.sip.useragent import UserAgent

from sip_helpers import raw

UDP = Local("udp", "192.0.2.1", 5060)


def table(*peers: PeerConfig, allow_unknown: bool = False) -> PeerTable:
    return PeerTable(list(peers), allow_unknown)


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


def test_peek_reads_requests_only() -> None:
    p = peek(raw("BYE", to="<sip:100@192.0.2.1>;tag=abc", call_id="c-9"))
    assert p is not None and p.method == "BYE" and p.call_id == "c-9" and p.has_to_tag
    assert not peek(raw("INVITE")).has_to_tag
    assert peek(b"SIP/2.0 200 OK\r\n\r\n") is None and peek(b"\x00\xff") is None


PEER_ADDR = ("192.0.2.50", 5099)


def test_gate_floods_are_dropped_but_dialogs_never() -> None:
    calls = {"live@peer"}
    gate = CallGate(table(PeerConfig(name="gw", match="192.0.2.50")), RateLimiter(rate=1, burst=2),
                    in_dialog=calls.__contains__)
    results = [gate.check(raw("OPTIONS", branch=f"z9hG4bK{i}"), PEER_ADDR, UDP, 0.0) for i in range(10)]
    assert results[:2] == [None, None] and all(r == [] for r in results[2:])
    assert gate.stats["rate_limited"] == 8
    bye = raw("BYE", call_id="live@peer", to="<sip:100@192.0.2.1>;tag=x")
    assert gate.check(bye, PEER_ADDR, UDP, 0.0) is None  # in-dialog: never limited
    assert gate.check(raw("ACK", call_id="other", to="<sip:1@x>;tag=y"), PEER_ADDR, UDP, 0.0) is None
    assert gate.check(raw("CANCEL", call_id="live@peer"), PEER_ADDR, UDP, 0.0) is None
    # a made-up To tag on an unknown Call-ID does not escape the bucket
    assert gate.check(raw("BYE", call_id="forged", to="<sip:1@x>;tag=y"), PEER_ADDR, UDP, 0.0) == []
    assert gate.check(b"SIP/2.0 200 OK\r\n\r\n", PEER_ADDR, UDP, 0.0) is None


def test_gate_refuses_unknown_invite_with_403_and_drops_unknown_options() -> None:
    gate = CallGate(table(), server="fb")
    out = gate.check(raw("INVITE"), ("203.0.113.7", 5060), UDP, 0.0)
    assert out is not None and len(out) == 1
    resp = parse_message(out[0][0])
    assert isinstance(resp, SipResponse) and resp.status == 403 and resp.to_tag
    assert out[0][1] == ("203.0.113.7", 5060)  # rport: back where it came from
    assert gate.check(raw("OPTIONS"), ("203.0.113.7", 5060), UDP, 0.0) == []
    assert gate.check(raw("INVITE"), ("10.0.0.8", 5060), UDP, 0.0) is None  # private default
    assert gate.stats == {"unknown_refused": 1, "unknown_dropped": 1}


class Clock:
    t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def test_gate_challenges_a_peer_with_credentials() -> None:
    clock = Clock()
    peer = PeerConfig(name="gw", match="192.0.2.50", username="gw", password="pw")
    gate = CallGate(table(peer), digest=DigestServer("faxbridge", clock=clock))
    out = gate.check(raw("INVITE"), PEER_ADDR, UDP, 0.0)
    resp = parse_message(out[0][0])
    assert resp.status == 401
    challenges = [parse_challenge(v) for v in resp.headers.get_all("WWW-Authenticate")]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]

    def invite_with(password: str, branch: str, nc: int = 1) -> bytes:
        value = build_authorization(challenges[0], "gw", password, "INVITE", "sip:100@192.0.2.1", nc, "cn")
        return raw("INVITE", branch=branch, cseq="2 INVITE", extra=[f"Authorization: {value}"])

    assert gate.check(invite_with("pw", "z9hG4bKa"), PEER_ADDR, UDP, 1.0) is None
    assert parse_message(gate.check(invite_with("bad", "z9hG4bKb", 2), PEER_ADDR, UDP, 1.0)[0][0]).status == 403
    clock.t += 3600
    stale = parse_message(gate.check(invite_with("pw", "z9hG4bKc", 3), PEER_ADDR, UDP, 2.0)[0][0])
    assert stale.status == 401 and "stale=true" in stale.headers.get("WWW-Authenticate")
    # re-INVITEs inside the call are not challenged again
    assert gate.check(raw("INVITE", to="<sip:100@192.0.2.1>;tag=t"), PEER_ADDR, UDP, 3.0) is None


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
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), 5)
        assert parse_message(data).status == 403
        for i in range(10):  # OPTIONS from an unknown source, then a flood: all silent
            await loop.sock_sendto(sock, raw("OPTIONS", via=via.replace("g1", f"o{i}")), dest)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), 0.3)
        assert gate.stats["rate_limited"] == 8 and gate.stats["unknown_dropped"] == 2
        assert ep.ua.stats["internal_errors"] == 0 and not ep.ua._server_txs
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
    assert ep.gate.in_dialog("nope") is False


class FakeUA:
    def __init__(self) -> None:
        self.resent: list[tuple[str, list[tuple[str, str]]]] = []

    def resend_request(self, call_id: str, request: SipRequest, extra: list, now: float) -> None:
        self.resent.append((call_id, extra))


def test_challenge_answerer_resends_once_with_the_account_of_that_host() -> None:
    ua = FakeUA()
    hook = ChallengeAnswerer(ua, [RegistrationConfig(registrar="sip:127.0.0.1:5080", user="u", password="pw"),
                                  RegistrationConfig(registrar="sip:pbx.example", user="v", password="x")])
    bye = SipRequest("BYE", "sip:5551000@pbx.example", [("CSeq", "2 BYE")])
    challenge = SipResponse(407, "Proxy Auth", [("Proxy-Authenticate", 'Digest realm="r", nonce="n", qop="auth"')])
    assert hook("c1", bye, challenge, 0.0)
    [(call_id, extra)] = ua.resent
    assert call_id == "c1" and extra[0][0] == "Proxy-Authorization" and 'username="v"' in extra[0][1]
    bye.headers.add("Proxy-Authorization", extra[0][1])
    assert not hook("c1", bye, challenge, 0.0)  # refused credentials are final
    unknown = SipRequest("INVITE", "sip:1@198.51.100.1", [("CSeq", "1 INVITE")])
    assert not hook("c2", unknown, challenge, 0.0)  # two accounts, neither for this host
