"""Two user agents wired together in memory, with a fake clock and a loss hook."""
from __future__ import annotations

import random
from typing import Callable

from appliance.sip.events import Event, Local
from appliance.sip.message import SipRequest, SipResponse, parse_message
from appliance.sip.sdp import offer_audio
from appliance.sip.useragent import UserAgent

A = Local("udp", "127.0.0.1", 5061)
B = Local("udp", "127.0.0.2", 5060)
OFFER = offer_audio("127.0.0.1", 40000, 1, 1)


class Net:
    """Delivers datagrams between the UAs; `drop(data)` returning True loses a datagram."""

    def __init__(self, a_local: Local = A, b_local: Local = B) -> None:
        self.a = UserAgent(rng=random.Random(1), user_agent="ua-a")
        self.b = UserAgent(rng=random.Random(2), user_agent="ua-b")
        self.locals = {self.a: a_local, self.b: b_local}
        self.route = {(a_local.host, a_local.port): self.a, (b_local.host, b_local.port): self.b}
        self.log: list[tuple[str, SipRequest | SipResponse]] = []
        self.drop: Callable[[bytes], bool] = lambda data: False

    def run(self, now: float) -> int:
        """Move datagrams until both sides are quiet; returns how many were delivered."""
        moved = 0
        while True:
            batch = [(ua, item) for ua in (self.a, self.b) for item in ua.datagrams_to_send()]
            if not batch:
                return moved
            for sender, (data, dest, local) in batch:
                self.log.append(("a" if sender is self.a else "b", parse_message(data)))
                if self.drop(data):
                    continue
                target = self.route[dest]
                target.receive(data, (local.host, local.port), self.locals[target], now)
                moved += 1

    def tick(self, now: float) -> None:
        for ua in (self.a, self.b):
            timer = ua.get_timer()
            if timer is not None and timer <= now:
                ua.handle_timer(now)
        self.run(now)

    def advance(self, start: float, end: float, step: float = 0.25) -> None:
        t = start
        while t <= end:
            self.tick(t)
            t += step

    def sent(self, side: str) -> list[str]:
        """Short labels of what `side` sent: "INVITE", "200 INVITE", ..."""
        return [m.method if isinstance(m, SipRequest) else f"{m.status} {m.cseq[1]}"
                for s, m in self.log if s == side]


def events(ua: UserAgent) -> list[Event]:
    out = []
    while (event := ua.next_event()) is not None:
        out.append(event)
    return out


PEER = ("192.0.2.50", 5099)   # a made-up peer address; nothing is sent on a network here
LOCAL = Local("udp", "192.0.2.1", 5060)


def raw(method: str = "OPTIONS", *, uri: str = "sip:100@192.0.2.1", branch: str = "z9hG4bKraw1",
        call_id: str = "raw-1@peer", cseq: str | None = None, via: str | None = None,
        to: str = "<sip:100@192.0.2.1>", replace: dict[str, str | None] | None = None,
        extra: list[str] = (), body: str = "") -> bytes:
    """A request as a peer would send it; `replace` swaps (or, with None, removes) a header."""
    headers = {
        "Via": via or f"SIP/2.0/UDP 192.0.2.50:5099;branch={branch};rport",
        "Max-Forwards": "70",
        "From": "\"Peer\" <sip:555@192.0.2.50>;tag=peer1",
        "To": to,
        "Call-ID": call_id,
        "CSeq": cseq or f"1 {method}",
        "Contact": "<sip:555@192.0.2.50:5099>",
    }
    for name, value in (replace or {}).items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    lines = [f"{method} {uri} SIP/2.0", *(f"{k}: {v}" for k, v in headers.items()), *extra]
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def replies(ua: UserAgent) -> list[tuple[SipResponse, tuple[str, int]]]:
    """Responses the UA wants to send, parsed, with their destination."""
    out = []
    for data, dest, _local in ua.datagrams_to_send():
        msg = parse_message(data)
        assert isinstance(msg, SipResponse), msg
        out.append((msg, dest))
    return out


def statuses(ua: UserAgent) -> list[str]:
    return [f"{m.status} {m.reason}" for m, _ in replies(ua)]
