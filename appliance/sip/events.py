"""Events the user agent core hands to the application (the daemon), one call at a time."""
from __future__ import annotations

from dataclasses import dataclass, field

from .message import SipRequest
from .sdp import SessionDescription

Addr = tuple[str, int]


@dataclass(frozen=True)
class Local:
    """The listener a message came in on, or goes out from: ("udp"|"tcp", host, port)."""

    transport: str
    host: str
    port: int


@dataclass
class Event:
    call_id: str


@dataclass
class IncomingCall(Event):
    """A new INVITE; 100 Trying has been sent. Answer, reject or send 180/183 next.

    caller_* come from P-Asserted-Identity, else From; called_number from the Request-URI user,
    else To; diversion lists Diversion users, first = the originally called number.
    """

    request: SipRequest
    offer: SessionDescription | None
    caller_number: str
    caller_name: str
    called_number: str
    remote: Addr
    local: Local
    diversion: list[str] = field(default_factory=list)


@dataclass
class CallConfirmed(Event):
    """The ACK for our 2xx arrived: media may flow both ways."""


@dataclass
class CallEnded(Event):
    """The call is over: reason is "remote BYE", "CANCEL", "no ACK", "local hangup" or "rejected"."""

    reason: str
    status: int | None = None


@dataclass
class CallProgress(Event):
    """A provisional response to our INVITE."""

    status: int
    reason: str = ""


@dataclass
class CallAnswered(Event):
    """A 2xx to our INVITE; the UA has sent the ACK."""

    answer: SessionDescription | None


@dataclass
class CallFailed(Event):
    """Our INVITE ended without a dialog: final 3xx-6xx, timeout (408), or a bad answer."""

    status: int
    reason: str
