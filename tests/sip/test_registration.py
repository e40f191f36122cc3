"""Registration state machine (sans-I/O), then through SipEndpoint against a tiny loopback registrar."""
from __future__ import annotations

import asyncio
import random
import time

from appliance.config import RegistrationConfig
from appliance.sip.digest import DigestServer, VerifyResult, parse_auth_params
from appliance.sip.events import Local
from appliance.sip.message import SipRequest, SipResponse, parse_message
from appliance.sip.callinfo import make_response
from appliance.sip.registration import Registration
from appliance.sip.transport import SipEndpoint
from tests.budgets import LOADED, async_wait_until

LOCAL = Local("udp", "127.0.0.1", 5070)
CFG = RegistrationConfig(name="pbx", registrar="sip:pbx.example:5080", user="5551000", auth_user="fax",
                         password="s3cret", expires=600)


def reg(**kw: object) -> Registration:
    cfg = RegistrationConfig(**{**CFG.__dict__, **kw})
    return Registration(cfg, LOCAL, rng=random.Random(7), retry_initial=10, retry_max=100)


def one(r: Registration) -> SipRequest:
    out = r.take_requests()
    assert len(out) == 1, out
    return out[0]


def answer(req: SipRequest, status: int, reason: str = "", headers: list[tuple[str, str]] = ()) -> SipResponse:
    return make_response(req, status, reason or "X", "regtag", headers)


def test_register_challenge_ok_and_refresh_jittered() -> None:
    r = reg()
    r.start(0.0)
    first = one(r)
    assert first.uri == "sip:pbx.example:5080" and first.headers.get("Expires") == "600"
    assert first.headers.get("To") == "<sip:5551000@pbx.example>" and "Authorization" not in first.headers
    assert first.headers.get("Contact") == "<sip:5551000@127.0.0.1:5070>"
    assert r.next_hop == ("pbx.example", 5080) and r.status().state == "registering"
    server = DigestServer("pbx")
    r.on_response(answer(first, 401, headers=[("WWW-Authenticate", c) for c in server.challenges(0.1)]), 0.1)
    second = one(r)
    assert second.cseq[0] == first.cseq[0] + 1 and second.via.branch != first.via.branch
    assert second.call_id == first.call_id and second.from_tag == first.from_tag
    auth = second.headers.get("Authorization")
    assert parse_auth_params(auth.partition(" ")[2])["algorithm"] == "SHA-256"
    assert server.verify(auth, "REGISTER", "fax", "s3cret", 0.15) == VerifyResult.OK
    r.on_response(answer(second, 200, "OK", [("Contact", "<sip:5551000@127.0.0.1:5070>;expires=300"),
                                               ("Contact", "<sip:other@192.0.2.9>;expires=3600")]), 0.2)
    st = r.status()
    assert st.registered and st.state == "registered" and st.expires_at == 300.2 and st.last_error == ""
    refresh = r.get_timer()
    assert 0.2 + 150 <= refresh <= 0.2 + 270
    r.handle_timer(refresh)
    third = one(r)
    assert third.cseq[0] == second.cseq[0] + 1 and r.status().state == "refreshing" and r.registered


def test_wrong_password_fails_once_then_backs_off() -> None:
    r = reg()
    r.start(0.0)
    challenge = [("WWW-Authenticate", 'Digest realm="pbx", nonce="n1", qop="auth"')]
    r.on_response(answer(one(r), 401, headers=challenge), 0.0)
    r.on_response(answer(one(r), 401, headers=challenge), 0.0)  # credentials sent and refused
    assert r.take_requests() == [] and r.status().last_error == "401: credentials refused"
    assert not r.registered and r.status().state == "failed"
    delays = []
    for _ in range(4):
        t = r.get_timer()
        delays.append(t)
        r.handle_timer(t)
        r.on_response(None, t)  # timeout
        r.take_requests()
    gaps = [b - a for a, b in zip(delays, delays[1:])]
    assert gaps[0] < gaps[1] < gaps[2] and gaps[2] <= 120
    assert r.status().last_error == "no response (timeout)"


def test_stale_nonce_is_answered_again() -> None:
    r = reg()
    r.start(0.0)
    r.on_response(answer(one(r), 407, headers=[("Proxy-Authenticate", 'Digest realm="p", nonce="a"')]), 0.0)
    assert "Proxy-Authorization" in one(r).headers
    assert "Proxy-Authorization" in one_again(r, 'Digest realm="p", nonce="b", stale=true').headers


