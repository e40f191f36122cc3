"""Events the user agent core hands to the application (the daemon), one call at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.sip.message import SipRequest
from appliance.sip.sdp import SessionDescription

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
class ExchangeUmReferral:
    """What Exchange UM put into the Referred-By of the REFER that sent this call to us.

    recipient: the fax recipient's primary SMTP address (from msExchUMFaxRecipient=smtp:...), ""
    when absent or not a plain address; context_raw: msExchUMContext URL-unescaped (the base64 to
    copy into X-MS-Exchange-UM-PartnerContext), "" when absent or not base64; context: the
    decoded pairs (CallId, CallerId, Extension, PhoneContext, CallerIdDisplayName, and any
    others); notes: what was ignored and why.
    """

    recipient: str
    context_raw: str
    context: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Admission:
    """The call gate's verdict on a new INVITE: the [[sip.peers]] entry it matched and, when that
    peer must authenticate, the user whose digest credentials were verified ("" otherwise).
    The daemon checks both again before it opens a media port."""

    peer: str
    authenticated: str = ""
    #: the appliance's own test call (the control socket's test-fax), admitted by its one-time
    #: pass rather than by a peer: the daemon checks the pass again (policy.SelfTestPass)
    self_test: bool = False


@dataclass
class IncomingCall(Event):
    """A new INVITE; 100 Trying has been sent. Answer, reject or send 180/183 next.

    caller_* come from P-Asserted-Identity, else From; called_number from the Request-URI user,
    else To; diversion lists Diversion users, first = the originally called number;
    referred_by is the raw Referred-By header ("" if none), exchange_um what Exchange UM's
    referral parameters in it say (None if it has none).
    """

    request: SipRequest
    offer: SessionDescription | None
    caller_number: str
    caller_name: str
    called_number: str
    remote: Addr
    local: Local
    diversion: list[str] = field(default_factory=list)
    referred_by: str = ""
    exchange_um: ExchangeUmReferral | None = None
    #: the call gate's verdict; None when no gate stood in front (then the daemon refuses the call)
    admission: Admission | None = None


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


# --- re-INVITE / UPDATE inside a dialog -----------------------------------------------------------


@dataclass
class ReinviteReceived(Event):
    """The peer sent a new offer in the dialog: a re-INVITE, or an UPDATE with SDP (`method`).

    Answer with answer_reinvite (200 with our SDP) or reject_reinvite (e.g. 488: the session stays
    as it was). offer is None for a re-INVITE without SDP (our 200 then carries an offer and the
    answer comes in the ACK, see ReinviteConfirmed). same_session: the offer's o= line (user,
    session id, version) equals the peer's last SDP, i.e. nothing changed (a session-timer refresh).
    """

    offer: SessionDescription | None
    same_session: bool
    method: str = "INVITE"


@dataclass
class ReinviteConfirmed(Event):
    """Our 200 to the peer's re-INVITE was acknowledged (for an UPDATE: sent; there is no ACK).

    answer is the SDP the ACK carried (only when the re-INVITE had no offer), else None.
    """

    answer: SessionDescription | None = None


@dataclass
class ReinviteAnswered(Event):
    """A 2xx to our re-INVITE; the UA has sent the ACK. answer is the peer's SDP answer."""

    answer: SessionDescription


@dataclass
class ReinviteFailed(Event):
    """Our re-INVITE was refused (the session stays as it was): 488/415/606 are how peers refuse
    T.38; 408 = no answer; 491 = glare retries exhausted or superseded by the peer's own re-INVITE;
    488 "Bad SDP in answer" = a 2xx without a usable answer (acknowledged; decide: hang up or retry).
    """

    status: int
    reason: str


@dataclass
class ReinviteRetrying(Event):
    """Our re-INVITE met the peer's (491, glare): the UA resends it by itself after `delay` s."""

    delay: float
