"""send_over_sip against a far end that refuses, rings, challenges or answers without a fax: each
end is the right Outcome.

The far end is a tiny UAS written here from RFC 3261 (raw UDP socket, hand-written responses) and
shares no code with the product, so a bug in the SIP core cannot hide itself by agreeing with
itself. Its behaviour is chosen by the Request-URI's user. All calls of a test run at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.fax.pages import STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.outbound.outcome import Outcome, Result
from appliance.outbound.sip_send import send_over_sip
from tests.budgets import LOADED

REALM, NONCE, USER, PASSWORD = "trunk.test", "f00dcafe1234", "faxbox", "s3cret pass"


@dataclass
class Seen:
    """What the far end received, by the Request-URI user of the call."""

    requests: dict[str, list[tuple[str, dict[str, str]]]] = field(default_factory=dict)
    auth_ok: list[bool] = field(default_factory=list)

    def methods(self, user: str) -> list[str]:
        """The methods in order, a retransmission (the same method again at once) counted once."""
        out: list[str] = []
        for m, _ in self.requests.get(user, []):
            if not out or out[-1] != m:
                out.append(m)
        return out


def _parse(data: bytes) -> tuple[str, str, dict[str, str]]:
    head = data.decode("utf-8", "replace").split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    method, uri, _ = lines[0].split(" ", 2)
    return method, uri, headers


def _digest_ok(auth: str, method: str) -> bool:
    """RFC 7616 with qop=auth and MD5, computed here from the RFC, not with the product's code."""
    p = dict(re.findall(r'(\w+)="?([^",]*)"?', auth.removeprefix("Digest ")))
    ha1 = hashlib.md5(f"{USER}:{REALM}:{PASSWORD}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{p.get('uri', '')}".encode()).hexdigest()
    want = hashlib.md5(f"{ha1}:{NONCE}:{p.get('nc')}:{p.get('cnonce')}:auth:{ha2}".encode()).hexdigest()
    return p.get("username") == USER and p.get("realm") == REALM and p.get("response") == want


