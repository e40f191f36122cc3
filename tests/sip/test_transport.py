"""SipEndpoint over real sockets on 127.0.0.1 (only loopback, ports chosen by the OS)."""
from __future__ import annotations

import asyncio
import socket

from appliance.sip.events import CallAnswered, CallConfirmed, CallEnded, IncomingCall
from appliance.sip.message import SipResponse, parse_message
from appliance.sip.sdp import answer_audio
from appliance.sip.transport import SipEndpoint
from tests.budgets import LOADED

from sip_helpers import OFFER, raw

TIMEOUT = LOADED


async def next_event(endpoint: SipEndpoint, kind: type) -> object:
    while True:
        event = await asyncio.wait_for(endpoint.events.get(), TIMEOUT)
        if isinstance(event, kind):
            return event


async def _call(transport: str, listen_host: str = "127.0.0.1") -> None:
    a, b = SipEndpoint(), SipEndpoint()
    await a.start([(transport, "127.0.0.1", 0)])
    await b.start([(transport, listen_host, 0)])
    try:
        port = b.locals[0].port
        assert port != 0
        call_id = a.invite(f"sip:100@127.0.0.1:{port};transport={transport}", from_uri="sip:fax@127.0.0.1",
                           sdp=OFFER, remote=("127.0.0.1", port), transport=transport)
        incoming = await next_event(b, IncomingCall)
        assert incoming.call_id == call_id and incoming.called_number == "100"
        assert incoming.local.host == "127.0.0.1" and incoming.local.port == port
        b.answer_call(call_id, answer_audio(incoming.offer, "127.0.0.1", 50000, 1, 1).sdp)
        answered = await next_event(a, CallAnswered)
        assert answered.answer.media[0].port == 50000
        assert await next_event(b, CallConfirmed) == CallConfirmed(call_id)
        a.hangup(call_id)
        assert await next_event(b, CallEnded) == CallEnded(call_id, "remote BYE", None)
        assert await next_event(a, CallEnded) == CallEnded(call_id, "local hangup", 200)
    finally:
        await a.close()
        await b.close()


def test_udp_call_between_endpoints() -> None:
    asyncio.run(_call("udp"))


def test_tcp_call_between_endpoints() -> None:
    asyncio.run(_call("tcp"))


async def _udp_garbage_then_options() -> None:
    ep = SipEndpoint()
    await ep.start([("udp", "127.0.0.1", 0)])
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        dest = ("127.0.0.1", ep.locals[0].port)
        for junk in (b"\x00\xff" * 100, b"\r\n\r\n", b"INVITE nonsense\r\n\r\n"):
            await loop.sock_sendto(sock, junk, dest)
        port = sock.getsockname()[1]
        await loop.sock_sendto(sock, raw("OPTIONS", via=f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKu;rport"), dest)
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), TIMEOUT)
        resp = parse_message(data)
        assert isinstance(resp, SipResponse) and resp.status == 200 and resp.call_id == "raw-1@peer"
        assert ep.ua.stats["dropped_malformed"] == 2 and ep.ua.stats["internal_errors"] == 0
    finally:
        sock.close()
        await ep.close()


def test_udp_garbage_then_options() -> None:
    asyncio.run(_udp_garbage_then_options())


async def _tcp_garbage_closes_then_options() -> None:
    ep = SipEndpoint()
    await ep.start([("tcp", "127.0.0.1", 0)])
    port = ep.locals[0].port
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x01\x02 junk without length\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed by the endpoint
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), TIMEOUT) == b"\r\n"  # RFC 5626 pong
        writer.write(raw("OPTIONS", via="SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKt"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        resp = parse_message(head)
        assert isinstance(resp, SipResponse) and resp.status == 200
        assert resp.headers.get("Content-Length") == "0"
        writer.close()
        assert ep.ua.stats["closed_streams"] == 1
    finally:
        await ep.close()


def test_tcp_garbage_closes_connection_then_options() -> None:
    asyncio.run(_tcp_garbage_closes_then_options())



def test_udp_wildcard_listener_advertises_the_routed_address() -> None:
    """On 0.0.0.0 the Contact must carry the address the call came in on (the peer sends its ACK
    and BYE there), never 0.0.0.0.  Traffic stays on loopback."""
    asyncio.run(_call("udp", listen_host="0.0.0.0"))


def test_tcp_wildcard_listener_advertises_the_connection_address() -> None:
    asyncio.run(_call("tcp", listen_host="0.0.0.0"))
