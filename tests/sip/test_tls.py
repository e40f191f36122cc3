"""SIP over TLS between SipEndpoints on 127.0.0.1 with trustme certificates (loopback only)."""
from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme

from appliance.sip.events import CallAnswered, CallConfirmed, CallEnded, IncomingCall
from appliance.sip.message import SipResponse, parse_message
from appliance.sip.sdp import answer_audio
from appliance.sip.tls import TlsSettings
from appliance.sip.transport import SipEndpoint
from tests.budgets import LOADED, async_wait_until

from sip_helpers import OFFER, raw

TIMEOUT = LOADED


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server/client certificate for 127.0.0.1, and a second CA nobody trusts."""
    d = tmp_path_factory.mktemp("pki")
    ca, stranger = trustme.CA(), trustme.CA()
    out = {}
    for name, issuer in (("a", ca), ("b", ca), ("rogue", stranger)):
        cert = issuer.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(d / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(d / f"{name}.pem"))
        out[name] = str(d / name)
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    out["ca"] = str(d / "ca.pem")
    return out


def settings(pki: dict[str, str], name: str, verify_client: bool = False) -> TlsSettings:
    return TlsSettings(pki[name] + ".pem", pki[name] + ".key", pki["ca"], verify_client)


async def next_event(endpoint: SipEndpoint, kind: type) -> object:
    while True:
        event = await asyncio.wait_for(endpoint.events.get(), TIMEOUT)
        if isinstance(event, kind):
            return event


async def _tls_call(pki: dict[str, str], verify_client: bool) -> None:
    a = SipEndpoint(tls=settings(pki, "a"))
    b = SipEndpoint(tls=settings(pki, "b", verify_client))
    await a.start([("tls", "127.0.0.1", 0)])
    await b.start([("tls", "127.0.0.1", 0)])
    try:
        port = b.locals[0].port
        call_id = a.invite(f"sip:100@127.0.0.1:{port};transport=tls", from_uri="sip:fax@127.0.0.1", sdp=OFFER,
                           remote=("127.0.0.1", port), transport="tls")
        incoming = await next_event(b, IncomingCall)
        assert incoming.local.transport == "tls" and incoming.call_id == call_id
        invite = incoming.request
        assert invite.via.transport == "TLS" and invite.headers.get("Contact").endswith(";transport=tls>")
        b.answer_call(call_id, answer_audio(incoming.offer, "127.0.0.1", 50000, 1, 1).sdp)
        await next_event(a, CallAnswered)
        assert await next_event(b, CallConfirmed) == CallConfirmed(call_id)
        a.hangup(call_id)
        assert await next_event(b, CallEnded) == CallEnded(call_id, "remote BYE", None)
        assert await next_event(a, CallEnded) == CallEnded(call_id, "local hangup", 200)
    finally:
        await a.close()
        await b.close()


def test_call_over_tls(pki: dict[str, str]) -> None:
    asyncio.run(_tls_call(pki, verify_client=False))


def test_call_over_tls_with_client_certificates(pki: dict[str, str]) -> None:
    asyncio.run(_tls_call(pki, verify_client=True))


def _client_ctx(pki: dict[str, str], cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cert:
        ctx.load_cert_chain(pki[cert] + ".pem", pki[cert] + ".key")
    return ctx


async def _handshake(port: int, ctx: ssl.SSLContext) -> bytes:
    """Connect, send an OPTIONS, return what comes back (b"" when the server closed)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"), TIMEOUT)
    try:
        writer.write(raw("OPTIONS", via="SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKtls"))
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), TIMEOUT)
    finally:
        writer.close()


async def _client_cert_required(pki: dict[str, str]) -> None:
    ep = SipEndpoint(tls=settings(pki, "b", verify_client=True))
    await ep.start([("tls", "127.0.0.1", 0)])
    port = ep.locals[0].port
    try:
        for cert in (None, "rogue"):  # no certificate, or one from a CA we do not trust
            with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)):
                data = await _handshake(port, _client_ctx(pki, cert))
                if data == b"":  # TLS 1.3: the refusal arrives after the client's handshake ends
                    raise ConnectionResetError("closed")
        data = await _handshake(port, _client_ctx(pki, "a"))
        resp = parse_message(data)
        assert isinstance(resp, SipResponse) and resp.status == 200
    finally:
        await ep.close()


def test_client_certificate_missing_or_untrusted_is_refused(pki: dict[str, str]) -> None:
    asyncio.run(_client_cert_required(pki))