class TinyUas(asyncio.DatagramProtocol):
    """A far end on 127.0.0.1 that answers INVITEs as its Request-URI user says:
    busy (486), decline (600), forbidden (403), gone408 (180 then 408), ring (180, then only
    CANCEL ends it), auth (401 until a right digest, then 486; authproxy the same with 407),
    silent (200 OK, then no media), hangup (200 OK, then a BYE of its own one second later)."""

    def __init__(self) -> None:
        self.seen = Seen()
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[str, tuple[dict[str, str], tuple[str, int]]] = {}  # ringing INVITEs by Call-ID
        self.users: dict[str, str] = {}  # Call-ID -> the Request-URI user of its INVITE
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the "silent" call's RTP port: never sends
        self.media.bind(("127.0.0.1", 0))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def respond(self, h: dict[str, str], addr: tuple[str, int], status: str, extra: str = "", body: str = "") -> None:
        to = h["to"] if ";tag=" in h["to"] or status.startswith("100") else h["to"] + ";tag=uas1"
        msg = (
            f"SIP/2.0 {status}\r\nVia: {h['via']}\r\nFrom: {h['from']}\r\nTo: {to}\r\n"
            f"Call-ID: {h['call-id']}\r\nCSeq: {h['cseq']}\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}"
        )
        assert self.transport is not None
        self.transport.sendto(msg.encode(), addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.startswith(b"SIP/2.0"):
            return  # the answer to our BYE
        method, uri, h = _parse(data)
        if method == "INVITE":  # the call's name; its ACK, CANCEL and BYE are told by the Call-ID
            self.users.setdefault(h["call-id"], uri.split(":", 1)[1].split("@", 1)[0])
        user = self.users.get(h["call-id"], "?")
        self.seen.requests.setdefault(user, []).append((method, h))
        if method == "INVITE":
            self.invite(user, h, addr)
        elif method == "CANCEL":
            self.respond(h, addr, "200 OK")
            inv = self.pending.pop(h["call-id"], None)
            if inv is not None:
                self.respond(inv[0], inv[1], "487 Request Terminated")
        elif method == "BYE":
            self.respond(h, addr, "200 OK")

    def invite(self, user: str, h: dict[str, str], addr: tuple[str, int]) -> None:
        if ";tag=" in h["to"]:
            self.respond(h, addr, "488 Not Acceptable Here")  # a re-INVITE: not in these calls
        elif user == "busy":
            self.respond(h, addr, "486 Busy Here")
        elif user == "decline":
            self.respond(h, addr, "600 Busy Everywhere")
        elif user == "forbidden":
            self.respond(h, addr, "403 Forbidden")
        elif user == "gone408":
            self.respond(h, addr, "180 Ringing")
            self.respond(h, addr, "408 Request Timeout")
        elif user.startswith("ring"):
            self.respond(h, addr, "180 Ringing")
            self.pending[h["call-id"]] = (h, addr)
        elif user.startswith("auth"):
            proxy = user == "authproxy"  # a proxy's 407 and Proxy-Authorization (RFC 3261 §22.3)
            auth = h.get("proxy-authorization" if proxy else "authorization", "")
            if auth:
                ok = _digest_ok(auth, "INVITE")
                self.seen.auth_ok.append(ok)
                if ok:
                    return self.respond(h, addr, "486 Busy Here")
            params = f'Digest realm="{REALM}", nonce="{NONCE}", qop="auth", algorithm=MD5'
            if proxy:
                self.respond(h, addr, "407 Proxy Authentication Required", f"Proxy-Authenticate: {params}\r\n")
            else:
                self.respond(h, addr, "401 Unauthorized", f"WWW-Authenticate: {params}\r\n")
        elif user in ("silent", "hangup"):
            sdp = (
                "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.media.getsockname()[1]} RTP/AVP 0\r\na=sendrecv\r\n"
            )
            contact = f"Contact: <sip:uas@127.0.0.1:{self.port}>\r\nContent-Type: application/sdp\r\n"
            self.respond(h, addr, "200 OK", contact, sdp)
            if user == "hangup":
                asyncio.get_running_loop().call_later(1.0, self.bye, h, addr)

    def bye(self, h: dict[str, str], addr: tuple[str, int]) -> None:
        contact = re.search(r"<sip:[^@>]*@?([\d.]+):(\d+)", h["contact"])
        assert contact is not None
        dest = (contact.group(1), int(contact.group(2)))
        msg = (
            f"BYE sip:{dest[0]}:{dest[1]} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bKuasbye1\r\n"
            f"Max-Forwards: 70\r\nFrom: {h['to']};tag=uas1\r\nTo: {h['from']}\r\nCall-ID: {h['call-id']}\r\n"
            "CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
        )
        assert self.transport is not None
        self.transport.sendto(msg.encode(), dest)


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    path = tmp_path / "doc.tif"
    write_fax_tiff(demo_pages(1, STANDARD, seed=3), path, STANDARD)
    return path


class Calls:
    """Places calls at the tiny UAS and records their callbacks."""

    def __init__(self, uas: TinyUas, doc: Path) -> None:
        self.uas, self.doc = uas, doc
        self.connected: dict[str, int] = {}
        self.pages: dict[str, list[int]] = {}

    async def call(
        self,
        user: str,
        *,
        cancel_after: float | None = None,
        credentials: tuple[str, str] | None = None,
        ring_timeout: float = 30.0,
        timeout: float = 4 * LOADED,
        ident: str = "+1 555 1000",
    ) -> Outcome:
        cancel = asyncio.Event()
        if cancel_after is not None:
            asyncio.get_running_loop().call_later(cancel_after, cancel.set)
        self.connected[user], self.pages[user] = 0, []

        def connected() -> None:
            self.connected[user] += 1

        return await send_over_sip(
            f"sip:{user}@127.0.0.1:{self.uas.port}",
            self.doc,
            ident=ident,
            t38="accept",
            caller='ACME "Fax" Dept',
            local_ip="127.0.0.1",
            credentials=credentials,
            on_connected=connected,
            on_page=self.pages[user].append,
            cancel=cancel,
            timeout=timeout,
            ring_timeout=ring_timeout,
        )


async def _with_uas(doc: Path, body) -> None:  # type: ignore[no-untyped-def]
    uas = TinyUas()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: uas, sock=uas.sock)
    try:
        await body(uas, Calls(uas, doc))
    finally:
        transport.close()
        uas.media.close()