def one_again(r: Registration, challenge: str) -> SipRequest:
    r.on_response(answer(r._current, 407, headers=[("Proxy-Authenticate", challenge)]), 0.0)
    return one(r)


def test_423_uses_min_expires_and_granted_zero_is_failure() -> None:
    r = reg(expires=60)
    r.start(0.0)
    r.on_response(answer(one(r), 423, "Interval Too Brief", [("Min-Expires", "1800")]), 0.0)
    again = one(r)
    assert again.headers.get("Expires") == "1800"
    r.on_response(answer(again, 200, "OK", [("Contact", "<sip:someone@192.0.2.1>;expires=60")]), 1.0)
    assert not r.registered and "no binding" in r.status().last_error


def test_outbound_proxy_route_contact_user_and_tls_contact() -> None:
    r = Registration(RegistrationConfig(registrar="sip:pbx.example;transport=tls", user="u", contact_user="fax",
                                        outbound_proxy="sip:127.0.0.1:5099;transport=tls"),
                     Local("tls", "127.0.0.1", 5061), rng=random.Random(1))
    r.start(0.0)
    req = one(r)
    assert req.uri == "sip:pbx.example;transport=tls" and r.next_hop == ("127.0.0.1", 5099)
    assert req.headers.get("Route") == "<sip:127.0.0.1:5099;transport=tls;lr>"
    assert req.headers.get("Contact") == "<sip:fax@127.0.0.1:5061;transport=tls>"
    assert req.via.transport == "TLS"


def test_stop_unregisters_with_expires_zero() -> None:
    r = reg()
    r.start(0.0)
    r.on_response(answer(one(r), 200, "OK", [("Expires", "600")]), 0.0)
    assert r.registered
    r.stop(1.0)
    bye = one(r)
    assert bye.headers.get("Expires") == "0" and not r.done
    r.on_response(answer(bye, 401, headers=[("WWW-Authenticate", 'Digest realm="pbx", nonce="z"')]), 1.1)
    bye2 = one(r)
    assert bye2.headers.get("Expires") == "0" and "Authorization" in bye2.headers
    r.on_response(answer(bye2, 200, "OK"), 1.2)
    assert r.done and not r.registered and r.get_timer() is None
    idle = reg()
    idle.stop(0.0)
    assert idle.done and idle.take_requests() == []


# --- through SipEndpoint over loopback UDP -------------------------------------------------------

class Registrar(asyncio.DatagramProtocol):
    """Answers REGISTER: 401 first, 200 with the binding when the credentials check out."""

    def __init__(self) -> None:
        self.digest = DigestServer("test")
        self.bindings: dict[str, str] = {}
        self.seen: list[SipRequest] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        req = parse_message(data)
        assert isinstance(req, SipRequest)
        self.seen.append(req)
        now = time.monotonic()
        result = self.digest.verify(req.headers.get("Authorization"), "REGISTER", "fax", "s3cret", now)
        if result != VerifyResult.OK:
            resp = make_response(req, 401, "Unauthorized", "r1", [("WWW-Authenticate", self.digest.challenge(now))])
        else:
            expires = req.headers.get("Expires")
            if expires == "0":
                self.bindings.pop(req.headers.get("To"), None)
                resp = make_response(req, 200, "OK", "r1")
            else:
                self.bindings[req.headers.get("To")] = req.headers.get("Contact")
                resp = make_response(req, 200, "OK", "r1", [("Contact", f"{req.headers.get('Contact')};expires=120")])
        self.transport.sendto(bytes(resp), addr)


async def _register_over_udp() -> None:
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(Registrar, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    ep = SipEndpoint()
    await ep.start([("udp", "127.0.0.1", 0)])
    try:
        cfg = RegistrationConfig(name="t", registrar=f"sip:127.0.0.1:{port}", user="5551000", auth_user="fax",
                                 password="s3cret", expires=120)
        r = await ep.add_registration(cfg, rng=random.Random(3))
        await async_wait_until(lambda: r.registered, "registered")
        [status] = ep.registration_status()
        assert status.registered and status.state == "registered"
        assert abs(status.expires_at - (time.time() + 120)) < 5  # wall clock for the status page
        assert registrar.bindings == {"<sip:5551000@127.0.0.1>": f"<sip:5551000@127.0.0.1:{ep.locals[0].port}>"}
        assert [m.headers.get("Authorization") is not None for m in registrar.seen] == [False, True]
        await ep.unregister_all(timeout=LOADED)
        assert r.done and registrar.bindings == {}
    finally:
        await ep.close()
        transport.close()


def test_register_and_unregister_through_endpoint() -> None:
    asyncio.run(_register_over_udp())
