"""When one SIP fax call moves between G.711 and T.38, decided sans-I/O (decision 0004).

Theory of operation. A `T38Switcher` per answered call holds what the negotiation agreed (the
mode, our current SDP and its version, the last audio answer) and what it has seen of the call
(confirmed, UDPTL arrived, pages received, phase E). Its driver (`calls/sip_call.py`) feeds it
the call's SIP events and its own observations with `receive(event, now)`, calls
`handle_timer(now)` once `next_timer()` has passed, and carries out the `Action`s both return, in
order. Nothing here reads a clock, touches a socket, a terminal or the user agent.

Every way a call becomes T.38 ends in one action, `UseT38`: the peer re-INVITEs during G.711, we
re-INVITE (peer policy "request", `T38_REQUEST_DELAY` after the ACK), or T.38 is offered in the
INVITE itself (`answer`). A refusal (488/415/606) leaves the call on G.711; a peer that agrees and
then sends no UDPTL within `T38_MEDIA_TIMEOUT` is re-INVITEd back to G.711 (`UseAudio`); UDPTL
that arrived before our 200 OK counts. A refresh (same SDP) or a re-INVITE back to audio after the
fax never disturbs the call. Once a page has arrived nothing switches: a switch starts T.30 over
into the same file, and pages are the one thing the appliance must never lose.

Our re-INVITEs may be refused by the user agent itself (an offer of the peer's is open): the
driver reports each `SendReinvite` back as `ReinviteSent` or `ReinviteNotSent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from appliance.sip import events as sipev
from appliance.sip.sdp import (
    AudioAnswer,
    NoUsableCodec,
    SessionDescription,
    T38Params,
    answer_audio,
    answer_t38,
    has_audio,
    has_t38,
    offer_audio,
    offer_t38,
    parse_t38_answer,
)

#: after agreeing to T.38, fall back to G.711 if no UDPTL arrives within this many seconds
T38_MEDIA_TIMEOUT = 8.0
#: with policy "request", re-INVITE to T.38 this long after the call is confirmed
T38_REQUEST_DELAY = 1.0
#: a fall-back re-INVITE the user agent could not send yet (an offer was open) is tried again after
FALLBACK_RETRY = 0.25
#: the largest UDPTL datagram we accept, stated in every T.38 SDP of ours
OUR_MAX_DATAGRAM = 400


class T38Policy(StrEnum):
    """A peer's ``t38`` setting."""

    OFF = "off"  # audio only: T.38 offers are answered with audio or refused
    ACCEPT = "accept"  # take the peer's T.38 (re-INVITE or initial INVITE)
    REQUEST = "request"  # accept, and re-INVITE to T.38 ourselves


class Mode(StrEnum):
    """What the call's one media port carries now."""

    AUDIO = "audio"
    T38 = "t38"


class ReinviteKind(StrEnum):
    """Why we send a re-INVITE."""

    T38 = "T.38"
    FALLBACK = "fall-back"


# --- what the driver tells the switcher besides the SIP events ------------------------------------


@dataclass(frozen=True)
class UdptlArrived:
    """The call's first UDPTL packet arrived (at any time: before our 200 OK too)."""


@dataclass(frozen=True)
class FaxProgress:
    """After each look at the T.30 session: pages received so far, and whether phase E came."""

    pages: int
    ended: bool


@dataclass(frozen=True)
class ReinviteSent:
    """The user agent sent the re-INVITE of a `SendReinvite`."""

    kind: ReinviteKind


@dataclass(frozen=True)
class ReinviteNotSent:
    """The user agent refused to send it now (LocalProtocolError: an offer is open)."""

    kind: ReinviteKind
    why: str


Event = (
    sipev.CallConfirmed
    | sipev.ReinviteReceived
    | sipev.ReinviteAnswered
    | sipev.ReinviteFailed
    | sipev.CallEnded
    | UdptlArrived
    | FaxProgress
    | ReinviteSent
    | ReinviteNotSent
)


# --- what the switcher asks the driver to do ------------------------------------------------------


@dataclass(frozen=True)
class AnswerReinvite:
    """Accept the peer's offer with 200 and this SDP."""

    sdp: str


@dataclass(frozen=True)
class RejectReinvite:
    """Refuse the peer's offer; the session stays as it was."""

    status: int
    reason: str


@dataclass(frozen=True)
class SendReinvite:
    """Send our own offer; report the outcome back (ReinviteSent / ReinviteNotSent)."""

    sdp: str
    kind: ReinviteKind


@dataclass(frozen=True)
class UseT38:
    """Start T.38 on the call's port: a new T.38 terminal (T.30 starts over), UDPTL to `remote`."""

    params: T38Params
    remote: tuple[str, int]
    far_max_datagram: int
    why: str


@dataclass(frozen=True)
class UseAudio:
    """Start (or go back to) G.711 on the call's port with a new audio terminal."""

    audio: AudioAnswer
    why: str


@dataclass(frozen=True)
class Retarget:
    """Same T.38 session, the peer's UDPTL moved: send to `remote` from now on."""

    remote: tuple[str, int]