async def _garbage(pki: dict[str, str]) -> None:
    ep = SipEndpoint(tls=settings(pki, "b"))
    await ep.start([("tls", "127.0.0.1", 0)])
    port = ep.locals[0].port
    try:
        # plaintext junk where a TLS ClientHello belongs: that connection is dropped
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 200)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        # a good handshake, then SIP garbage inside TLS: closed, nothing else disturbed
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_ctx(pki, None),
                                                       server_hostname="127.0.0.1")
        keep_r, keep_w = await asyncio.open_connection("127.0.0.1", port, ssl=_client_ctx(pki, None),
                                                       server_hostname="127.0.0.1")
        writer.write(b"\x01\x02 junk without length\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        keep_w.write(b"\r\n\r\n")  # the other connection still answers pings and requests
        assert await asyncio.wait_for(keep_r.readexactly(2), TIMEOUT) == b"\r\n"
        keep_w.write(raw("OPTIONS", via="SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKk"))
        head = await asyncio.wait_for(keep_r.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert parse_message(head).status == 200
        keep_w.close()
        assert ep.ua.stats["closed_streams"] == 1
    finally:
        await ep.close()


def test_garbage_closes_only_that_tls_connection(pki: dict[str, str]) -> None:
    asyncio.run(_garbage(pki))


async def _untrusted_server(pki: dict[str, str]) -> None:
    """Our outgoing TLS verifies the server: a certificate from an unknown CA gets no INVITE."""
    a = SipEndpoint(tls=settings(pki, "a"))
    b = SipEndpoint(tls=TlsSettings(pki["rogue"] + ".pem", pki["rogue"] + ".key"))
    await a.start([("tls", "127.0.0.1", 0)])
    await b.start([("tls", "127.0.0.1", 0)])
    try:
        port = b.locals[0].port
        a.invite(f"sip:100@127.0.0.1:{port};transport=tls", from_uri="sip:fax@127.0.0.1", sdp=OFFER,
                 remote=("127.0.0.1", port), transport="tls")
        # b sees the handshake fail (however slow the machine): that connection can carry nothing
        await async_wait_until(lambda: b.security_stats().get("tls_handshake_failed") or not b.events.empty(),
                               "the handshake failed")
        await asyncio.sleep(0.1)
        assert b.events.empty(), b.events.get_nowait()
    finally:
        await a.close()
        await b.close()


def test_outgoing_tls_refuses_an_untrusted_server(pki: dict[str, str]) -> None:
    asyncio.run(_untrusted_server(pki))


def test_tls_settings_enforce_tls12(pki: dict[str, str]) -> None:
    s = settings(pki, "a", verify_client=True)
    assert s.server_context().minimum_version == ssl.TLSVersion.TLSv1_2
    assert s.server_context().verify_mode == ssl.CERT_REQUIRED
    assert s.client_context().minimum_version == ssl.TLSVersion.TLSv1_2
    assert s.client_context().check_hostname


async def _stranger_gets_no_handshake(pki: dict[str, str]) -> None:
    from appliance.config import PeerConfig
    from appliance.calls.sip_setup import peer_table
    from appliance.sip.policy import CallGate

    ep = SipEndpoint(tls=settings(pki, "b"), gate=CallGate(peer_table([PeerConfig(name="gw", match="127.0.0.2")])))
    await ep.start([("tls", "127.0.0.1", 0)])
    port = ep.locals[0].port
    try:
        # a stranger's ClientHello is never answered: the connection closes before any TLS work
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
        writer.write(b"\x16\x03\x01\x00\x05hello")
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError, OSError)):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=_client_ctx(pki, None),
                                                           server_hostname="127.0.0.1",
                                                           local_addr=("127.0.0.3", 0)), TIMEOUT)
        assert ep.security_stats()["connections_unknown"] == 2 and ep.security_stats().get("tls_handshake_failed", 0) == 0
        # the peer's own address: handshake, then an answered OPTIONS
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=_client_ctx(pki, None), server_hostname="127.0.0.1",
                                    local_addr=("127.0.0.2", 0)), TIMEOUT)
        writer.write(raw("OPTIONS", via="SIP/2.0/TLS 127.0.0.2:5999;branch=z9hG4bKpeer"))
        resp = parse_message(await asyncio.wait_for(reader.read(4096), TIMEOUT))
        assert isinstance(resp, SipResponse) and resp.status == 200
        writer.close()
    finally:
        await ep.close()


def test_a_stranger_gets_no_tls_handshake_a_peer_does(pki: dict[str, str]) -> None:
    asyncio.run(_stranger_gets_no_handshake(pki))


async def _tcp_and_tls_listeners(pki: dict[str, str]) -> None:
    """Each stream listener keeps its own Local and TLS context (the TCP one, bound first, once
    took the TLS listener's: plaintext got a handshake, and Via/Contact named the TLS port)."""
    ep = SipEndpoint(tls=settings(pki, "b"))
    await ep.start([("tcp", "127.0.0.1", 0), ("tls", "127.0.0.1", 0)])
    tcp_port, tls_port = ep.locals[0].port, ep.locals[1].port
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        writer.write(raw("OPTIONS", via="SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKplain"))
        resp = parse_message(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT))
        assert isinstance(resp, SipResponse) and resp.status == 200
        assert [(c.local.transport, c.local.port, c.tls) for c in ep._connections.values()] == [
            ("tcp", tcp_port, None)]
        writer.close()
        resp = parse_message(await _handshake(tls_port, _client_ctx(pki, None)))
        assert isinstance(resp, SipResponse) and resp.status == 200
    finally:
        await ep.close()


def test_a_tcp_and_a_tls_listener_side_by_side(pki: dict[str, str]) -> None:
    asyncio.run(_tcp_and_tls_listeners(pki))
