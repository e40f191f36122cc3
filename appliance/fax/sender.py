"""The calling side of a fax call over SIP, with spandsp as the calling party.

One call loop (`send_fax`, `_OutgoingCall`) serves both callers: ``faxbridge send-test-fax``,
which users run to check an installation end to end and the test suite uses as the gateway, and
the outbound queue's way out (appliance/outbound/sip_send.py), which adds what a real send needs:
a ring timeout, cancelling, progress callbacks and digest credentials. It is the same stack as
the daemon (SIP core, RTP channel, spandsp terminal) in the calling role.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from appliance.calls.t38switch import T38_MEDIA_TIMEOUT
from appliance.fax.pages import FAX_WIDTH, prepare_for_sending
from appliance.media.channel import MediaChannel
from appliance.media.clock import MediaClock
from appliance.netutil import route_source
from appliance.sip import events as sipev
from appliance.sip.digest import DigestClient, parse_challenges
from appliance.sip.message import SipRequest, SipResponse, SipUri
from appliance.sip.sdp import (
    AudioAnswer,
    T38Params,
    answer_t38,
    has_t38,
    offer_audio,
    offer_t38,
    parse_answer,
    parse_t38_answer,
)
from appliance.sip.tls import TlsSettings
from appliance.sip.transport import SipEndpoint
from appliance.sip.uri import format_host
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spandsp.t30 import PageDone, PhaseB, PhaseE, T30Terminal
from appliance.spandsp.t38 import T38FaxTerminal

log = logging.getLogger("faxbridge.send")


@dataclass
class SendResult:
    ok: bool
    status: str
    sip_status: int | None = None
    pages_sent: int = 0
    result_code: int | None = None
    bit_rate: int = 0
    ecm: bool = False
    remote_ident: str = ""
    duration: float = 0.0
    mode: str = ""
    refreshes: int = 0
    back_to_audio: bool = False
    trace: list[str] = field(default_factory=list)
    # what the outbound queue needs to say how the call ended (appliance/outbound/sip_send.py)
    sip_reason: str = ""
    answered: bool = False  # a 2xx came: the far end picked up
    fax_answered: bool = False  # T.30 phase B: a fax machine answered (its DIS came)
    remote_hangup: bool = False  # the far end sent BYE before the fax was through
    cancelled: bool = False  # the caller's cancel event ended the call
    ring_timeout: bool = False  # nobody answered within ring_timeout: we sent CANCEL
    timed_out: bool = False  # the whole call took longer than its timeout
    t38_refused: str = ""  # our re-INVITE to T.38 was refused ("488 Not Acceptable Here")
    t38_silent: bool = False  # T.38 was agreed, no UDPTL came: back to G.711


def _fax_ready(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            dpi = tuple(round(float(d)) for d in im.info.get("dpi", (0, 0)))
            return im.mode == "1" and im.width == FAX_WIDTH and dpi in ((204, 98), (204, 196), (204, 391))
    except OSError:
        return False


#: after hanging up on our own account (cancel, ring timeout), how long to wait for the far end's
#: answer to the CANCEL/BYE before the call is given up as ended anyway
CANCEL_GRACE = 4.0

#: how the sender treats T.38: what a gateway on the calling side would do
T38_MODES = ("off", "reinvite", "accept", "initial", "initial-both", "refuse", "silent")


async def send_fax(
    target: str,
    tiff: Path,
    *,
    caller: str = "5550100",
    caller_name: str = "Faxbridge test",
    ident: str = "",
    codec: str | None = None,
    ecm: bool = True,
    hangup_after_pages: int | None = None,
    timeout: float = 600.0,
    t38: str = "off",
    loss: float = 0.0,
    bind: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    refresh: float = 0.0,
    audio_after: bool = False,
    ca_file: str | None = None,
    from_host: str = "",
    ring_timeout: float | None = None,
    cancel: asyncio.Event | None = None,
    on_connected: Callable[[], None] | None = None,
    on_page: Callable[[int], None] | None = None,
    credentials: tuple[str, str] | None = None,
    t38_fallback: bool = False,
) -> SendResult:
    """Call ``target`` (sip:USER@HOST[:PORT][;transport=tcp|tls]) and send every page of ``tiff``.

    ``t38``: "off" refuses T.38 re-INVITEs (488) and stays on G.711; "refuse" the same, said
    explicitly; "accept" switches when the far end re-INVITEs; "reinvite" re-INVITEs to T.38 one
    second after the answer (as an originating gateway does on CNG); "initial" offers only T.38 in
    the INVITE, "initial-both" audio and T.38 together; "silent" agrees to T.38 and then never
    sends UDPTL (a broken gateway: the far end must fall back to G.711).  ``refresh`` re-INVITEs
    with the unchanged SDP every that many seconds (a session timer); ``audio_after`` re-INVITEs
    back to audio once the fax is done (Grandstream's "re-INVITE after fax").  ``loss`` drops that
    share of our outgoing media packets (a test of redundancy).

    For the outbound queue: ``ring_timeout`` cancels the INVITE when nobody answers in time;
    ``cancel`` set ends the call (CANCEL while ringing, BYE once answered); ``on_connected`` is
    called at the 2xx, ``on_page(n)`` each time the far end confirmed page n; ``credentials``
    (user, password) answer a 401/407 from the host we called; ``from_host`` replaces our address
    in the From URI ("anonymous.invalid" for an anonymous call); ``t38_fallback`` goes back to
    G.711 when T.38 was agreed but no UDPTL comes (off for the test sender, whose far ends are
    under test).
    """
    if t38 not in T38_MODES:
        raise ValueError(f"t38 must be one of {', '.join(T38_MODES)}")
    uri = SipUri.parse(target)
    transport = (uri.params.get("transport") or "udp").lower()
    if transport not in ("udp", "tcp", "tls"):
        raise ValueError(f"transport {transport!r} is not supported (udp, tcp or tls)")
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(uri.host.strip("[]"), uri.port or 5060, type=socket.SOCK_DGRAM)
    sockaddr = infos[0][4]  # (host, port[, flow, scope]): an IPv4 or IPv6 address
    remote = (str(sockaddr[0]), int(sockaddr[1]))
    local_ip = bind or route_source(remote[0])

    with tempfile.TemporaryDirectory(prefix="faxbridge-send-") as tmp:
        if not _fax_ready(tiff):
            converted = Path(tmp) / "send.tif"
            prepare_for_sending(tiff, converted)
            tiff = converted
        if transport == "tls":  # verify the appliance's certificate against ca_file or the system store
            endpoint = SipEndpoint(tls=TlsSettings(ca=ca_file or ""))
            await endpoint.start([("tls-client", local_ip, 0)])
            endpoint.tls_names[remote] = uri.host.strip("[]")
        else:
            endpoint = SipEndpoint()
            await endpoint.start([(transport, local_ip, 0)])
        if credentials is not None:
            endpoint.ua.challenge_hook = _AnswerChallenges(endpoint, remote, *credentials)
        channel = await MediaChannel.open_ephemeral(local_ip)
        channel.send_loss = loss
        call = _OutgoingCall(
            endpoint,
            channel,
            tiff,
            local_ip,
            ident=ident,
            ecm=ecm,
            t38=t38,
            hangup_after_pages=hangup_after_pages,
            refresh=refresh,
            audio_after=audio_after,
            ring_timeout=ring_timeout,
            cancel=cancel,
            on_connected=on_connected,
            on_page=on_page,
            t38_fallback=t38_fallback,
        )
        if t38 == "initial":
            sdp = offer_t38(local_ip, channel.port, channel.port, 1, T38Params(max_datagram=400))
        elif t38 == "initial-both":
            audio = offer_audio(
                local_ip,
                channel.port,
                session_id=channel.port,
                version=1,
                codecs=(codec,) if codec else ("PCMU", "PCMA"),
            )
            image = offer_t38(local_ip, channel.port, channel.port, 1, T38Params(max_datagram=400))
            sdp = audio + image[image.index("m=image") :]
        else:
            sdp = offer_audio(
                local_ip,
                channel.port,
                session_id=channel.port,
                version=1,
                codecs=(codec,) if codec else ("PCMU", "PCMA"),
            )
        start = call.started = loop.time()
        call.sdp = sdp
        call.call_id = endpoint.invite(
            target,
            from_uri=f"sip:{caller}@{from_host or format_host(local_ip)}",
            from_display=caller_name,
            sdp=sdp,
            remote=remote,
            transport=transport,
            headers=headers or (),
        )
        try:
            await asyncio.wait_for(call.run(), timeout)
        except TimeoutError:
            call.result.status, call.result.timed_out = "timed out", True
            endpoint.hangup(call.call_id)
            await asyncio.sleep(0.2)
        finally:
            call.result.duration = round(loop.time() - start, 1)
            call.close()
            await endpoint.close()
        return call.result


class _OutgoingCall:
    """The calling side's call loop: SIP events, media switches, T.30 progress."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        channel: MediaChannel,
        tiff: Path,
        local_ip: str,
        *,
        ident: str,
        ecm: bool,
        t38: str,
        hangup_after_pages: int | None,
        refresh: float = 0.0,
        audio_after: bool = False,
        ring_timeout: float | None = None,
        cancel: asyncio.Event | None = None,
        on_connected: Callable[[], None] | None = None,
        on_page: Callable[[int], None] | None = None,
        t38_fallback: bool = False,
    ) -> None:
        self.endpoint, self.channel, self.tiff, self.local_ip = endpoint, channel, tiff, local_ip
        self.ident, self.ecm, self.t38, self.hangup_after = ident, ecm, t38, hangup_after_pages
        self.call_id = ""
        self.result = SendResult(False, "no answer")
        self.terminal: T30Terminal | None = None
        self.clock = MediaClock()
        self.version = 1
        self.hung_up = False
        self.phase_e_at: float | None = None
        self.answered_at: float | None = None
        self.reinvited = False
        self.refresh, self.audio_after = refresh, audio_after
        self.sdp = ""  # our current session description, re-sent unchanged by a refresh
        self.last_refresh = 0.0
        self.pending = False  # a re-INVITE of ours is outstanding
        self.ring_timeout, self.cancel = ring_timeout, cancel
        self.on_connected, self.on_page = on_connected, on_page
        self.started = 0.0  # when the INVITE went out (send_fax sets it)
        #: once we hung up for a reason of our own (cancel, ring timeout): stop waiting for the
        #: far end's answer to our CANCEL/BYE at this time
        self.give_up_at: float | None = None
        #: when T.38 was agreed and the far end sends no UDPTL, go back to G.711 (sip_send)
        self.t38_fallback = t38_fallback
        self.t38_since: float | None = None
        self.audio_answer: AudioAnswer | None = None  # the G.711 the call began with

    def _audio(self, codec: str) -> AudioFaxTerminal:
        return AudioFaxTerminal(calling=True, codec=codec, ident=self.ident, ecm=self.ecm, tx_file=self.tiff)

    def _t38(self, params: T38Params) -> T38FaxTerminal:
        return T38FaxTerminal(
            calling=True,
            ident=self.ident,
            ecm=self.ecm,
            tx_file=self.tiff,
            version=params.version,
            max_bitrate=params.max_bitrate,
            rate_management=params.rate_management,
        )

    def _switch_to_t38(self, params: T38Params, remote: tuple[str, int], far_max: int) -> None:
        if self.terminal is not None:
            self.terminal.close()
        terminal = self._t38(params)
        self.terminal = terminal
        self.channel.use_t38(terminal, remote, far_max)
        self.result.mode = "T.38"
        self.t38_since = asyncio.get_running_loop().time()
        log.info("switched to T.38")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ep, result = self.endpoint, self.result
        while True:
            try:
                ev = await asyncio.wait_for(ep.events.get(), 0.2)
            except TimeoutError:
                ev = None
            if ev is not None and getattr(ev, "call_id", self.call_id) != self.call_id:
                ev = None
            now = loop.time()
            if isinstance(ev, sipev.CallAnswered) and self.terminal is None:
                self.answered_at = now
                result.answered = True
                if result.cancelled:  # our CANCEL crossed the far end's 200 OK: hang up at once
                    self.endpoint.hangup(self.call_id)
                    continue
                self._tell(self.on_connected)
                if self.t38 in ("initial", "initial-both") and has_t38(ev.answer):
                    t38 = parse_t38_answer(str(ev.answer))
                    self._switch_to_t38(t38.params, t38.remote, t38.far_max_datagram)
                else:
                    answer = parse_answer(str(ev.answer))
                    self.terminal = self._audio(answer.codec)
                    self.channel.use_audio(self.terminal, answer.payload_type, answer.remote)
                    result.mode = f"G.711 {answer.codec}"
                    self.audio_answer = answer
                self.channel.start_clock(self.clock)
                result.status = "answered"
                if self.t38 == "reinvite":
                    loop.call_later(1.0, self._request_t38)
            elif isinstance(ev, sipev.CallFailed):
                result.sip_status, result.sip_reason = ev.status, ev.reason
                if not (result.cancelled or result.ring_timeout):  # else the status says why we ended it
                    result.status = f"call failed: {ev.status} {ev.reason}"
                return
            elif isinstance(ev, sipev.CallEnded):
                if result.result_code is None and not self.hung_up:
                    result.status = f"far end hung up ({ev.reason})"
                    result.remote_hangup = ev.reason == "remote BYE"
                return
            elif isinstance(ev, sipev.ReinviteReceived):
                self._on_reinvite(ev)
            elif isinstance(ev, sipev.ReinviteAnswered):
                self.pending = False
                if ev.answer is not None and has_t38(ev.answer) and self.result.mode != "T.38":
                    t38 = parse_t38_answer(str(ev.answer))
                    self._switch_to_t38(t38.params, t38.remote, t38.far_max_datagram)
            elif isinstance(ev, sipev.ReinviteFailed):
                self.pending = False
                log.info("far end refused our re-INVITE: %s %s", ev.status, ev.reason)
                if self.reinvited and self.result.mode != "T.38" and ev.status != 491:
                    result.t38_refused = f"{ev.status} {ev.reason}".strip()
            if (
                self.refresh
                and self.answered_at is not None
                and not self.pending
                and self.phase_e_at is None
                and now - max(self.last_refresh, self.answered_at) >= self.refresh
            ):
                self.last_refresh = now
                self._reinvite(self.sdp)  # same o= version: a session refresh, nothing changes
                self.result.refreshes += 1
            self._t30_progress(now)
            if self._t38_silent(now):
                self._fall_back_to_audio()
            if self._our_end(now):
                return

    def _t38_silent(self, now: float) -> bool:
        """T.38 was agreed but no UDPTL came within T38_MEDIA_TIMEOUT and nothing was sent yet:
        a broken gateway, to be re-INVITEd back to G.711 (as the receive side does)."""
        return (
            self.t38_fallback
            and self.result.mode == "T.38"
            and self.t38_since is not None
            and self.audio_answer is not None
            and self.channel.udptl_seen_at is None
            and not (self.pending or self.hung_up or self.result.pages_sent)
            and self.phase_e_at is None
            and now - self.t38_since >= T38_MEDIA_TIMEOUT
        )

    def _fall_back_to_audio(self) -> None:
        answer = self.audio_answer
        assert answer is not None
        self.version += 1
        sdp = offer_audio(self.local_ip, self.channel.port, self.channel.port, self.version, codecs=(answer.codec,))
        self._reinvite(sdp)
        if not self.pending:
            return  # not sent now (an offer of the far end's is open): tried again next round
        self.sdp = sdp
        if self.terminal is not None:
            self.terminal.close()
        self.terminal = self._audio(answer.codec)
        self.channel.use_audio(self.terminal, answer.payload_type, answer.remote)
        self.result.mode, self.result.t38_silent, self.t38_since = f"G.711 {answer.codec}", True, None
        log.info("no UDPTL after the switch to T.38: back to G.711")

    def _our_end(self, now: float) -> bool:
        """Cancel and ring timeout: hang up (CANCEL while ringing, BYE once answered), then wait
        a little for the far end's answer; True when the loop is to stop waiting for it."""
        result = self.result
        if not self.hung_up and self.phase_e_at is None:
            why = ""
            if self.cancel is not None and self.cancel.is_set():
                result.cancelled, why = True, "cancelled"
            elif self.ring_timeout is not None and self.answered_at is None and now - self.started >= self.ring_timeout:
                result.ring_timeout, why = True, f"no answer within {self.ring_timeout:g} s"
            if why:
                self.hung_up, result.status = True, why
                self.give_up_at = now + CANCEL_GRACE
                self.endpoint.hangup(self.call_id)
        return self.give_up_at is not None and now >= self.give_up_at

    def _tell(self, callback: Callable[..., None] | None, *args: int) -> None:
        """A progress callback of the caller; its failure must not take the fax call down."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # the caller's bug: logged, the call goes on
            log.exception("progress callback failed")

    def _request_t38(self) -> None:
        """What an originating gateway does on detecting CNG: re-INVITE to T.38."""
        if self.reinvited or self.result.mode == "T.38" or self.hung_up:
            return
        self.reinvited = True
        self.version += 1
        self.sdp = offer_t38(
            self.local_ip, self.channel.port, self.channel.port, self.version, T38Params(max_datagram=400)
        )
        self._reinvite(self.sdp)

    def _reinvite(self, sdp: str) -> None:
        try:
            self.endpoint.reinvite(self.call_id, sdp)
            self.pending = True
        except Exception as e:  # noqa: BLE001 - one is pending (glare retry) or the peer's offer is open: skip
            log.info("re-INVITE not sent now: %s", e)

    def _on_reinvite(self, ev: sipev.ReinviteReceived) -> None:
        offer = ev.offer
        if ev.same_session and offer is not None:
            self.endpoint.answer_reinvite(self.call_id, self.sdp)  # the far end's refresh
            return
        if offer is not None and has_t38(offer) and self.result.mode != "T.38" and self.result.pages_sent:
            # pages went through as audio: T.38 would start T.30 over and send them a second time
            self.endpoint.reject_reinvite(self.call_id, 488, "Not Acceptable Here (fax already in progress)")
            return
        if offer is not None and has_t38(offer) and self.t38 in ("accept", "reinvite", "initial", "silent"):
            self.version += 1
            t38 = answer_t38(offer, self.local_ip, self.channel.port, self.channel.port, self.version)
            self.endpoint.answer_reinvite(self.call_id, t38.sdp)
            self.sdp = t38.sdp
            if self.result.mode != "T.38" and self.t38 != "silent":
                self._switch_to_t38(t38.params, t38.remote, t38.far_max_datagram)
            return
        if offer is not None and has_t38(offer):
            self.endpoint.reject_reinvite(self.call_id, 488, "Not Acceptable Here")
            return
        # audio (the far end falls back, or returns after the fax): answer on the same port
        self.version += 1
        codec = self.result.mode.split()[-1] if self.result.mode.startswith("G.711") else "PCMU"
        sdp = offer_audio(self.local_ip, self.channel.port, self.channel.port, self.version, codecs=(codec,))
        self.endpoint.answer_reinvite(self.call_id, sdp)
        self.sdp = sdp
        if self.result.mode == "T.38" and self.phase_e_at is None and offer is not None:
            # back to G.711 before the fax is through: start over in audio
            answer = parse_answer(str(offer))
            if self.terminal is not None:
                self.terminal.close()
            self.terminal = self._audio(answer.codec)
            self.channel.use_audio(self.terminal, answer.payload_type, answer.remote)
            self.result.mode = f"G.711 {answer.codec}"

    def _t30_progress(self, now: float) -> None:
        result, terminal = self.result, self.terminal
        if terminal is None:
            return
        while (tev := terminal.next_event()) is not None:
            if isinstance(tev, PhaseB):
                result.fax_answered = True
            elif isinstance(tev, PageDone):
                if tev.stats.pages_tx > result.pages_sent:
                    self._tell(self.on_page, tev.stats.pages_tx)
                result.pages_sent = tev.stats.pages_tx
                log.info("page %d sent at %d bit/s", tev.stats.pages_tx, tev.stats.bit_rate)
                if self.hangup_after is not None and tev.stats.pages_tx >= self.hangup_after and not self.hung_up:
                    self.hung_up = True
                    result.status = f"hung up after page {tev.stats.pages_tx} as asked"
                    self.endpoint.hangup(self.call_id)
            elif isinstance(tev, PhaseE):
                self.phase_e_at = now
                result.result_code = tev.code
                result.ok = tev.ok and not self.hung_up
                result.status = tev.text
                result.bit_rate, result.ecm = tev.stats.bit_rate, tev.stats.ecm
                result.remote_ident = tev.stats.remote_ident
                if tev.stats.pages_tx > result.pages_sent:
                    self._tell(self.on_page, tev.stats.pages_tx)
                result.pages_sent = tev.stats.pages_tx
        if (
            self.audio_after
            and self.phase_e_at is not None
            and self.result.mode == "T.38"
            and not self.result.back_to_audio
            and not self.pending
        ):
            self.result.back_to_audio = True
            self.version += 1
            self.sdp = offer_audio(self.local_ip, self.channel.port, self.channel.port, self.version)
            self._reinvite(self.sdp)
        wait = 2.0 if self.audio_after else 0.5
        if self.phase_e_at is not None and not self.hung_up and now - self.phase_e_at > wait:
            self.hung_up = True
            self.endpoint.hangup(self.call_id)

    def close(self) -> None:
        self.channel.close()
        if self.terminal is not None:
            self.result.trace = list(self.terminal.trace)
            if self.result.result_code is None:  # no phase E (hung up, timed out): what T.30 knew
                stats = self.terminal.stats()
                self.result.remote_ident = self.result.remote_ident or stats.remote_ident
                self.result.bit_rate, self.result.ecm = stats.bit_rate, stats.ecm
            self.terminal.close()


class _AnswerChallenges:
    """A UserAgent.challenge_hook for one outgoing call: answers a 401/407 from the host we
    called with the route's credentials, once per request (again only when the far end says the
    nonce was stale).

    Narrower than a registration's answerer in one way (only the one address this endpoint
    calls) and wider in another (any realm): the credentials were configured for that host, and
    a second 401 to our answer means they were refused, which ends the call as refused.
    """

    def __init__(self, endpoint: SipEndpoint, remote: tuple[str, int], username: str, password: str) -> None:
        self.endpoint, self.remote = endpoint, remote
        self.digest = DigestClient(username, password)

    def __call__(
        self,
        call_id: str,
        request: SipRequest,
        dest: tuple[str, int],
        response: SipResponse,
        source: tuple[str, int],
        now: float,
    ) -> bool:
        if tuple(dest) != tuple(self.remote) or source[0] != dest[0]:
            return False
        had_credentials = "Authorization" in request.headers or "Proxy-Authorization" in request.headers
        if had_credentials and not any(c.stale for c in parse_challenges(response.headers)):
            return False  # our credentials were refused: the UA fails the request
        answers = self.digest.authorize(response, request.method, request.uri)
        if not answers:
            return False
        self.endpoint.ua.resend_request(call_id, request, answers, now)
        return True
