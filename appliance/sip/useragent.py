"""The sans-I/O SIP user agent: bytes and `now` in; bytes to send, one deadline and events out.

A transport feeds every received datagram/frame to `receive`, sends what `datagrams_to_send`
returns, calls `handle_timer` at `get_timer()`, and hands `next_event()` to the application. The
application acts on calls with `answer_call`, `reject_call`, `hangup`, `invite`, ... Nothing here
reads a clock, opens a socket or raises because of what a peer sent.

Offers inside a dialog (re-INVITE, UPDATE with SDP) go to the application as ReinviteReceived and
are answered with `answer_reinvite`/`reject_reinvite`; our own are sent with `reinvite`, and a
491 (both sides re-INVITEd at once) is retried by the UA after the RFC 3261 §14.1 backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict, TypeGuard

from appliance.protocol import Transitions
from appliance.sip.callinfo import answerable, contact_uri, incoming_call, make_response, reply_target, stamp_via
from appliance.sip.dialog import Dialog
from appliance.sip.errors import LocalProtocolError, SipParseError
from appliance.sip.events import (
    Addr,
    Admission,
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgress,
    Event,
    IncomingCall,
    Local,
    ReinviteAnswered,
    ReinviteConfirmed,
    ReinviteFailed,
    ReinviteReceived,
    ReinviteRetrying,
)
from appliance.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from appliance.sip.sdp import SdpParseError, SessionDescription
from appliance.sip.transaction import (
    ACCEPTED,
    DEFAULT_TIMERS,
    PROCEEDING,
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    ServerTransaction,
    TimerConfig,
    client_key,
    server_key,
)
from appliance.sip.uri import SipUri, format_host, format_name_addr, parse_name_addr

__all__ = ["UserAgent", "Local", "Addr"]

log = logging.getLogger("faxbridge.sip")

SUPPORTED = ("timer",)
UNSUPPORTED_KNOWN = {"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "NOTIFY", "REFER", "PRACK"}
IMPLEMENTED = {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE"}
MAX_GLARE_RETRIES = 3  # 491s in a row before our re-INVITE is given up (ReinviteFailed 491)

#: an internal error is logged with its traceback at most this often (the rest are counted)
ERROR_LOG_INTERVAL = 60.0

# (call_id, our request, where it went, the 401/407, where that came from, now) -> True when it
# resent the request (see resend_request)
ChallengeHook = Callable[[str, SipRequest, Addr, SipResponse, Addr, float], bool]
# makes the client transaction of a request outside calls: (request, send, reliable, now, timers)
ClientTransactionFactory = Callable[[SipRequest, Send, bool, float, TimerConfig], NonInviteClientTransaction]


@dataclass
class PendingOffer:
    """A re-INVITE or UPDATE with a new offer, waiting for answer_reinvite/reject_reinvite."""

    request: SipRequest
    tx: ServerTransaction
    reply_to: Addr | None
    offer: SessionDescription | None


def _response_contact(resp: SipResponse) -> str:
    try:
        return parse_name_addr(resp.headers.get("Contact") or "")[1]
    except SipParseError:
        return ""


class Role(StrEnum):
    UAS = "uas"  # the peer called us
    UAC = "uac"  # we called (our own test fax)


class CallPhase(StrEnum):
    CALLING = "calling"  # uac: INVITE sent, nothing heard
    EARLY = "early"  # uas: not answered yet; uac: a provisional response came
    ANSWERED = "answered"  # uas: our 2xx (to the INVITE or a re-INVITE) awaits its ACK
    CONFIRMED = "confirmed"  # the dialog is up and nothing of ours awaits an ACK
    ENDING = "ending"  # our BYE is out
    ENDED = "ended"  # over; the UA keeps the call 64*T1 for stray retransmissions


#: every change of a call's state; another is our bug (LocalProtocolError)
CALL_PHASES = Transitions(
    "call",
    {
        CallPhase.CALLING: (CallPhase.EARLY, CallPhase.CONFIRMED, CallPhase.ENDED),
        CallPhase.EARLY: (CallPhase.ANSWERED, CallPhase.CONFIRMED, CallPhase.ENDED),
        CallPhase.ANSWERED: (CallPhase.CONFIRMED, CallPhase.ENDING, CallPhase.ENDED),
        CallPhase.CONFIRMED: (CallPhase.ANSWERED, CallPhase.ENDING, CallPhase.ENDED),
        CallPhase.ENDING: (CallPhase.ENDED,),
        # a 2xx to our INVITE after we gave up on it (CANCEL, timeout): confirmed only to send the BYE
        CallPhase.ENDED: (CallPhase.CONFIRMED,),
    },
    error=LocalProtocolError,
)


def _is_reinvite(tx: ClientTransaction) -> TypeGuard[InviteClientTransaction]:
    return isinstance(tx, InviteClientTransaction) and tx.reinvite


def _origin(sd: SessionDescription) -> tuple[str, ...]:
    """The part of o= that identifies one version of a session: user, session id, version."""
    return tuple(sd.origin.split()[:3])


@dataclass
class Call:
    """Per-call state of the UA: the INVITE, its transaction, the dialog once there is one."""

    call_id: str
    role: Role
    state: CallPhase  # changed only by move()
    invite: SipRequest
    invite_tx: InviteServerTransaction | InviteClientTransaction
    local_tag: str
    local: Local
    remote: Addr  # where the INVITE came from / went to
    reply_to: Addr | None = None  # response target (§18.2.2) for a uas call
    dialog: Dialog | None = None
    local_sdp: str | None = None
    response_2xx: bytes | None = None
    ack: bytes | None = None
    timers: dict[str, float] = field(default_factory=dict)
    interval: float = 0.0
    reinvite: bool = False  # the 2xx awaiting ACK answers a re-INVITE (not the initial INVITE)
    hangup_pending: bool = False
    cancel_pending: bool = False
    response_to: Addr | None = None  # where the 2xx awaiting ACK is retransmitted to
    ack_cseq: int = 0  # CSeq of the INVITE whose 2xx awaits ACK
    acks: dict[int, bytes] = field(default_factory=dict)  # our ACKs for 2xx, by CSeq
    remote_origin: tuple[str, ...] | None = None  # o= of the peer's last SDP (offer or answer)
    offer_in: PendingOffer | None = None  # the peer's offer the application has to answer
    reinvite_tx: InviteClientTransaction | None = None  # our re-INVITE, until its final response
    reinvite_sdp: str | None = None  # its offer (kept for a 491 retry or a queued re-INVITE)
    reinvite_queued: bool = False  # reinvite() while our 2xx awaited its ACK: sent on ACK
    glare_retries: int = 0
    admission: Admission | None = None  # why the call gate let an incoming call in

    def move(self, to: CallPhase) -> None:
        self.state = CALL_PHASES.move(self.state, to)


class UserAgent:
    """User agent core serving incoming calls (UAS) and our own test calls (UAC)."""

    def __init__(
        self,
        *,
        user_agent: str = "Faxbridge/0.1",
        allow: str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE",
        rng: random.Random | None = None,
        timers: TimerConfig = DEFAULT_TIMERS,
    ) -> None:
        self.user_agent = user_agent
        self.allow = allow
        self.timers = timers
        self.stats: Counter[str] = Counter()
        self._rng = rng or random.Random()
        self._out: list[tuple[bytes, Addr, Local]] = []
        self._events: deque[Event] = deque()
        self._calls: dict[str, Call] = {}
        self._server_txs: dict[tuple, ServerTransaction] = {}
        self._client_txs: dict[tuple, ClientTransaction] = {}
        self._client_dest: dict[tuple, Addr] = {}  # where each client transaction's request goes
        self._client_call_ids: Counter[str] = Counter()  # Call-IDs of live client transactions
        self._last_error_log = -ERROR_LOG_INTERVAL
        # Called for a 401/407 to any request of ours in a call (INVITE, re-INVITE, BYE) before the
        # UA treats it as a failure; return True after resending it with resend_request.
        self.challenge_hook: ChallengeHook | None = None

    # --- driver interface --------------------------------------------------------------------

    def receive(self, data: bytes, remote: Addr, local: Local, now: float) -> None:
        """Handle one datagram or stream frame. Never raises: bad input is answered or dropped.

        For a UA without a call gate in front (our own test-fax sender); with one, the gate parses
        and hands over the message with `receive_message`."""
        if not data:
            self.stats["dropped_malformed"] += 1
            return
        if not data.strip(b"\r\n"):
            self.stats["keepalives"] += 1
            return
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            self._malformed(exc, remote, local)
            return
        except Exception as exc:  # noqa: BLE001 - logged: a parser bug must not take the listener down
            self._internal_error(exc, None, remote, 0.0)
            return
        self.receive_message(msg, remote, local, now)

    def receive_message(
        self, msg: SipMessage, remote: Addr, local: Local, now: float, admission: Admission | None = None
    ) -> None:
        """Handle one parsed message; `admission` is the call gate's verdict on a new INVITE.

        Never raises. An internal error on a request answers 500 and frees what the request
        created (its transaction, its call), so no bug of ours holds state for ever."""
        try:
            if isinstance(msg, SipResponse):
                self._handle_response(msg, remote, now)
            else:
                self._handle_request(msg, remote, local, now, admission)
        except Exception as exc:  # noqa: BLE001 - logged: a bug of ours must not take the listener down
            self._internal_error(exc, msg, remote, now)

    def _internal_error(self, exc: Exception, msg: SipMessage | None, remote: Addr, now: float) -> None:
        """`exc` (a bug of ours) is logged with its traceback, and what `msg` created is freed."""
        self.stats["internal_errors"] += 1
        if time.monotonic() - self._last_error_log >= ERROR_LOG_INTERVAL:  # not a traceback per packet
            self._last_error_log = time.monotonic()
            log.error(
                "SIP: internal error handling a message from %s (further ones for %.0f s only counted)",
                remote,
                ERROR_LOG_INTERVAL,
                exc_info=exc,
            )
        if not isinstance(msg, SipRequest) or msg.method == "ACK":
            return
        try:
            key = server_key(msg)
        except Exception:  # noqa: BLE001 - not even a key: nothing was created for it
            return
        tx = self._server_txs.get(key)
        if tx is not None and tx.last_status < 200:
            try:  # a final answer: the transaction then ends on its own timers
                tx.respond(self._reply(msg, 500, "Server Internal Error", self._tag()), now)
            except Exception:  # noqa: BLE001 - could not even answer: just forget it
                self._server_txs.pop(key, None)
        call = self._calls.get(msg.call_id)
        if call is not None and call.invite is msg:  # the call this very INVITE created
            del self._calls[msg.call_id]
            self._events = deque(
                e for e in self._events if not (isinstance(e, IncomingCall) and e.call_id == msg.call_id)
            )

    def datagrams_to_send(self) -> list[tuple[bytes, Addr, Local]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        deadlines = [t for tx in self._transactions() if (t := tx.get_timer()) is not None]
        deadlines += [t for call in self._calls.values() for t in call.timers.values()]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        for tx in self._transactions():
            tx.handle_timer(now)
            if tx.timed_out and isinstance(tx, ClientTransaction):
                tx.timed_out = False
                self._client_timeout(tx, now)
        for call in list(self._calls.values()):
            for name, deadline in sorted(call.timers.items(), key=lambda item: item[1]):
                if deadline <= now and call.timers.get(name) == deadline:
                    del call.timers[name]
                    getattr(self, f"_call_timer_{name}")(call, now)
        self._server_txs = {k: t for k, t in self._server_txs.items() if not t.terminated}
        if any(t.terminated for t in self._client_txs.values()):
            self._client_txs = {k: t for k, t in self._client_txs.items() if not t.terminated}
            self._client_dest = {k: d for k, d in self._client_dest.items() if k in self._client_txs}
            self._client_call_ids = Counter(t.call_id for t in self._client_txs.values())

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # --- application actions: incoming calls -------------------------------------------------

    def send_provisional(self, call_id: str, status: int, now: float, sdp: str | None = None) -> None:
        call = self._uas_call(call_id, CallPhase.EARLY)
        if not 100 < status < 200:
            raise LocalProtocolError(f"{status} is not a provisional status")
        reason = {180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued"}.get(status, "Session Progress")
        headers = [("Contact", self._contact(call.local))]
        if sdp is not None:
            headers.append(("Content-Type", "application/sdp"))
        self._answer_invite(call, self._reply(call.invite, status, reason, call.local_tag, headers, sdp or b""), now)

    def answer_call(self, call_id: str, sdp: str, now: float) -> None:
        call = self._uas_call(call_id, CallPhase.EARLY)
        response = self._ok_2xx(call, sdp)
        self._answer_invite(call, response, now)
        call.dialog = Dialog.as_uas(call.invite, response, self._rng.randrange(1, 2**16))
        if not call.dialog.remote_target:
            call.dialog.remote_target = parse_name_addr(call.invite.headers.get("From") or "")[1]
        call.response_to, call.ack_cseq = call.reply_to, call.invite.cseq[0]
        self._await_ack(call, response, sdp, now)

    def reject_call(
        self, call_id: str, status: int, reason: str, now: float, extra_headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        call = self._uas_call(call_id, CallPhase.EARLY)
        if not 300 <= status < 700:
            raise LocalProtocolError(f"{status} is not a rejection status")
        self._reject(call, status, reason, now, list(extra_headers), "rejected")

    def hangup(self, call_id: str, now: float) -> None:
        """End a call in whatever state it is; a call that already ended is left alone."""
        call = self._calls.get(call_id)
        if call is None or call.state in (CallPhase.ENDED, CallPhase.ENDING):
            return
        if call.role == Role.UAS and call.state == CallPhase.EARLY:
            self._reject(call, 480, "Temporarily Unavailable", now, [], "local hangup")
        elif call.role == Role.UAC and call.state in (CallPhase.CALLING, CallPhase.EARLY):
            self.cancel(call_id, now)
        elif call.state == CallPhase.ANSWERED and not call.reinvite:
            call.hangup_pending = True  # §15: no BYE before the ACK (or its timeout)
        else:
            self._send_bye(call, now)

    # --- application actions: offers inside a dialog (re-INVITE, UPDATE) ----------------------

    def answer_reinvite(self, call_id: str, sdp: str, now: float) -> None:
        """Accept the peer's re-INVITE/UPDATE (ReinviteReceived) with 200 and our SDP.

        A re-INVITE's 200 is retransmitted until the ACK (then ReinviteConfirmed); an UPDATE's is
        not (ReinviteConfirmed at once). A call that ended meanwhile is left alone.
        """
        call, pending = self._pending_offer(call_id)
        if pending is None:
            return
        call.offer_in = None
        if pending.offer is not None:
            call.remote_origin = _origin(pending.offer)
        response = self._ok_2xx(call, sdp, pending.request)
        pending.tx.respond(response, now)
        if pending.request.method == "INVITE":
            call.reinvite = True
            call.response_to, call.ack_cseq = pending.reply_to, pending.request.cseq[0]
            self._await_ack(call, response, sdp, now)
        else:
            call.local_sdp = sdp
            self._events.append(ReinviteConfirmed(call.call_id))

    def reject_reinvite(
        self, call_id: str, status: int, reason: str, now: float, extra_headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Refuse the peer's re-INVITE/UPDATE (e.g. 488): the session stays as it was."""
        if not 300 <= status < 700:
            raise LocalProtocolError(f"{status} is not a rejection status")
        call, pending = self._pending_offer(call_id)
        if pending is None:
            return
        call.offer_in = None
        pending.tx.respond(self._reply(pending.request, status, reason, None, list(extra_headers)), now)

    def reinvite(self, call_id: str, sdp: str, now: float) -> None:
        """Send a new offer in the dialog (re-INVITE): ReinviteAnswered, ReinviteFailed or, on
        glare, ReinviteRetrying and a resend by the UA. While our 2xx to the peer still awaits its
        ACK the re-INVITE is queued until the ACK. A call that ended is left alone."""
        call = self._calls.get(call_id)
        if call is None or call.dialog is None:
            raise LocalProtocolError(f"no established call {call_id}")
        if call.state in (CallPhase.ENDING, CallPhase.ENDED):
            return
        if call.reinvite_tx is not None or call.reinvite_queued or "reinvite_retry" in call.timers:
            raise LocalProtocolError(f"call {call_id}: a re-INVITE of ours is still pending")
        if call.offer_in is not None:
            raise LocalProtocolError(f"call {call_id}: answer the peer's offer first")
        call.glare_retries = 0
        if call.state == CallPhase.ANSWERED:
            call.reinvite_sdp, call.reinvite_queued = sdp, True
            return
        self._send_reinvite(call, sdp, now)

    def resend_request(
        self, call_id: str, request: SipRequest, extra_headers: Iterable[tuple[str, str]], now: float
    ) -> SipRequest:
        """Send `request` of ours again as a new transaction: new branch, next CSeq, the headers in
        `extra_headers` replacing any of the same name (Authorization, Proxy-Authorization).

        The hook for digest authentication: call it from `challenge_hook` with the request that
        got the 401/407. The resent INVITE or re-INVITE takes the original's place in the call.
        """
        call = self._calls.get(call_id)
        if call is None or call.state == CallPhase.ENDED:
            raise LocalProtocolError(f"no live call {call_id}")
        extra = list(extra_headers)
        replaced = {name.lower() for name, _ in extra} | {"via", "cseq"}
        in_dialog = bool(request.to_tag) and call.dialog is not None
        if in_dialog:
            assert call.dialog is not None
            call.dialog.local_cseq += 1
            cseq = call.dialog.local_cseq
        else:
            cseq = request.cseq[0] + 1
        new = SipRequest(request.method, request.uri)
        new.headers.add("Via", self._via(call.local))
        for name, value in request.headers:
            if name.lower() not in replaced:
                new.headers.add(name, value)
        new.headers.add("CSeq", f"{cseq} {request.method}")
        for name, value in extra:
            new.headers.add(name, value)
        new.body = request.body
        dest = self._dialog_hop(call) if in_dialog else call.remote
        reliable = call.local.transport != "udp"
        tx: ClientTransaction
        if request.method == "INVITE":
            tx = InviteClientTransaction(new, self._sender(dest, call.local), reliable, now, self.timers)
            if in_dialog:
                tx.reinvite = True
                call.reinvite_tx = tx
            else:
                call.invite, call.invite_tx = new, tx
        else:
            tx = NonInviteClientTransaction(new, self._sender(dest, call.local), reliable, now, self.timers)
        self._start_client(tx, call_id, now, dest)
        return new

    # --- application actions: our own calls ---------------------------------------------------

    def invite(
        self,
        target: str,
        *,
        from_uri: str,
        sdp: str,
        local: Local,
        remote: Addr,
        now: float,
        from_display: str = "",
        headers: Iterable[tuple[str, str]] = (),
    ) -> str:
        call_id = f"{self._rng.getrandbits(96):024x}@{format_host(local.host)}"
        tag = self._tag()
        req = SipRequest("INVITE", target)
        req.headers.add("Via", self._via(local))
        req.headers.add("Max-Forwards", "70")
        req.headers.add("From", format_name_addr(from_display, from_uri, {"tag": tag}))
        req.headers.add("To", format_name_addr("", target))
        req.headers.add("Call-ID", call_id)
        req.headers.add("CSeq", "1 INVITE")
        for name, value in [
            ("Contact", self._contact(local)),
            *self._capabilities(),
            *headers,
            ("Content-Type", "application/sdp"),
        ]:
            req.headers.add(name, value)
        req.body = sdp.encode("utf-8")
        tx = InviteClientTransaction(req, self._sender(remote, local), local.transport != "udp", now, self.timers)
        call = Call(call_id, Role.UAC, CallPhase.CALLING, req, tx, tag, local, remote, local_sdp=sdp)
        self._calls[call_id] = call
        self._start_client(tx, call_id, now, remote)
        return call_id

    def cancel(self, call_id: str, now: float) -> None:
        call = self._calls.get(call_id)
        if call is None or call.role != Role.UAC:
            raise LocalProtocolError(f"no outgoing call {call_id}")
        if call.state not in (CallPhase.CALLING, CallPhase.EARLY):
            return
        if call.invite_tx.state != PROCEEDING:
            call.cancel_pending = True  # §9.1: CANCEL only after a provisional response
            return
        inv = call.invite
        req = SipRequest("CANCEL", inv.uri)
        req.headers.add("Via", inv.headers.get_all("Via")[0])
        for name in ("Route", "Max-Forwards", "From", "To", "Call-ID"):
            for value in inv.headers.get_all(name):
                req.headers.add(name, value)
        req.headers.add("CSeq", f"{inv.cseq[0]} CANCEL")
        tx = NonInviteClientTransaction(
            req, self._sender(call.remote, call.local), call.local.transport != "udp", now, self.timers
        )
        self._start_client(tx, call_id, now, call.remote)
        call.timers["cancel"] = now + 64 * self.timers.t1

    # --- receiving ----------------------------------------------------------------------------

    def _malformed(self, exc: SipParseError, remote: Addr, local: Local) -> None:
        partial = exc.partial
        if isinstance(partial, SipRequest) and partial.method != "ACK" and answerable(partial):
            self.stats["answered_malformed"] += 1
            stamp_via(partial, remote)
            self._out.append(
                (
                    bytes(self._reply(partial, exc.status, exc.reason, self._tag())),
                    reply_target(partial, remote, local),
                    local,
                )
            )
        else:
            self.stats["dropped_malformed"] += 1
            log.info("SIP: dropped malformed message from %s: %s", remote, exc.reason)

    def _handle_request(
        self, req: SipRequest, remote: Addr, local: Local, now: float, admission: Admission | None = None
    ) -> None:
        stamp_via(req, remote)
        key = server_key(req)
        tx = self._server_txs.get(key)
        if req.method == "ACK":
            if isinstance(tx, InviteServerTransaction) and tx.state != ACCEPTED:
                tx.receive_request(req, now)
            else:
                self._dialog_ack(req, now)
            return
        if tx is not None:
            self.stats["retransmissions"] += 1
            tx.receive_request(req, now)
            return
        cls = InviteServerTransaction if req.method == "INVITE" else NonInviteServerTransaction
        reply_to = reply_target(req, remote, local)
        tx = cls(req, self._sender(reply_to, local), local.transport != "udp", now, self.timers)
        self._server_txs[key] = tx
        if req.method == "INVITE":
            tx.respond(self._reply(req, 100, "Trying"), now)
        refusal = self._refusal(req)
        if refusal:
            tx.respond(self._reply(req, *refusal[:2], self._tag(), refusal[2]), now)
            return
        if isinstance(tx, InviteServerTransaction):  # the request is an INVITE
            self._on_invite(req, tx, remote, local, reply_to, now, admission)
        else:
            getattr(self, f"_on_{req.method.lower()}")(req, tx, now)

    def _refusal(self, req: SipRequest) -> tuple[int, str, list[tuple[str, str]]] | None:
        """Checks every request passes before its method handler sees it."""
        if req.headers.get("Max-Forwards") == "0":
            return 483, "Too Many Hops", []
        if req.method not in IMPLEMENTED:
            if req.method in UNSUPPORTED_KNOWN and (not req.to_tag or self._dialog_call(req)):
                return 405, "Method Not Allowed", [("Allow", self.allow)]
            if req.method in UNSUPPORTED_KNOWN:
                return 481, "Call/Transaction Does Not Exist", []
            return 501, "Not Implemented", [("Allow", self.allow)]
        try:
            SipUri.parse(req.uri)
        except SipParseError as exc:
            return exc.status, "Unsupported URI Scheme" if exc.status == 416 else "Bad Request-URI", []
        if req.method == "INVITE":
            unsupported = [o for o in req.headers.get_list("Require") if o.lower() not in SUPPORTED]
            if unsupported:
                return 420, "Bad Extension", [("Unsupported", ", ".join(unsupported))]
        return None

    def _on_invite(
        self,
        req: SipRequest,
        tx: InviteServerTransaction,
        remote: Addr,
        local: Local,
        reply_to: Addr,
        now: float,
        admission: Admission | None = None,
    ) -> None:
        if req.to_tag:
            self._reinvite(req, tx, reply_to, now)
            return
        ctype = (req.headers.get("Content-Type") or "application/sdp").split(";")[0].strip().lower()
        if req.body and ctype != "application/sdp":
            tx.respond(
                self._reply(req, 415, "Unsupported Media Type", self._tag(), [("Accept", "application/sdp")]), now
            )
            return
        offer = None
        if req.body:
            try:
                offer = SessionDescription.parse(req.body)
            except SdpParseError:
                tx.respond(self._reply(req, 400, "Bad SDP", self._tag()), now)
                return
        if req.call_id in self._calls:
            tx.respond(self._reply(req, 482, "Loop Detected", self._tag()), now)
            return
        call = Call(
            req.call_id, Role.UAS, CallPhase.EARLY, req, tx, self._tag(), local, remote, reply_to, admission=admission
        )
        call.remote_origin = _origin(offer) if offer is not None else None
        self._calls[req.call_id] = call
        tx.call_id = req.call_id
        self._events.append(incoming_call(req, offer, remote, local, admission))

    def _reinvite(self, req: SipRequest, tx: InviteServerTransaction, reply_to: Addr, now: float) -> None:
        call = self._dialog_call(req)
        if call is None:
            tx.respond(self._reply(req, 481, "Call/Transaction Does Not Exist"), now)
        else:
            self._new_offer(call, req, tx, reply_to, now)

    def _new_offer(self, call: Call, req: SipRequest, tx: ServerTransaction, reply_to: Addr | None, now: float) -> None:
        """A re-INVITE, or an UPDATE with a body: refuse it here (order, glare, body) or hand it to
        the application as ReinviteReceived."""
        dialog = call.dialog
        assert dialog is not None
        refusal: tuple[int, str, list[tuple[str, str]]] | None = None
        if call.state == CallPhase.ENDING:
            refusal = 481, "Call/Transaction Does Not Exist", []  # we sent BYE
        elif dialog.remote_cseq is not None and req.cseq[0] <= dialog.remote_cseq:
            refusal = 500, "CSeq Out of Order", []  # §12.2.2
        elif call.reinvite_tx is not None:
            refusal = 491, "Request Pending", []  # glare: our re-INVITE is pending (§14.2)
        elif call.offer_in is not None:
            refusal = 500, "Server Internal Error", [("Retry-After", str(self._rng.randint(0, 10)))]
        elif req.method == "INVITE" and (call.state != CallPhase.CONFIRMED or call.local_sdp is None):
            refusal = 491, "Request Pending", []  # our own 2xx still awaits its ACK
        if refusal is None:
            ctype = (req.headers.get("Content-Type") or "application/sdp").split(";")[0].strip().lower()
            if req.body and ctype != "application/sdp":
                refusal = 415, "Unsupported Media Type", [("Accept", "application/sdp")]
        offer = None
        if refusal is None and req.body:
            try:
                offer = SessionDescription.parse(req.body)
            except SdpParseError:
                refusal = 400, "Bad SDP", []
        if refusal is not None:
            tx.respond(self._reply(req, *refusal[:2], None, refusal[2]), now)
            return
        dialog.remote_target = contact_uri(req) or dialog.remote_target  # target refresh (§12.2.2)
        dialog.remote_cseq = req.cseq[0]
        if "reinvite_retry" in call.timers:
            # we were waiting out a 491: the peer's offer wins, ours is dropped (the app may re-offer)
            del call.timers["reinvite_retry"]
            call.reinvite_sdp = None
            self._events.append(ReinviteFailed(call.call_id, 491, "Superseded by the peer's re-INVITE"))
        call.offer_in = PendingOffer(req, tx, reply_to, offer)
        same = offer is not None and call.remote_origin is not None and _origin(offer) == call.remote_origin
        self._events.append(ReinviteReceived(call.call_id, offer, same, req.method))

    def _on_cancel(self, req: SipRequest, tx: NonInviteServerTransaction, now: float) -> None:
        invite_tx = self._server_txs.get(server_key(req, "INVITE"))
        call = self._calls.get(invite_tx.call_id) if invite_tx is not None else None
        if invite_tx is None or call is None:
            tx.respond(self._reply(req, 481, "Call/Transaction Does Not Exist", self._tag()), now)
            return
        tx.respond(self._reply(req, 200, "OK", call.local_tag), now)
        if invite_tx.state == PROCEEDING and call.state == CallPhase.EARLY:
            self._reject(call, 487, "Request Terminated", now, [], "CANCEL")

    def _on_bye(self, req: SipRequest, tx: NonInviteServerTransaction, now: float) -> None:
        call = self._dialog_call(req)
        if call is None:
            tx.respond(self._reply(req, 481, "Call/Transaction Does Not Exist", self._tag()), now)
            return
        tx.respond(self._reply(req, 200, "OK"), now)
        self._end(call, "remote BYE", None, now)

    def _on_options(self, req: SipRequest, tx: NonInviteServerTransaction, now: float) -> None:
        headers = [*self._capabilities(), ("Accept", "application/sdp")]
        tx.respond(self._reply(req, 200, "OK", self._tag(), headers), now)

    def _on_info(self, req: SipRequest, tx: NonInviteServerTransaction, now: float) -> None:
        call = self._dialog_call(req)
        if call is None:
            tx.respond(self._reply(req, 481, "Call/Transaction Does Not Exist", self._tag()), now)
            return
        if req.method == "UPDATE" and req.body:
            self._new_offer(call, req, tx, None, now)
            return
        headers: list[tuple[str, str]] = []
        if req.method == "UPDATE" and req.headers.get("Session-Expires"):
            headers.append(("Session-Expires", req.headers.get("Session-Expires") or ""))
        tx.respond(self._reply(req, 200, "OK", None, headers), now)

    _on_update = _on_info

    def _dialog_ack(self, req: SipRequest, now: float) -> None:
        call = self._dialog_call(req)
        if call is None or call.state != CallPhase.ANSWERED or (call.ack_cseq and req.cseq[0] != call.ack_cseq):
            self.stats["ignored_acks"] += 1
            return
        call.timers.pop("retransmit", None)
        call.timers.pop("ack", None)
        call.move(CallPhase.CONFIRMED)
        if not call.reinvite:
            self._events.append(CallConfirmed(call.call_id))
        else:
            answer = None
            if req.body:  # the answer to the offer in our 2xx (re-INVITE without SDP)
                try:
                    answer = SessionDescription.parse(req.body)
                    call.remote_origin = _origin(answer)
                except SdpParseError:
                    self.stats["bad_ack_sdp"] += 1
            self._events.append(ReinviteConfirmed(call.call_id, answer))
        if call.hangup_pending:
            self._send_bye(call, now)
        elif call.reinvite_queued:
            call.reinvite_queued = False
            assert call.reinvite_sdp is not None
            self._send_reinvite(call, call.reinvite_sdp, now)

    def _handle_response(self, resp: SipResponse, source: Addr, now: float) -> None:
        tx = self._client_txs.get(client_key(resp))
        if tx is None:
            call = self._calls.get(resp.call_id)
            ack = call.acks.get(resp.cseq[0]) if call else None
            if call and ack and resp.cseq[1] == "INVITE" and 200 <= resp.status < 300:
                self._out.append((ack, self._dialog_hop(call), call.local))  # 2xx retransmission
            else:
                self.stats["dropped_responses"] += 1
            return
        if not tx.receive_response(resp, now):
            return
        call = self._calls.get(tx.call_id)
        if call is None:
            return
        if resp.status in (401, 407) and self.challenge_hook is not None and call.state != CallPhase.ENDED:
            if call.reinvite_tx is not None and call.reinvite_tx is tx:
                call.reinvite_tx = None  # resend_request puts the new one in its place
            dest = self._client_dest.get(client_key(tx.request), call.remote)
            if self.challenge_hook(call.call_id, tx.request, dest, resp, source, now):
                return
            if _is_reinvite(tx) and call.reinvite_tx is None:
                call.reinvite_tx = tx  # not taken: fail it below
        if _is_reinvite(tx):
            self._reinvite_response(call, tx, resp, now)
        elif isinstance(tx, InviteClientTransaction):
            self._invite_response(call, resp, now)
        elif resp.cseq[1] == "BYE" and resp.status >= 200:
            self._end(call, "local hangup", resp.status, now)

    def _invite_response(self, call: Call, resp: SipResponse, now: float) -> None:
        if resp.status < 200:
            if call.state == CallPhase.CALLING:
                call.move(CallPhase.EARLY)
            self._events.append(CallProgress(call.call_id, resp.status, resp.reason))
            if call.cancel_pending:
                call.cancel_pending = False
                self.cancel(call.call_id, now)
        elif resp.status < 300:
            self._uac_2xx(call, resp, now)
        elif call.state not in (CallPhase.ENDED, CallPhase.CONFIRMED):
            call.move(CallPhase.ENDED)
            call.timers = {"expire": now + 64 * self.timers.t1}
            self._events.append(CallFailed(call.call_id, resp.status, resp.reason))

    def _uac_2xx(self, call: Call, resp: SipResponse, now: float) -> None:
        if call.dialog is not None:
            if call.ack and resp.to_tag == call.dialog.remote_tag:
                self._out.append((call.ack, self._dialog_hop(call), call.local))
            return
        call.dialog = Dialog.as_uac(call.invite, resp)
        ack = call.dialog.create_request("ACK", self._via(call.local), cseq=call.invite.cseq[0])
        call.ack = call.acks[call.invite.cseq[0]] = bytes(ack)
        self._out.append((call.ack, self._dialog_hop(call), call.local))
        call.timers.pop("cancel", None)
        try:
            answer = SessionDescription.parse(resp.body) if resp.body else None
        except SdpParseError:
            answer, call.cancel_pending = None, True
        if call.cancel_pending or call.state == CallPhase.ENDED:
            call.move(CallPhase.CONFIRMED)
            self._send_bye(call, now)
            if answer is None and resp.body:
                self._events.append(CallFailed(call.call_id, 488, "Bad SDP in answer"))
            return
        call.move(CallPhase.CONFIRMED)
        call.remote_origin = _origin(answer) if answer is not None else None
        self._events.append(CallAnswered(call.call_id, answer))

    def _send_reinvite(self, call: Call, sdp: str, now: float) -> None:
        assert call.dialog is not None
        req = call.dialog.create_request("INVITE", self._via(call.local))
        for name, value in [
            ("Contact", self._contact(call.local)),
            *self._capabilities(),
            ("Content-Type", "application/sdp"),
        ]:
            req.headers.add(name, value)
        req.body = sdp.encode("utf-8")
        hop = self._dialog_hop(call)
        tx = InviteClientTransaction(
            req, self._sender(hop, call.local), call.local.transport != "udp", now, self.timers
        )
        tx.reinvite = True
        call.reinvite_tx, call.reinvite_sdp = tx, sdp
        self._start_client(tx, call.call_id, now, hop)

    def _reinvite_response(self, call: Call, tx: InviteClientTransaction, resp: SipResponse, now: float) -> None:
        if resp.status < 200:
            return
        if resp.status < 300:
            self._reinvite_2xx(call, tx, resp, now)
            return
        if tx is not call.reinvite_tx:
            return
        call.reinvite_tx = None
        if call.state != CallPhase.CONFIRMED:
            call.reinvite_sdp = None
            return  # hanging up or ended: nothing to tell
        if resp.status == 491 and call.glare_retries < MAX_GLARE_RETRIES:
            # §14.1: the owner of the Call-ID (we sent the initial INVITE) waits 2.1-4 s, the other
            # side 0-2 s, both in units of 10 ms
            call.glare_retries += 1
            units = self._rng.randint(210, 400) if call.role == Role.UAC else self._rng.randint(0, 200)
            call.timers["reinvite_retry"] = now + units / 100
            self._events.append(ReinviteRetrying(call.call_id, units / 100))
            return
        call.reinvite_sdp = None
        self._events.append(ReinviteFailed(call.call_id, resp.status, resp.reason))

    def _reinvite_2xx(self, call: Call, tx: InviteClientTransaction, resp: SipResponse, now: float) -> None:
        assert call.dialog is not None
        cseq = tx.request.cseq[0]
        if cseq in call.acks:  # a retransmitted 2xx: the ACK again
            self._out.append((call.acks[cseq], self._dialog_hop(call), call.local))
            return
        target = _response_contact(resp)
        if target:
            call.dialog.remote_target = target  # target refresh (§12.2.1.2)
        ack = call.dialog.create_request("ACK", self._via(call.local), cseq=cseq)
        call.acks[cseq] = bytes(ack)
        self._out.append((call.acks[cseq], self._dialog_hop(call), call.local))
        if tx is not call.reinvite_tx:
            return
        call.reinvite_tx = None
        sdp, call.reinvite_sdp = call.reinvite_sdp, None
        if call.state != CallPhase.CONFIRMED:
            return
        try:
            answer = SessionDescription.parse(resp.body) if resp.body else None
        except SdpParseError:
            answer = None
        if answer is None:
            self._events.append(ReinviteFailed(call.call_id, 488, "Bad SDP in answer"))
            return
        call.local_sdp, call.remote_origin = sdp, _origin(answer)
        self._events.append(ReinviteAnswered(call.call_id, answer))

    # --- timers -------------------------------------------------------------------------------

    def _client_timeout(self, tx: ClientTransaction, now: float) -> None:
        call = self._calls.get(tx.call_id)
        if call is None:
            return
        if _is_reinvite(tx):
            if tx is call.reinvite_tx:
                call.reinvite_tx, call.reinvite_sdp = None, None
                if call.state == CallPhase.CONFIRMED:
                    self._events.append(ReinviteFailed(call.call_id, 408, "Request Timeout"))
        elif isinstance(tx, InviteClientTransaction) and call.state in (CallPhase.CALLING, CallPhase.EARLY):
            call.move(CallPhase.ENDED)
            call.timers = {"expire": now + 64 * self.timers.t1}
            self._events.append(CallFailed(call.call_id, 408, "Request Timeout"))
        elif tx.request.method == "BYE":
            self._end(call, "local hangup", None, now)

    def _call_timer_retransmit(self, call: Call, now: float) -> None:
        target = call.response_to or call.reply_to
        assert call.response_2xx is not None and target is not None
        self._out.append((call.response_2xx, target, call.local))
        call.interval = min(2 * call.interval, self.timers.t2)
        call.timers["retransmit"] = now + call.interval

    def _call_timer_ack(self, call: Call, now: float) -> None:
        pending = call.hangup_pending
        self._send_bye(call, now)
        self._end(call, "local hangup" if pending else "no ACK", None, now)

    def _call_timer_cancel(self, call: Call, now: float) -> None:
        if call.state in (CallPhase.CALLING, CallPhase.EARLY):
            call.move(CallPhase.ENDED)
            self._events.append(CallFailed(call.call_id, 487, "Request Terminated"))
        call.timers["expire"] = now + 64 * self.timers.t1

    def _call_timer_expire(self, call: Call, now: float) -> None:
        self._calls.pop(call.call_id, None)

    def _call_timer_reinvite_retry(self, call: Call, now: float) -> None:
        if call.state == CallPhase.CONFIRMED and call.reinvite_sdp is not None and call.offer_in is None:
            self._send_reinvite(call, call.reinvite_sdp, now)

    # --- helpers ------------------------------------------------------------------------------

    def _transactions(self) -> list:
        return [*self._server_txs.values(), *self._client_txs.values()]

    def _uas_call(self, call_id: str, state: CallPhase) -> Call:
        call = self._calls.get(call_id)
        if call is None or call.role != Role.UAS:
            raise LocalProtocolError(f"no incoming call {call_id}")
        if call.state != state:
            raise LocalProtocolError(f"call {call_id} is {call.state}, not {state}")
        return call

    def _pending_offer(self, call_id: str) -> tuple[Call, PendingOffer | None]:
        """The peer's offer the application answers now; None when the call ended meanwhile."""
        call = self._calls.get(call_id)
        if call is None:
            raise LocalProtocolError(f"no call {call_id}")
        if call.offer_in is None and call.state not in (CallPhase.ENDING, CallPhase.ENDED):
            raise LocalProtocolError(f"call {call_id} has no re-INVITE or UPDATE to answer")
        return call, call.offer_in

    def _drop_offer_in(self, call: Call, now: float) -> None:
        """The call is going away: a pending offer gets 487 (§15.1.2) and the app no longer answers."""
        pending, call.offer_in = call.offer_in, None
        if pending is not None:
            pending.tx.respond(self._reply(pending.request, 487, "Request Terminated"), now)

    def _dialog_call(self, req: SipRequest) -> Call | None:
        call = self._calls.get(req.call_id)
        if call is None or call.dialog is None or call.state == CallPhase.ENDED:
            return None
        if call.dialog.local_tag != req.to_tag or call.dialog.remote_tag != req.from_tag:
            return None
        return call

    def _reject(
        self, call: Call, status: int, reason: str, now: float, headers: list[tuple[str, str]], why: str
    ) -> None:
        response = self._reply(call.invite, status, reason, call.local_tag, headers)
        self._answer_invite(call, response, now)
        self._end(call, why, status, now)

    @staticmethod
    def _answer_invite(call: Call, response: SipResponse, now: float) -> None:
        """A response to the peer's INVITE that made an incoming call."""
        tx = call.invite_tx
        if not isinstance(tx, InviteServerTransaction):
            raise LocalProtocolError(f"call {call.call_id} is ours: there is no INVITE of the peer to answer")
        tx.respond(response, now)

    def _end(self, call: Call, reason: str, status: int | None, now: float) -> None:
        if call.state == CallPhase.ENDED:
            return
        call.move(CallPhase.ENDED)
        call.timers = {"expire": now + 64 * self.timers.t1}
        self._drop_offer_in(call, now)
        call.reinvite_tx, call.reinvite_sdp, call.reinvite_queued = None, None, False
        self._events.append(CallEnded(call.call_id, reason, status))

    def _send_bye(self, call: Call, now: float) -> None:
        assert call.dialog is not None
        call.hangup_pending = False
        call.timers.pop("retransmit", None)
        call.timers.pop("ack", None)
        call.timers.pop("reinvite_retry", None)
        call.reinvite_queued = False
        self._drop_offer_in(call, now)
        if call.state == CallPhase.CONFIRMED or call.state == CallPhase.ANSWERED:
            call.move(CallPhase.ENDING)
        bye = call.dialog.create_request("BYE", self._via(call.local))
        hop = self._dialog_hop(call)
        tx = NonInviteClientTransaction(
            bye, self._sender(hop, call.local), call.local.transport != "udp", now, self.timers
        )
        self._start_client(tx, call.call_id, now, hop)

    def _start_client(self, tx: ClientTransaction, call_id: str, now: float, dest: Addr) -> None:
        tx.call_id = call_id
        key = client_key(tx.request)
        self._client_txs[key] = tx
        self._client_dest[key] = dest
        self._client_call_ids[tx.request.call_id] += 1
        tx.start(now)

    def _await_ack(self, call: Call, response: SipResponse, sdp: str, now: float) -> None:
        call.local_sdp, call.response_2xx = sdp, bytes(response)
        call.move(CallPhase.ANSWERED)
        call.timers["ack"] = now + 64 * self.timers.t1
        if call.local.transport == "udp":
            call.interval = self.timers.t1
            call.timers["retransmit"] = now + call.interval

    def _ok_2xx(self, call: Call, sdp: str, request: SipRequest | None = None) -> SipResponse:
        req = request or call.invite
        headers = [("Contact", self._contact(call.local)), *self._capabilities(), ("Content-Type", "application/sdp")]
        expires = req.headers.get("Session-Expires")
        if expires:
            headers += [("Session-Expires", expires.split(";")[0].strip() + ";refresher=uac"), ("Require", "timer")]
        return self._reply(req, 200, "OK", call.local_tag, headers, sdp.encode("utf-8"))

    def _reply(
        self,
        req: SipRequest,
        status: int,
        reason: str,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | str = b"",
    ) -> SipResponse:
        return make_response(req, status, reason, to_tag, headers, body, self.user_agent)

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", self.allow), ("Supported", ", ".join(SUPPORTED)), ("User-Agent", self.user_agent)]

    def _dialog_hop(self, call: Call) -> Addr:
        if call.local.transport != "udp" or call.dialog is None:
            return call.remote
        return call.dialog.next_hop(call.remote)

    def _sender(self, dest: Addr, local: Local) -> Send:
        return lambda data: self._out.append((data, dest, local))

    def _via(self, local: Local) -> str:
        branch = f"z9hG4bK{self._rng.getrandbits(64):016x}"
        return f"SIP/2.0/{local.transport.upper()} {format_host(local.host)}:{local.port};branch={branch};rport"

    def _contact(self, local: Local) -> str:
        transport = "" if local.transport == "udp" else f";transport={local.transport}"  # tcp, tls
        return f"<sip:faxbridge@{format_host(local.host)}:{local.port}{transport}>"

    def _tag(self) -> str:
        return f"{self._rng.getrandbits(48):012x}"

    # --- hooks for registration.py and policy.py (requests outside calls; who is in a call) ----

    def send_request(
        self,
        request: SipRequest,
        local: Local,
        remote: Addr,
        now: float,
        tx_class: ClientTransactionFactory = NonInviteClientTransaction,
    ) -> NonInviteClientTransaction:
        """Send a request that belongs to no call (REGISTER) in its own client transaction.

        `tx_class` may override receive_response/_on_timer_F to hear the outcome (see
        registration.ReportingTransaction); the UA only matches responses and runs the timers.
        """
        tx = tx_class(request, self._sender(remote, local), local.transport != "udp", now, self.timers)
        self._start_client(tx, "", now, remote)
        return tx

    def has_call(self, call_id: str) -> bool:
        """True while the UA keeps state for this Call-ID (until 64*T1 after it ended)."""
        return call_id in self._calls

    # --- what the call gate asks (policy.CallPhase) -------------------------------------------

    def knows_call_id(self, call_id: str) -> bool:
        """A call, or a request of ours (REGISTER...), uses this Call-ID: its traffic is expected."""
        return call_id in self._calls or self._client_call_ids.get(call_id, 0) > 0

    def dialog_remote(self, req: SipRequest) -> Addr | None:
        """Where the live dialog `req` belongs to (Call-ID and both tags) was set up with, or None."""
        call = self._dialog_call(req)
        return call.remote if call is not None else None

    def matches_transaction(self, req: SipRequest) -> bool:
        """`req` belongs to a server transaction we hold: a retransmission, an ACK or a CANCEL."""
        try:
            keys = [server_key(req)] + ([server_key(req, "INVITE")] if req.method == "CANCEL" else [])
        except (SipParseError, IndexError):
            return False
        return any(k in self._server_txs for k in keys)

    def incoming_calls(self, peer: str | None = None) -> int:
        """Incoming calls in progress (answered or not), all or those admitted for one peer."""
        return sum(
            1
            for c in self._calls.values()
            if c.role == Role.UAS
            and c.state != CallPhase.ENDED
            and (peer is None or (c.admission is not None and c.admission.peer == peer))
        )

    def calls_via(self, remote: Addr) -> bool:
        """A call in progress uses this remote address (a stream connection must stay open)."""
        return any(c.remote == remote and c.state != CallPhase.ENDED for c in self._calls.values())

    def status(self) -> UserAgentStatus:
        """Calls and transactions held now, and the messages the UA refused or failed on so far."""
        return UserAgentStatus(
            calls=len(self._calls),
            transactions=len(self._server_txs) + len(self._client_txs),
            errors={k: self.stats[k] for k in UA_ERRORS if self.stats.get(k)},
        )


#: the UA's own refusals and failures, as the status page and /metrics count them
UA_ERRORS = ("internal_errors", "dropped_malformed", "answered_malformed", "ignored_acks", "dropped_responses")


class UserAgentStatus(TypedDict):
    calls: int
    transactions: int
    errors: dict[str, int]  # UA_ERRORS that happened, by name