def test_busy_no_answer_refused_cancel_and_digest_end_as_their_results(doc: Path) -> None:
    async def body(uas: TinyUas, calls: Calls) -> None:
        names = ["busy", "decline", "forbidden", "gone408", "ring", "ringcancel", "auth", "authproxy", "authwrong"]
        outcomes = await asyncio.gather(
            calls.call("busy"),
            calls.call("decline", ident="no digits"),
            calls.call("forbidden"),
            calls.call("gone408"),
            calls.call("ring", ring_timeout=2.0),
            calls.call("ringcancel", cancel_after=1.5, ring_timeout=60.0),
            calls.call("auth", credentials=(USER, PASSWORD)),
            calls.call("authproxy", credentials=(USER, PASSWORD)),
            calls.call("authwrong", credentials=(USER, "wrong")),
        )
        got = dict(zip(names, outcomes, strict=True))
        expect = {
            "busy": (Result.BUSY, "SIP 486 Busy Here", 486),
            "decline": (Result.BUSY, "SIP 600 Busy Everywhere", 600),
            "forbidden": (Result.REFUSED, "SIP 403 Forbidden", 403),
            "gone408": (Result.NO_ANSWER, "SIP 408 Request Timeout", 408),
            "ring": (Result.NO_ANSWER, "no answer within 2 s", 487),
            "ringcancel": (Result.CANCELLED, "cancelled while the call was ringing", 487),
            "auth": (Result.BUSY, "SIP 486 Busy Here", 486),
            "authproxy": (Result.BUSY, "SIP 486 Busy Here", 486),
            "authwrong": (Result.REFUSED, "SIP 401 Unauthorized", 401),
        }
        for name, (result, detail, status) in expect.items():
            o = got[name]
            assert (o.result, o.detail, o.sip_status) == (result, detail, status), f"{name}: {o}"
            assert o.pages_confirmed == 0 and o.pages_total == 1 and calls.connected.get(name, 0) == 0, name
            assert o.way == "SIP" and o.duration < LOADED, f"{name}: {o}"
        # the ringing calls were CANCELled, and the 487 acknowledged (RFC 3261 §9.1, §17.1.1.3)
        for name in ("ring", "ringcancel"):
            assert uas.seen.methods(name) == ["INVITE", "CANCEL", "ACK"], name
        assert got["ring"].duration >= 2.0
        # a refusal is acknowledged and not retried
        assert uas.seen.methods("busy") == ["INVITE", "ACK"]
        # digest: answered once with the right response; a second 401 to our answer ends the call
        assert uas.seen.methods("auth") == uas.seen.methods("authproxy") == ["INVITE", "ACK", "INVITE", "ACK"]
        assert uas.seen.methods("authwrong") == ["INVITE", "ACK", "INVITE", "ACK"]
        assert sorted(uas.seen.auth_ok) == [False, True, True]
        # caller ID: the ident's digits (E.164) and outbound.name; without digits, anonymous
        from_busy = uas.seen.requests["busy"][0][1]["from"]
        assert from_busy.startswith('"ACME \\"Fax\\" Dept" <sip:+15551000@127.0.0.1>;tag='), from_busy
        assert "<sip:anonymous@anonymous.invalid>" in uas.seen.requests["decline"][0][1]["from"]

    asyncio.run(_with_uas(doc, body))


def test_answered_without_a_fax_machine_is_no_carrier(doc: Path) -> None:
    async def body(uas: TinyUas, calls: Calls) -> None:
        silent, hangup = await asyncio.gather(calls.call("silent", timeout=8.0), calls.call("hangup"))
        assert silent.result is Result.NO_CARRIER, silent
        assert silent.detail == "no fax machine answered before the call's time limit"
        assert hangup.result is Result.NO_CARRIER, hangup
        assert hangup.detail == "the far end hung up before a fax machine answered"
        for name, o in (("silent", silent), ("hangup", hangup)):
            assert calls.connected[name] == 1 and calls.pages[name] == [], name
            assert o.way == "SIP G.711 PCMU" and o.pages_confirmed == 0, o
        assert uas.seen.methods("silent") == ["INVITE", "ACK", "BYE"]  # we hung up at the time limit
        assert uas.seen.methods("hangup") == ["INVITE", "ACK"]  # the far end's BYE ended it

    asyncio.run(_with_uas(doc, body))