@dataclass(frozen=True)
class Note:
    """A line for the call's log."""

    text: str


Action = AnswerReinvite | RejectReinvite | SendReinvite | UseT38 | UseAudio | Retarget | Note


@dataclass
class T38Switcher:
    """The T.38 switching policy of one call; `local_ip`/`port` are our media address."""

    policy: T38Policy
    local_ip: str
    port: int
    session_id: int
    #: 0 = believe the peer's T38FaxMaxDatagram; else use this (peers that state the IFP size)
    max_datagram_override: int = 0
    media_timeout: float = T38_MEDIA_TIMEOUT
    request_delay: float = T38_REQUEST_DELAY
    mode: Mode = Mode.AUDIO
    codec: str = ""
    #: our SDP now (answers a refresh) and its o= version
    sdp: str = ""
    sdp_version: int = 1
    #: what happened to the call's media, in words, for its facts
    switches: list[str] = field(default_factory=list)
    #: the last audio agreed (a fall-back re-INVITE offers its codec); None: the call began on T.38
    audio: AudioAnswer | None = None
    _confirmed: bool = False
    _ended: bool = False
    _udptl_seen: bool = False
    _pages: int = 0
    _fax_ended: bool = False
    _t38_since: float | None = None
    _t38_requested: bool = False
    _request_at: float | None = None
    _fallback_retry_at: float | None = None
    _fallback_sdp: str | None = None

    def __post_init__(self) -> None:
        self.policy = T38Policy(self.policy)

    # --- driver interface -----------------------------------------------------------------------

    def answer(self, offer: SessionDescription, now: float) -> UseT38 | UseAudio:
        """The media for the INVITE's offer; our answer is then `sdp`.

        Raises NoUsableCodec when neither usable audio nor (allowed) T.38 is offered.
        """
        if self.policy != T38Policy.OFF and has_t38(offer):
            t38 = answer_t38(
                offer, self.local_ip, self.port, self.session_id, self.sdp_version, our_max_datagram=OUR_MAX_DATAGRAM
            )
            self.mode, self._t38_since, self.sdp = Mode.T38, now, t38.sdp
            self.switches.append("T.38 offered in the INVITE")
            return UseT38(t38.params, t38.remote, self._far_max(t38.far_max_datagram), "T.38 offered in the INVITE")
        audio = answer_audio(offer, self.local_ip, self.port, self.session_id, self.sdp_version)
        self.audio, self.codec, self.sdp = audio, audio.codec, audio.sdp
        return UseAudio(audio, "offered in the INVITE")

    def receive(self, event: Event | sipev.Event, now: float) -> list[Action]:
        """One event of the call (others are ignored); returns what to do, in order."""
        if isinstance(event, sipev.CallConfirmed):
            if not self._confirmed:
                self._confirmed = True
                if self.policy == T38Policy.REQUEST and self.mode == Mode.AUDIO:
                    self._request_at = now + self.request_delay
        elif isinstance(event, sipev.ReinviteReceived):
            return self._on_offer(event, now)
        elif isinstance(event, sipev.ReinviteAnswered):
            return self._on_answer(event, now)
        elif isinstance(event, sipev.ReinviteFailed) and event.status != 491:
            # (491: glare; the peer's own re-INVITE won and arrives as ReinviteReceived)
            self.switches.append(f"our re-INVITE refused: {event.status} {event.reason}")
            return [
                Note(
                    f"re-INVITE refused ({event.status} {event.reason}): staying on "
                    + ("G.711" if self.mode == Mode.AUDIO else "T.38")
                )
            ]
        elif isinstance(event, sipev.CallEnded):
            self._ended = True
        elif isinstance(event, UdptlArrived):
            self._udptl_seen = True
        elif isinstance(event, FaxProgress):
            self._pages, self._fax_ended = event.pages, event.ended
        elif isinstance(event, ReinviteSent) and event.kind == ReinviteKind.FALLBACK:
            return self._fallback_sent()
        elif isinstance(event, ReinviteNotSent):
            if event.kind == ReinviteKind.FALLBACK:
                self._fallback_sdp = None
                return [Note(f"fall-back re-INVITE deferred: {event.why}")]
            return [Note(f"T.38 re-INVITE not sent: {event.why}")]
        return []

    def next_timer(self) -> float | None:
        """When `handle_timer` has something to do; None: nothing until the next event."""
        return min((t for t in (self._request_deadline(), self._fallback_deadline()) if t is not None), default=None)

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        request = self._request_deadline()
        if request is not None and now >= request:
            self._request_at = None
            actions += self._request_t38()
        fallback = self._fallback_deadline()
        if fallback is not None and now >= fallback:
            actions += self._fall_back(now)
        return actions

    # --- the peer's offers and answers ----------------------------------------------------------

    def _on_offer(self, ev: sipev.ReinviteReceived, now: float) -> list[Action]:
        offer = ev.offer
        if offer is None or ev.same_session:
            return [AnswerReinvite(self.sdp)]  # a refresh: nothing changes
        if has_t38(offer) and self.policy != T38Policy.OFF:
            if self.mode == Mode.AUDIO and self._pages:
                # pages already came as audio: switching would start T.30 over into the same file
                return [RejectReinvite(488, "Not Acceptable Here (fax already in progress)")]
            t38 = answer_t38(
                offer,
                self.local_ip,
                self.port,
                self.session_id,
                self._next_version(),
                our_max_datagram=OUR_MAX_DATAGRAM,
            )
            self.sdp = t38.sdp
            if self.mode == Mode.T38:
                return [AnswerReinvite(t38.sdp), Retarget(t38.remote)]  # new address or parameters, same fax
            return [
                AnswerReinvite(t38.sdp),
                self._to_t38(t38.params, t38.remote, t38.far_max_datagram, "peer re-INVITE", now),
            ]
        if has_audio(offer):
            try:
                audio = answer_audio(offer, self.local_ip, self.port, self.session_id, self._next_version())
            except NoUsableCodec:
                return [RejectReinvite(488, "Not Acceptable Here")]
            self.sdp, self.audio = audio.sdp, audio
            actions: list[Action] = [AnswerReinvite(audio.sdp)]
            if self.mode == Mode.T38 and not self._fax_ended and not self._pages:
                actions.append(self._to_audio(audio, "peer re-INVITE back to audio before the fax started"))
            elif self.mode == Mode.T38:
                # after the fax (Grandstream "re-INVITE after fax"), or mid-fax: the pages stay ours
                self.switches.append("peer went back to audio")
            return actions
        return [RejectReinvite(488, "Not Acceptable Here")]

    def _on_answer(self, ev: sipev.ReinviteAnswered, now: float) -> list[Action]:
        try:
            t38 = parse_t38_answer(str(ev.answer))
        except (NoUsableCodec, ValueError):
            return []  # an answer to an audio re-INVITE (our fall-back): nothing more to do
        self.sdp = offer_t38(
            self.local_ip, self.port, self.session_id, self.sdp_version, T38Params(max_datagram=OUR_MAX_DATAGRAM)
        )
        if self.mode == Mode.AUDIO:
            return [self._to_t38(t38.params, t38.remote, t38.far_max_datagram, "our re-INVITE accepted", now)]
        return []

    # --- our own re-INVITEs ---------------------------------------------------------------------

    def _request_deadline(self) -> float | None:
        if self._request_at is None or self._t38_requested or self.mode != Mode.AUDIO or self._ended:
            return None  # the peer got there first, or the call is over
        return self._request_at

    def _request_t38(self) -> list[Action]:
        self._t38_requested = True
        sdp = offer_t38(
            self.local_ip, self.port, self.session_id, self._next_version(), T38Params(max_datagram=OUR_MAX_DATAGRAM)
        )
        return [Note("re-INVITE to T.38"), SendReinvite(sdp, ReinviteKind.T38)]

    def _fallback_deadline(self) -> float | None:
        if (
            self._ended
            or self.mode != Mode.T38
            or self._udptl_seen
            or self._t38_since is None
            or self.audio is None
            or self._pages
        ):
            return None
        if self._fallback_retry_at is not None:
            return self._fallback_retry_at
        return self._t38_since + self.media_timeout

    def _fall_back(self, now: float) -> list[Action]:
        assert self.audio is not None
        self._fallback_sdp = offer_audio(
            self.local_ip, self.port, self.session_id, self.sdp_version + 1, codecs=(self.audio.codec,)
        )
        self._fallback_retry_at = now + FALLBACK_RETRY  # unless the driver reports it sent
        return [SendReinvite(self._fallback_sdp, ReinviteKind.FALLBACK)]

    def _fallback_sent(self) -> list[Action]:
        if self._fallback_sdp is None or self.audio is None:
            return []
        self.sdp_version += 1
        self.sdp, self._fallback_sdp = self._fallback_sdp, None
        return [self._to_audio(self.audio, "no UDPTL arrived after T.38 was agreed")]

    # --- switching ------------------------------------------------------------------------------

    def _to_t38(
        self, params: T38Params, remote: tuple[str, int], far_max_datagram: int, why: str, now: float
    ) -> UseT38:
        self.mode, self._t38_since = Mode.T38, now
        self._fax_ended, self._fallback_retry_at = False, None  # T.30 starts over
        self.switches.append(f"T.38 ({why})")
        return UseT38(params, remote, self._far_max(far_max_datagram), why)

    def _to_audio(self, audio: AudioAnswer, why: str) -> UseAudio:
        self.mode, self.codec = Mode.AUDIO, audio.codec
        self._fax_ended, self._fallback_retry_at = False, None
        self.switches.append(f"G.711 ({why})")
        return UseAudio(audio, why)

    def _far_max(self, offered: int) -> int:
        return self.max_datagram_override or offered

    def _next_version(self) -> int:
        self.sdp_version += 1
        return self.sdp_version
