"""RFC 3261 §17 transactions (with the RFC 6026 "Accepted" state), sans-I/O.

Theory of operation: a transaction is created by the user agent for each request it sends or
receives. It is given a `send(data)` callable that already knows the destination, the current
time, and whether the transport is reliable (TCP: no retransmissions, zero wait timers). Every
timer is an absolute deadline in `timers`; the UA asks `get_timer()` for the earliest and calls
`handle_timer(now)` when it passes. The states each event may move between are the tables below:
an event missing from a table is a programming error when it is our action (LocalProtocolError)
and is ignored when it is the peer's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from appliance.sip.errors import LocalProtocolError
from appliance.sip.message import SipRequest, SipResponse

T1 = 0.5  # RTT estimate
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum time a message stays in the network
TIMER_D = 32.0

MAGIC_COOKIE = "z9hG4bK"


class TxState(StrEnum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


CALLING, TRYING, PROCEEDING = TxState.CALLING, TxState.TRYING, TxState.PROCEEDING
ACCEPTED, COMPLETED, CONFIRMED, TERMINATED = TxState.ACCEPTED, TxState.COMPLETED, TxState.CONFIRMED, TxState.TERMINATED

Send = Callable[[bytes], None]


@dataclass(frozen=True)
class TimerConfig:
    """Timer base values; tests and lossy links may shorten or stretch them."""

    t1: float = T1
    t2: float = T2
    t4: float = T4
    timer_d: float = TIMER_D


#: RFC 3261's values
DEFAULT_TIMERS = TimerConfig()

# (state, event) -> new state. Events: send_1xx/send_2xx/send_final, recv_* likewise, timer_*.
INVITE_SERVER = {
    (PROCEEDING, "send_1xx"): PROCEEDING,
    (PROCEEDING, "send_2xx"): ACCEPTED,
    (ACCEPTED, "send_2xx"): ACCEPTED,
    (PROCEEDING, "send_final"): COMPLETED,
    (COMPLETED, "recv_ack"): CONFIRMED,
    (COMPLETED, "timer_G"): COMPLETED,
    (COMPLETED, "timer_H"): TERMINATED,
    (CONFIRMED, "timer_I"): TERMINATED,
    (ACCEPTED, "timer_L"): TERMINATED,
}
NON_INVITE_SERVER = {
    (TRYING, "send_1xx"): PROCEEDING,
    (PROCEEDING, "send_1xx"): PROCEEDING,
    (TRYING, "send_2xx"): COMPLETED,
    (PROCEEDING, "send_2xx"): COMPLETED,
    (TRYING, "send_final"): COMPLETED,
    (PROCEEDING, "send_final"): COMPLETED,
    (COMPLETED, "timer_J"): TERMINATED,
}
INVITE_CLIENT = {
    (CALLING, "timer_A"): CALLING,
    (CALLING, "timer_B"): TERMINATED,
    (CALLING, "recv_1xx"): PROCEEDING,
    (PROCEEDING, "recv_1xx"): PROCEEDING,
    (CALLING, "recv_2xx"): ACCEPTED,
    (PROCEEDING, "recv_2xx"): ACCEPTED,
    (ACCEPTED, "recv_2xx"): ACCEPTED,
    (CALLING, "recv_final"): COMPLETED,
    (PROCEEDING, "recv_final"): COMPLETED,
    (COMPLETED, "recv_final"): COMPLETED,
    (COMPLETED, "timer_D"): TERMINATED,
    (ACCEPTED, "timer_M"): TERMINATED,
}
NON_INVITE_CLIENT = {
    (TRYING, "timer_E"): TRYING,
    (PROCEEDING, "timer_E"): PROCEEDING,
    (TRYING, "timer_F"): TERMINATED,
    (PROCEEDING, "timer_F"): TERMINATED,
    (TRYING, "recv_1xx"): PROCEEDING,
    (PROCEEDING, "recv_1xx"): PROCEEDING,
    (TRYING, "recv_2xx"): COMPLETED,
    (PROCEEDING, "recv_2xx"): COMPLETED,
    (TRYING, "recv_final"): COMPLETED,
    (PROCEEDING, "recv_final"): COMPLETED,
    (COMPLETED, "timer_K"): TERMINATED,
}


def _status_event(prefix: str, status: int) -> str:
    return f"{prefix}_1xx" if status < 200 else f"{prefix}_2xx" if status < 300 else f"{prefix}_final"


def server_key(request: SipRequest, method: str | None = None) -> tuple:
    """Match key of a server transaction (§17.2.3): ACK and CANCEL find their INVITE with method="INVITE"."""
    via = request.via
    method = method or ("INVITE" if request.method == "ACK" else request.method)
    if via.branch and via.branch.startswith(MAGIC_COOKIE):
        return (via.branch, via.sent_by, method)
    # RFC 2543 peers: no usable branch, fall back to the dialog and sequence identifiers
    return ("2543", request.call_id, request.from_tag, request.cseq[0], via.sent_by, method)


def client_key(message: SipRequest | SipResponse) -> tuple:
    """Match key of a client transaction (§17.1.3): our branch and the CSeq method."""
    return (message.via.branch, message.cseq[1])


class Transaction:
    """Shared machinery: state table, deadlines, retransmission bookkeeping."""

    table: ClassVar[Mapping[tuple[TxState, str], TxState]] = {}
    initial: ClassVar[TxState]  # each kind's first state

    def __init__(
        self, request: SipRequest, send: Send, reliable: bool, now: float, config: TimerConfig = DEFAULT_TIMERS
    ) -> None:
        self.state = self.initial  # then changed only by _transition
        self.request = request
        self.send = send
        self.reliable = reliable
        self.config = config
        self.timers: dict[str, float] = {}
        self.interval = config.t1
        self.timed_out = False
        #: the Call-ID of the UA's call this transaction belongs to ("" = none, e.g. REGISTER)
        self.call_id = ""

    @property
    def terminated(self) -> bool:
        return self.state == TERMINATED

    def get_timer(self) -> float | None:
        return min(self.timers.values(), default=None)

    def handle_timer(self, now: float) -> None:
        for name, deadline in sorted(self.timers.items(), key=lambda item: item[1]):
            if deadline <= now and self.timers.get(name) == deadline and not self.terminated:
                del self.timers[name]
                self._transition(f"timer_{name}")
                getattr(self, f"_on_timer_{name}", lambda now: None)(now)

    def _transition(self, event: str, local: bool = True) -> bool:
        new = self.table.get((self.state, event))
        if new is None:
            if local:
                raise LocalProtocolError(f"{type(self).__name__}: {event} not allowed in {self.state}")
            return False
        self.state = new
        if new == TERMINATED:
            self.timers.clear()
        return True

    def _wait(self, unreliable_delay: float) -> float:
        """Timers I, J, K, D fire at once on reliable transports."""
        return 0.0 if self.reliable else unreliable_delay


class ServerTransaction(Transaction):
    last_response: bytes | None = None
    last_status = 0

    def respond(self, response: SipResponse, now: float) -> None:
        """Send a response; the table decides whether it is allowed now."""
        self._transition(_status_event("send", response.status))
        self.last_response, self.last_status = bytes(response), response.status
        self.send(self.last_response)
        self._after_response(response.status, now)

    def _after_response(self, status: int, now: float) -> None:
        raise NotImplementedError

    def receive_request(self, request: SipRequest, now: float) -> None:
        """A retransmission of the request (or, for INVITE, its ACK)."""
        raise NotImplementedError


class InviteServerTransaction(ServerTransaction):
    table = INVITE_SERVER
    initial = PROCEEDING

    def _after_response(self, status: int, now: float) -> None:
        if 200 <= status < 300:
            self.timers = {"L": now + 64 * self.config.t1}
        elif status >= 300:
            self.timers["H"] = now + 64 * self.config.t1
            if not self.reliable:
                self.interval = self.config.t1
                self.timers["G"] = now + self.interval

    def receive_request(self, request: SipRequest, now: float) -> None:
        """A retransmitted INVITE is answered with the last response; an ACK ends Completed."""
        if request.method == "ACK":
            if self._transition("recv_ack", local=False):
                self.timers = {"I": now + self._wait(self.config.t4)}
        elif self.state in (PROCEEDING, COMPLETED) and self.last_response:
            self.send(self.last_response)

    def _on_timer_G(self, now: float) -> None:
        assert self.last_response is not None
        self.send(self.last_response)
        self.interval = min(2 * self.interval, self.config.t2)
        self.timers["G"] = now + self.interval

    def _on_timer_H(self, now: float) -> None:
        self.timed_out = True


class NonInviteServerTransaction(ServerTransaction):
    table = NON_INVITE_SERVER
    initial = TRYING

    def _after_response(self, status: int, now: float) -> None:
        if status >= 200:
            self.timers["J"] = now + self._wait(64 * self.config.t1)

    def receive_request(self, request: SipRequest, now: float) -> None:
        if self.state != TRYING and self.last_response:
            self.send(self.last_response)


class ClientTransaction(Transaction):
    last_response: SipResponse | None = None

    def start(self, now: float) -> None:
        self.send(bytes(self.request))
        self._arm(now)

    def _arm(self, now: float) -> None:
        raise NotImplementedError

    def receive_response(self, response: SipResponse, now: float) -> bool:
        """Returns True when the UA should see the response."""
        raise NotImplementedError


class InviteClientTransaction(ClientTransaction):
    table = INVITE_CLIENT
    initial = CALLING

    def __init__(
        self, request: SipRequest, send: Send, reliable: bool, now: float, config: TimerConfig = DEFAULT_TIMERS
    ) -> None:
        super().__init__(request, send, reliable, now, config)
        self.ack: bytes | None = None
        #: an INVITE inside an established dialog (a re-INVITE of ours), not the one that made it
        self.reinvite = False

    def _arm(self, now: float) -> None:
        self.timers["B"] = now + 64 * self.config.t1
        if not self.reliable:
            self.timers["A"] = now + self.interval

    def receive_response(self, response: SipResponse, now: float) -> bool:
        """Returns True when the UA should see the response (a retransmitted final one is absorbed)."""
        if not self._transition(_status_event("recv", response.status), local=False):
            return False
        if response.status < 200:
            self.timers.clear()
        elif response.status < 300:
            self.timers = {"M": now + 64 * self.config.t1}
        else:
            first = self.ack is None
            if self.ack is None:
                self.ack = bytes(self._build_ack(response))
                self.timers = {"D": now + self._wait(self.config.timer_d)}
            self.send(self.ack)
            if not first:
                return False
        self.last_response = response
        return True

    def _build_ack(self, response: SipResponse) -> SipRequest:
        """The ACK for a non-2xx final response belongs to the transaction (§17.1.1.3)."""
        req = self.request
        ack = SipRequest("ACK", req.uri)
        ack.headers.add("Via", req.headers.get_all("Via")[0])
        for route in req.headers.get_all("Route"):
            ack.headers.add("Route", route)
        ack.headers.add("Max-Forwards", "70")
        ack.headers.add("From", req.headers.get("From") or "")
        ack.headers.add("To", response.headers.get("To") or "")
        ack.headers.add("Call-ID", req.call_id)
        ack.headers.add("CSeq", f"{req.cseq[0]} ACK")
        return ack

    def _on_timer_A(self, now: float) -> None:
        self.send(bytes(self.request))
        self.interval *= 2
        self.timers["A"] = now + self.interval

    def _on_timer_B(self, now: float) -> None:
        self.timed_out = True


class NonInviteClientTransaction(ClientTransaction):
    table = NON_INVITE_CLIENT
    initial = TRYING

    def _arm(self, now: float) -> None:
        self.timers["F"] = now + 64 * self.config.t1
        if not self.reliable:
            self.timers["E"] = now + self.interval

    def receive_response(self, response: SipResponse, now: float) -> bool:
        if not self._transition(_status_event("recv", response.status), local=False):
            return False
        if response.status >= 200:
            self.timers = {"K": now + self._wait(self.config.t4)}
        self.last_response = response
        return True

    def _on_timer_E(self, now: float) -> None:
        self.send(bytes(self.request))
        self.interval = self.config.t2 if self.state == PROCEEDING else min(2 * self.interval, self.config.t2)
        self.timers["E"] = now + self.interval

    def _on_timer_F(self, now: float) -> None:
        self.timed_out = True
