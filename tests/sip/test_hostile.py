"""The SIP side as an attacker on the LAN meets it: built from a configuration exactly as the daemon
builds it (build_endpoint), listening on loopback, probed with raw datagrams and connections.

Each test reproduces one finding of issue 10 and failed on the code before its fix.
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import AsyncIterator, Callable

import pytest

from appliance.config import Config
from appliance.sip import transport as sip_transport
from appliance.sip import useragent as sip_useragent
from appliance.sip.digest import DigestServer, build_authorization, parse_challenge
from appliance.sip.events import CallEnded, CallFailed, IncomingCall
from appliance.sip.message import SipRequest, SipResponse, parse_message
from appliance.sip.sdp import offer_audio
from appliance.calls.sip_setup import build_endpoint
from appliance.sip.transport import SipEndpoint
from appliance.sip.useragent import UserAgent

from sip_helpers import raw
from tests.conftest import free_port
from tests.budgets import LOADED, async_wait_until

TIMEOUT = LOADED
GW, STRANGER, REGISTRAR = "127.0.0.2", "127.0.0.3", "127.0.0.4"
OFFER = offer_audio("127.0.0.2", 40000, 1, 1)


@contextlib.asynccontextmanager
async def box(sip: dict) -> AsyncIterator[SipEndpoint]:
    """The appliance's SIP endpoint for `[sip]` = `sip` on 127.0.0.1 (UDP and TCP, one free port)."""
    port = free_port()
    cfg = Config.from_dict({"sip": {"listen": [f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"], **sip}})
    ep, _ = build_endpoint(cfg, UserAgent())
    await ep.start([(l.transport, l.host, l.port) for l in cfg.sip.listeners()])
    try:
        yield ep
    finally:
        await ep.close()


class Udp:
    """A raw UDP SIP client bound to one loopback address."""

    def __init__(self, ip: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.setblocking(False)
        self.addr = self.sock.getsockname()

    def via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {self.addr[0]}:{self.addr[1]};branch={branch};rport"

    async def send(self, data: bytes, ep: SipEndpoint) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, data, ("127.0.0.1", ep.locals[0].port))

    async def recv(self, timeout: float = TIMEOUT) -> SipRequest | SipResponse | None:
        """The next message, skipping 100 Trying; None when nothing came within `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), max(0.01, deadline - loop.time()))
            except asyncio.TimeoutError:
                return None
            msg = parse_message(data)
            if not (isinstance(msg, SipResponse) and msg.status == 100):
                return msg

    def waiting(self) -> bool:
        """Whether a datagram has come (without taking it)."""
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


async def incoming(ep: SipEndpoint, wait: float = 0.3) -> list[IncomingCall]:
    """IncomingCall events the endpoint produced (waiting `wait` s for stragglers)."""
    await asyncio.sleep(wait)
    out = []
    while not ep.events.empty():
        ev = ep.events.get_nowait()
        if isinstance(ev, IncomingCall):
            out.append(ev)
    return out


async def ended(ep: SipEndpoint, kind: type, call_id: str,
                unless: Callable[[], bool]) -> CallEnded | CallFailed | None:
    """The endpoint's CallEnded/CallFailed for `call_id` (other events are dropped): proof that it
    has handled the final answer, before a test looks for what it must not have sent. None as soon
    as `unless()` holds (it sent that instead), so a failure shows what was sent."""
    async def wait() -> CallEnded | CallFailed | None:
        while not unless():
            while not ep.events.empty():
                ev = ep.events.get_nowait()
                if isinstance(ev, kind) and ev.call_id == call_id:
                    return ev
            await asyncio.sleep(0.01)
        return None
    return await asyncio.wait_for(wait(), TIMEOUT)


def invite(client: Udp, branch: str, call_id: str, **kw: object) -> bytes:
    """An INVITE from `client` whose Contact is the client itself (nothing leaves loopback)."""
    replace = {"Contact": f"<sip:555@{client.addr[0]}:{client.addr[1]}>", **(kw.pop("replace", None) or {})}
    return raw("INVITE", via=client.via(branch), call_id=call_id, body=OFFER, replace=replace,  # type: ignore[arg-type]
               extra=["Content-Type: application/sdp", *kw.pop("extra", [])], **kw)  # type: ignore[arg-type]


# --- 1. the gate decides with the one parser --------------------------------------------------

@pytest.mark.parametrize("to", ["<sip:fax@127.0.0.1;tag=x>", '"a;tag=b" <sip:fax@127.0.0.1>'])
def test_a_tag_inside_the_to_uri_or_name_is_still_a_new_call_and_is_challenged(to: str) -> None:
    async def run() -> None:
        async with box({"peers": [{"name": "gw", "match": GW, "username": "gw", "password": "pw"}]}) as ep:
            gw = Udp(GW)
            try:
                await gw.send(invite(gw, "z9hG4bKt1", "tag-trick@gw", to=to), ep)
                reply = await gw.recv()
                assert isinstance(reply, SipResponse) and reply.status == 401, reply
                assert await incoming(ep) == []
            finally:
                gw.close()
    asyncio.run(run())


def test_a_long_request_line_from_a_stranger_is_refused_before_the_user_agent() -> None:
    async def run() -> None:
        async with box({"peers": [{"name": "gw", "match": GW}]}) as ep:
            stranger = Udp(STRANGER)
            try:
                uri = "sip:fax@127.0.0.1;x=" + "a" * 3000
                await stranger.send(invite(stranger, "z9hG4bKlong", "long@x", uri=uri), ep)
                reply = await stranger.recv()
                assert isinstance(reply, SipResponse) and reply.status == 403, reply
                assert await incoming(ep) == []  # no call: no RTP port is ever opened for it
            finally:
                stranger.close()
    asyncio.run(run())


# --- 2. our PBX password's digest goes only to that PBX ---------------------------------------

class Registrar:
    """A registrar on 127.0.0.4 that challenges with realm "pbx", then accepts; it also answers
    INVITEs sent to it with a 407 of the realm it is told to use."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((REGISTRAR, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.invite_realm = "pbx"
        self.invites: list[SipRequest] = []
        self.task: asyncio.Task | None = None

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        server = DigestServer("pbx")
        while True:
            data, addr = await loop.sock_recvfrom(self.sock, 65535)
            req = parse_message(data)
            if not isinstance(req, SipRequest) or req.method == "ACK":
                continue
            tag = "reg1"
            if req.method == "REGISTER":
                if "Authorization" in req.headers:
                    resp = _response(req, 200, "OK", tag, [("Contact", req.headers.get("Contact") + ";expires=3600")])
                else:
                    resp = _response(req, 401, "Unauthorized", tag, [("WWW-Authenticate", server.challenge(loop.time()))])
            else:
                self.invites.append(req)
                resp = _response(req, 407, "Proxy Authentication Required", tag, [(
                    "Proxy-Authenticate", f'Digest realm="{self.invite_realm}", nonce="n{len(self.invites)}", qop="auth"')])
            await loop.sock_sendto(self.sock, bytes(resp), addr)


def _response(req: SipRequest, status: int, reason: str, tag: str, headers: list) -> SipResponse:
    from appliance.sip.callinfo import make_response
    return make_response(req, status, reason, tag, headers)


def test_a_caller_that_challenges_our_bye_gets_no_digest_of_the_pbx_password() -> None:
    async def run() -> None:
        registrar = Registrar()
        registrar.task = asyncio.ensure_future(registrar.serve())
        sip = {"peers": [{"name": "gw", "match": GW}],
               "registrations": [{"name": "pbx", "registrar": f"sip:{REGISTRAR}:{registrar.port}", "user": "fax",
                                  "password": "secret"}]}
        async with box(sip) as ep:
            await ep.add_registration(Config.from_dict({"sip": sip}).sip.registrations[0])
            await async_wait_until(lambda: ep.registrations[0].registered, "registered at the PBX")
            gw = Udp(GW)
            try:
                await gw.send(invite(gw, "z9hG4bKc1", "caller@gw"), ep)
                [call] = await incoming(ep)
                ep.answer_call(call.call_id, offer_audio("127.0.0.1", 40002, 1, 1))
                ok = await gw.recv()
                assert isinstance(ok, SipResponse) and ok.status == 200
                ack = raw("ACK", via=gw.via("z9hG4bKc1a"), call_id="caller@gw", cseq="1 ACK",
                          to=ok.headers.get("To"))
                await gw.send(ack, ep)
                await asyncio.sleep(0.1)
                ep.hangup(call.call_id)
                bye = await gw.recv()
                assert isinstance(bye, SipRequest) and bye.method == "BYE"
                challenge = _response(bye, 401, "Unauthorized", "peer1",
                                      [("WWW-Authenticate", 'Digest realm="pbx", nonce="evil", qop="auth"')])
                await gw.send(bytes(challenge), ep)
                bye_ended = await ended(ep, CallEnded, "caller@gw", unless=gw.waiting)
                again = await gw.recv(0.1)
                assert again is None or "Authorization" not in again.headers, again  # nothing to crack
                assert bye_ended is not None and bye_ended.status == 401  # the BYE ends there
                # what a registrar's own challenge gets: an answer, for its own realm only
                ep.invite(f"sip:5551000@{REGISTRAR}:{registrar.port}", from_uri="sip:fax@127.0.0.1",
                          sdp=OFFER, remote=(REGISTRAR, registrar.port))
                await async_wait_until(lambda: len(registrar.invites) >= 2, "the INVITE answered the challenge")
                assert len(registrar.invites) == 2 and "Proxy-Authorization" in registrar.invites[1].headers
                registrar.invite_realm = "elsewhere"
                refused = ep.invite(f"sip:5551001@{REGISTRAR}:{registrar.port}", from_uri="sip:fax@127.0.0.1",
                                    sdp=OFFER, remote=(REGISTRAR, registrar.port))
                call_failed = await ended(ep, CallFailed, refused, unless=lambda: len(registrar.invites) > 3)
                await asyncio.sleep(0.1)  # the registrar's task reads what was sent before the call failed
                assert len(registrar.invites) == 3  # challenged with a realm it never used: no answer
                assert call_failed is not None and call_failed.status == 407
            finally:
                gw.close()
                registrar.task.cancel()
                registrar.sock.close()
    asyncio.run(run())


# --- 4. floods of what matches nothing are bounded before the full parse ------------------------

def test_a_huge_ack_is_dropped_unparsed_and_unmatched_acks_pay_the_bucket() -> None:
    async def run() -> None:
        async with box({"peers": [{"name": "gw", "match": GW}], "rate_limit": 1.0, "rate_burst": 5}) as ep:
            gw = Udp(GW)
            try:
                vias = ",".join(f"SIP/2.0/UDP 10.0.{i // 256}.{i % 256}:5060;branch=z9hG4bK{i}" for i in range(1300))
                huge = raw("ACK", via=gw.via("z9hG4bKh") + "," + vias, call_id="nothing@x", cseq="1 ACK")
                assert len(huge) > 50000
                await gw.send(huge, ep)
                for i in range(20):  # ACKs that match no dialog
                    await gw.send(raw("ACK", via=gw.via(f"z9hG4bKa{i}"), call_id=f"none{i}@x", cseq="1 ACK"), ep)
                # all 21 judged (however slow the machine) before looking at what they did
                await async_wait_until(lambda: sum(ep.security_stats().values()) >= 21, "the 21 datagrams judged")
                assert ep.ua.stats["ignored_acks"] == 0  # none of them reached the user agent
                await gw.send(raw("OPTIONS", via=gw.via("z9hG4bKo")), ep)
                await async_wait_until(lambda: sum(ep.security_stats().values()) >= 22 or gw.waiting(),
                                       "the OPTIONS judged")
                assert await gw.recv(0.1) is None  # the source's bucket is empty
            finally:
                gw.close()
    asyncio.run(run())


def _connect(port: int, ip: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(ip, 0))
    s.settimeout(TIMEOUT)
    return s


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_stream_connections_are_limited_per_address_and_strangers_are_cut() -> None:
    async def run() -> None:
        sip = {"peers": [{"name": "gw", "match": GW}], "max_connections": 6, "max_connections_per_address": 3}
        async with box(sip) as ep:
            port = ep.locals[1].port
            loop = asyncio.get_running_loop()
            held = [await loop.run_in_executor(None, _connect, port, GW) for _ in range(3)]
            extra = await loop.run_in_executor(None, _connect, port, GW)
            stranger = await loop.run_in_executor(None, _connect, port, STRANGER)
            try:
                extra.settimeout(TIMEOUT)
                stranger.settimeout(TIMEOUT)
                assert await loop.run_in_executor(None, _closed, extra)
                assert await loop.run_in_executor(None, _closed, stranger)
                held[0].settimeout(0.3)
                assert not await loop.run_in_executor(None, _closed, held[0])  # the first three stay
                stats = ep.security_stats()
                assert stats["connections_refused_address"] == 1 and stats["connections_unknown"] == 1
            finally:
                for s in [*held, extra, stranger]:
                    s.close()
    asyncio.run(run())


def test_idle_and_half_sent_connections_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sip_transport, "SWEEP_INTERVAL", 0.1)
    monkeypatch.setattr(sip_transport, "PARTIAL_MESSAGE_TIMEOUT", 0.5)

    async def run() -> None:
        async with box({"peers": [{"name": "gw", "match": GW}], "connection_idle_timeout": 10}) as ep:
            ep.idle_timeout = 1.0  # the configured minimum is 10 s; a test need not wait that long
            port = ep.locals[1].port
            loop = asyncio.get_running_loop()
            idle = await loop.run_in_executor(None, _connect, port, GW)
            slow = await loop.run_in_executor(None, _connect, port, GW)
            try:
                slow.sendall(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP ")  # and never the rest
                slow.settimeout(TIMEOUT)
                assert await loop.run_in_executor(None, _closed, slow)
                idle.settimeout(TIMEOUT)
                assert await loop.run_in_executor(None, _closed, idle)
                stats = ep.security_stats()
                assert stats["stalled_message"] == 1 and stats["idle_connection"] == 1
            finally:
                idle.close()
                slow.close()
    asyncio.run(run())


def test_an_endless_header_on_a_stream_is_cut_at_the_message_limit() -> None:
    async def run() -> None:
        async with box({"peers": [{"name": "gw", "match": GW}]}) as ep:
            loop = asyncio.get_running_loop()
            conn = await loop.run_in_executor(None, _connect, ep.locals[1].port, GW)
            try:
                conn.sendall(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nX-Junk: " + b"a" * 20000)
                assert await loop.run_in_executor(None, _closed, conn)
            finally:
                conn.close()
    asyncio.run(run())


# --- 5. calls beyond max_calls get 503 ------------------------------------------------------------

def test_calls_beyond_max_calls_and_the_peers_own_limit_get_503_with_retry_after() -> None:
    async def run() -> None:
        sip = {"max_calls": 2, "peers": [{"name": "gw", "match": GW, "max_calls": 1},
                                         {"name": "pbx", "match": REGISTRAR}]}
        async with box(sip) as ep:
            gw, pbx = Udp(GW), Udp(REGISTRAR)
            try:
                await gw.send(invite(gw, "z9hG4bKm1", "m1@gw"), ep)
                await gw.send(invite(gw, "z9hG4bKm2", "m2@gw"), ep)  # over gw's own limit
                busy = await gw.recv()
                assert isinstance(busy, SipResponse) and busy.status == 503 and busy.call_id == "m2@gw"
                assert busy.headers.get("Retry-After") == "10"
                await pbx.send(invite(pbx, "z9hG4bKm3", "m3@pbx"), ep)  # another peer: room for one more
                await pbx.send(invite(pbx, "z9hG4bKm4", "m4@pbx"), ep)  # sip.max_calls reached
                busy = await pbx.recv()
                assert isinstance(busy, SipResponse) and busy.status == 503 and busy.call_id == "m4@pbx"
                calls = await incoming(ep)
                assert sorted(c.call_id for c in calls) == ["m1@gw", "m3@pbx"]
                assert [c.admission.peer for c in sorted(calls, key=lambda c: c.call_id)] == ["gw", "pbx"]
                # a call in progress is unaffected: its CANCEL (and a retransmitted INVITE) get through
                await gw.send(invite(gw, "z9hG4bKm1", "m1@gw"), ep)
                await gw.send(raw("CANCEL", via=gw.via("z9hG4bKm1"), call_id="m1@gw", cseq="1 CANCEL"), ep)
                got = [await gw.recv() for _ in range(2)]
                assert sorted(m.status for m in got if isinstance(m, SipResponse)) == [200, 487]
                assert ep.security_stats()["max_calls"] == 1 and ep.security_stats()["peer_max_calls"] == 1
            finally:
                gw.close()
                pbx.close()
    asyncio.run(run())


# --- 7. numbers from the wire ------------------------------------------------------------------

@pytest.mark.parametrize("case", ["max-forwards", "sdp-port", "content-length"])
def test_non_ascii_digits_are_a_400_and_hold_nothing(case: str) -> None:
    async def run() -> None:
        async with box({"peers": [{"name": "gw", "match": GW}]}) as ep:
            gw = Udp(GW)
            try:
                for i in range(20):
                    body = OFFER
                    replace = None
                    if case == "max-forwards":
                        replace = {"Max-Forwards": "7²"}
                    elif case == "sdp-port":
                        body = OFFER.replace("m=audio 40000", "m=audio 4000²")
                    data = raw("INVITE", via=gw.via(f"z9hG4bKn{i}"), call_id=f"n{i}@gw", body=body,
                               replace={"Contact": f"<sip:555@{GW}:{gw.addr[1]}>", **(replace or {})},
                               extra=["Content-Type: application/sdp"])
                    if case == "content-length":
                        data = data.replace(b"Content-Length: ", b"Content-Length: \xc2\xb2")
                    await gw.send(data, ep)
                    reply = await gw.recv()
                    assert isinstance(reply, SipResponse) and reply.status == 400, reply
                await asyncio.sleep(0.1)
                assert ep.ua.stats["internal_errors"] == 0
                held = [t for t in ep.ua._server_txs.values() if t.last_status < 200]
                assert held == []
            finally:
                gw.close()
    asyncio.run(run())


def test_a_non_ascii_digest_response_is_refused_not_a_crash() -> None:
    async def run() -> None:
        async with box({"peers": [{"name": "gw", "match": GW, "username": "gw", "password": "pw"}]}) as ep:
            gw = Udp(GW)
            try:
                await gw.send(invite(gw, "z9hG4bKd1", "d1@gw"), ep)
                challenge = await gw.recv()
                assert isinstance(challenge, SipResponse) and challenge.status == 401
                ch = parse_challenge(challenge.headers.get("WWW-Authenticate"))
                good = build_authorization(ch, "gw", "pw", "INVITE", "sip:100@192.0.2.1", 1, "cn")
                for bad in (good.split("response=")[0] + 'response="é' + "0" * 63 + '", algorithm=SHA-256',
                            good.replace("nc=00000001", "nc=0000000²")):
                    await gw.send(invite(gw, "z9hG4bKd2" + str(len(bad)), "d2@gw", cseq="2 INVITE",
                                         extra=[f"Authorization: {bad}"]), ep)
                    reply = await gw.recv()
                    assert isinstance(reply, SipResponse) and reply.status == 403, reply
                assert ep.ua.stats["internal_errors"] == 0 and ep.security_stats()["auth_failed"] == 2
            finally:
                gw.close()
    asyncio.run(run())


def test_an_internal_error_on_a_request_answers_500_and_frees_its_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(sip_useragent, "incoming_call", broken)

    async def run() -> None:
        async with box({"peers": [{"name": "gw", "match": GW}]}) as ep:
            gw = Udp(GW)
            try:
                await gw.send(invite(gw, "z9hG4bKe1", "e1@gw"), ep)
                reply = await gw.recv()
                assert isinstance(reply, SipResponse) and reply.status == 500
                assert not ep.ua.has_call("e1@gw") and await incoming(ep, 0.05) == []
                assert not [t for t in ep.ua._server_txs.values() if t.last_status < 200]
                assert ep.ua.stats["internal_errors"] == 1
            finally:
                gw.close()
    asyncio.run(run())


@pytest.mark.parametrize("offer", [
    OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP ² 101").replace("a=rtpmap:0 PCMU", "a=rtpmap:² PCMU"),
    OFFER.replace("a=rtpmap:101 telephone-event", "a=rtpmap:¹⁰¹ telephone-event").replace("RTP/AVP 0 8 101", "RTP/AVP 0 8 ¹⁰¹"),
    OFFER.replace("a=ptime:20", "a=ptime:²⁰"),
])
def test_non_ascii_payload_types_in_an_offer_are_not_a_crash(offer: str) -> None:
    from appliance.sip.sdp import NoUsableCodec, answer_audio
    try:
        answer = answer_audio(offer, "127.0.0.1", 40000, 1, 1)
    except NoUsableCodec:
        return
    assert answer.payload_type in (0, 8) and answer.ptime == 20 and answer.telephone_event_pt in (None, 101)


def test_the_daemon_checks_peer_authentication_and_capacity_again_before_opening_media() -> None:
    from appliance.config import PeerConfig
    from appliance.daemon import admission_refusal
    from appliance.sip.events import Admission, Local

    def call(admission: Admission | None, remote: str = GW) -> IncomingCall:
        req = parse_message(raw("INVITE"))
        return IncomingCall("c@x", req, None, "555", "", "100", (remote, 5060), Local("udp", "127.0.0.1", 5060),
                            admission=admission)

    gw = PeerConfig(name="gw", match=GW, username="gw", password="pw")
    assert admission_refusal(call(Admission("gw", "gw")), gw, 0, 4) is None
    assert admission_refusal(call(Admission("gw", "gw")), None, 0, 4)[0] == 403          # no peer by address
    assert admission_refusal(call(None), gw, 0, 4)[0] == 403                              # no gate's word
    assert admission_refusal(call(Admission("pbx", "gw")), gw, 0, 4)[0] == 403           # another peer's
    assert admission_refusal(call(Admission("gw", "")), gw, 0, 4)[0] == 403              # not authenticated
    assert admission_refusal(call(Admission("gw", "gw")), gw, 4, 4)[:2] == (503, "Service Unavailable")
