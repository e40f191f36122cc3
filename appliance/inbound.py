"""One inbound SIP fax call, from the answered INVITE to the last page: media and T.38 switching.

Every way a call becomes T.38 ends in the same place, ``_switch_to_t38``: the peer re-INVITEs
during G.711, we re-INVITE (peer policy "request"), or T.38 is offered in the INVITE itself.  A
refusal (488/415/606), or a peer that agrees and then never sends UDPTL, leaves or puts the call
back on G.711; a refresh (same SDP) or a re-INVITE back to audio after the fax never disturbs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calls.facts import CallProgress, MediaFacts
from .config import Config
from .fax.session import ReceiveSession
from .media.channel import MediaChannel
from .media.clock import MediaClock
from .sip import events as sipev
from .sip.errors import LocalProtocolError
from .sip.sdp import (AudioAnswer, NoUsableCodec, SessionDescription, T38Params, answer_audio, answer_t38,
                      has_audio, has_t38, offer_audio, offer_t38, parse_t38_answer)
from .sip.transport import SipEndpoint
from .spandsp.audio import AudioFaxTerminal
from .spandsp.t30 import T30Terminal
from .spandsp.t38 import T38FaxTerminal

log = logging.getLogger("faxbridge.call")
POLL_INTERVAL = 0.25
#: after agreeing to T.38, fall back to G.711 if no UDPTL arrives within this many seconds
T38_MEDIA_TIMEOUT = 8.0
#: with policy "request", re-INVITE to T.38 this long after the call is confirmed
T38_REQUEST_DELAY = 1.0


@dataclass
class InboundSipCall:
    """Drives one answered call; ``events`` receives the SIP events for this call's Call-ID."""

    call_id: str
    cfg: Config
    sip: SipEndpoint
    channel: MediaChannel
    clock: MediaClock
    rx_file: Path
    local_ip: str
    t38_policy: str = "accept"
    #: 0 = believe the peer's T38FaxMaxDatagram; else use this (peers that state the IFP size)
    t38_max_datagram_override: int = 0
    events: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    session: ReceiveSession | None = None
    mode: str = "audio"
    codec: str = ""
    end_reason: str = ""
    switches: list[str] = field(default_factory=list)
    _sdp: str = ""
    _sdp_version: int = 1
    _session_id: int = field(default_factory=lambda: random.SystemRandom().getrandbits(31))
    _t38_since: float | None = None
    _t38_requested: bool = False
    _audio: AudioAnswer | None = None

    # -- answering ----------------------------------------------------------------------------
    def answer(self, offer: SessionDescription) -> str:
        """Build our answer to the INVITE's offer and set the media up; returns the SDP to send.

        Raises NoUsableCodec when neither usable audio nor (allowed) T.38 is offered.
        """
        loop = asyncio.get_running_loop()
        if self.t38_policy != "off" and has_t38(offer):
            t38 = answer_t38(offer, self.local_ip, self.channel.port, self._session_id, self._sdp_version,
                             our_max_datagram=400)
            terminal = self._t38_terminal(t38.params)
            self.session = ReceiveSession(terminal, loop.time(), self.cfg.fax)
            self.channel.use_t38(terminal, t38.remote, self._far_max(t38.far_max_datagram))
            self.channel.start_clock(self.clock)
            self.mode, self._t38_since, self._sdp = "t38", loop.time(), t38.sdp
            self.switches.append("T.38 offered in the INVITE")
            return t38.sdp
        audio = answer_audio(offer, self.local_ip, self.channel.port, self._session_id, self._sdp_version)
        self._audio, self.codec, self._sdp = audio, audio.codec, audio.sdp
        terminal = self._audio_terminal(audio.codec)
        self.session = ReceiveSession(terminal, loop.time(), self.cfg.fax)
        self.channel.use_audio(terminal, audio.payload_type, audio.remote)
        self.channel.start_clock(self.clock)
        return audio.sdp

    def _audio_terminal(self, codec: str) -> AudioFaxTerminal:
        return AudioFaxTerminal(calling=False, codec=codec, ident=self.cfg.fax.ident, ecm=self.cfg.fax.ecm,
                                rx_file=self.rx_file)

    def _far_max(self, offered: int) -> int:
        return self.t38_max_datagram_override or offered

    def _t38_terminal(self, params: T38Params) -> T38FaxTerminal:
        return T38FaxTerminal(calling=False, ident=self.cfg.fax.ident, ecm=self.cfg.fax.ecm, rx_file=self.rx_file,
                              version=params.version, max_bitrate=params.max_bitrate,
                              rate_management=params.rate_management)

    # -- the call loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Until the call ends: SIP events, T.30 progress, timeouts."""
        loop = asyncio.get_running_loop()
        assert self.session is not None
        confirmed = False
        while True:
            try:
                ev = await asyncio.wait_for(self.events.get(), POLL_INTERVAL)
            except asyncio.TimeoutError:
                ev = None
            now = loop.time()
            if isinstance(ev, sipev.CallEnded):
                self.end_reason = self.end_reason or ev.reason
                return
            if isinstance(ev, sipev.CallConfirmed) and not confirmed:
                confirmed = True
                if self.t38_policy == "request" and self.mode == "audio":
                    loop.call_later(T38_REQUEST_DELAY, self._request_t38)
            elif isinstance(ev, sipev.ReinviteReceived):
                self._on_reinvite(ev)
            elif isinstance(ev, sipev.ReinviteAnswered):
                self._on_reinvite_answered(ev)
            elif isinstance(ev, sipev.ReinviteFailed) and ev.status == 491:
                pass  # glare: the peer's own re-INVITE won and arrives as ReinviteReceived
            elif isinstance(ev, sipev.ReinviteFailed):
                log.info("call %s: re-INVITE refused (%s %s): staying on %s", self.call_id, ev.status, ev.reason,
                         "G.711" if self.mode == "audio" else "T.38")
                self.switches.append(f"our re-INVITE refused: {ev.status} {ev.reason}")
            if (self.mode == "t38" and self.channel.udptl_seen_at is None and self._t38_since is not None
                    and now - self._t38_since > T38_MEDIA_TIMEOUT and self._audio is not None):
                self._fall_back_to_audio("no UDPTL arrived after T.38 was agreed")
            seen = len(self.session.pages)
            reason = self.session.poll(now)
            for n, page in enumerate(self.session.pages[seen:], seen + 1):
                log.info("call %s: page %d received (%s, %d bad rows, %d bit/s%s)", self.call_id, n,
                         page.resolution, page.bad_rows, page.bit_rate, ", ECM" if page.ecm else "")
            if reason:
                log.info("call %s: hanging up: %s", self.call_id, reason)
                self.end_reason = reason
                self.sip.hangup(self.call_id)
                return

    def _on_reinvite(self, ev: "sipev.ReinviteReceived") -> None:
        offer = ev.offer
        assert self.session is not None
        if offer is None or ev.same_session:
            self.sip.answer_reinvite(self.call_id, self._sdp)  # a refresh: nothing changes
            return
        if has_t38(offer) and self.t38_policy != "off":
            if self.mode == "audio" and self.session.pages:
                # pages already came as audio: switching would start T.30 over into the same file
                self.sip.reject_reinvite(self.call_id, 488, "Not Acceptable Here (fax already in progress)")
                return
            t38 = answer_t38(offer, self.local_ip, self.channel.port, self._session_id, self._next_version(),
                             our_max_datagram=400)
            self.sip.answer_reinvite(self.call_id, t38.sdp)
            self._sdp = t38.sdp
            if self.mode == "t38":
                self.channel._retarget(t38.remote)  # new address or parameters, same fax
            else:
                self._switch_to_t38(t38.params, t38.remote, t38.far_max_datagram, "peer re-INVITE")
            return
        if has_audio(offer):
            try:
                audio = answer_audio(offer, self.local_ip, self.channel.port, self._session_id, self._next_version())
            except NoUsableCodec:
                self.sip.reject_reinvite(self.call_id, 488, "Not Acceptable Here")
                return
            self.sip.answer_reinvite(self.call_id, audio.sdp)
            self._sdp, self._audio = audio.sdp, audio
            if self.mode == "t38" and self.session.phase_e is None and not self.session.pages:
                self._switch_to_audio(audio, "peer re-INVITE back to audio before the fax started")
            elif self.mode == "t38":
                # after the fax (Grandstream "re-INVITE after fax"), or mid-fax: the pages stay ours
                self.switches.append("peer went back to audio")
            return
        self.sip.reject_reinvite(self.call_id, 488, "Not Acceptable Here")

    def _request_t38(self) -> None:
        if self._t38_requested or self.mode != "audio" or self.end_reason:
            return  # the peer got there first, or the call is over
        self._t38_requested = True
        sdp = offer_t38(self.local_ip, self.channel.port, self._session_id, self._next_version(),
                        T38Params(max_datagram=400))
        log.info("call %s: re-INVITE to T.38", self.call_id)
        try:
            self.sip.reinvite(self.call_id, sdp)
        except LocalProtocolError as e:  # the peer's own offer is open: it is switching already
            log.info("call %s: T.38 re-INVITE not sent: %s", self.call_id, e)

    def _on_reinvite_answered(self, ev: "sipev.ReinviteAnswered") -> None:
        if ev.answer is None:
            return
        try:
            t38 = parse_t38_answer(str(ev.answer))
        except (NoUsableCodec, ValueError):
            return  # an answer to an audio re-INVITE (our fall-back): nothing more to do
        self._sdp = offer_t38(self.local_ip, self.channel.port, self._session_id, self._sdp_version,
                              T38Params(max_datagram=400))
        if self.mode == "audio":
            self._switch_to_t38(t38.params, t38.remote, t38.far_max_datagram, "our re-INVITE accepted")

    def _switch_to_t38(self, params: T38Params, remote: tuple[str, int], far_max_datagram: int, why: str) -> None:
        assert self.session is not None
        loop = asyncio.get_running_loop()
        old = self.session.terminal
        self._retire(old)
        terminal = self._t38_terminal(params)
        self.session.restart(terminal, loop.time())
        self.channel.use_t38(terminal, remote, self._far_max(far_max_datagram))
        self.mode, self._t38_since = "t38", loop.time()
        self.switches.append(f"T.38 ({why})")
        log.info("call %s: switched to T.38 (%s), max datagram %d", self.call_id, why, far_max_datagram)

    def _switch_to_audio(self, audio: AudioAnswer, why: str) -> None:
        assert self.session is not None
        self._retire(self.session.terminal)
        terminal = self._audio_terminal(audio.codec)
        self.session.restart(terminal, asyncio.get_running_loop().time())
        self.channel.use_audio(terminal, audio.payload_type, audio.remote)
        self.mode, self.codec = "audio", audio.codec
        self.switches.append(f"G.711 ({why})")
        log.info("call %s: back to G.711 (%s)", self.call_id, why)

    def _fall_back_to_audio(self, why: str) -> None:
        assert self._audio is not None and self.session is not None
        if self.session.pages:
            return
        sdp = offer_audio(self.local_ip, self.channel.port, self._session_id, self._sdp_version + 1,
                          codecs=(self._audio.codec,))
        try:
            self.sip.reinvite(self.call_id, sdp)
        except LocalProtocolError as e:  # an offer is open just now: try again at the next poll
            log.info("call %s: fall-back re-INVITE deferred: %s", self.call_id, e)
            return
        self._sdp_version += 1
        self._sdp = sdp
        self._switch_to_audio(self._audio, why)

    def _retire(self, terminal: T30Terminal) -> None:
        """Close a terminal we switch away from (only ever before its first page): its empty file
        makes room for the next terminal's."""
        pages = terminal.stats().pages_rx if terminal.alive else 0
        terminal.close()
        if pages == 0:
            try:
                os.unlink(self.rx_file)
            except FileNotFoundError:
                pass

    def _next_version(self) -> int:
        self._sdp_version += 1
        return self._sdp_version

    def close(self) -> None:
        """Stop the media and close the terminal: the rx file is complete after this."""
        self.channel.close()
        if self.session is not None:
            self.session.terminal.close()

    def media_facts(self) -> MediaFacts:
        ch = self.channel
        return MediaFacts(mode="T.38" if self.mode == "t38" else f"G.711 {self.codec}", switches=self.switches,
                          rtp={**ch.playout.stats, **ch.stats, "late_ticks": ch.late_ticks},
                          udptl=dict(ch.udptl_rx.stats))

    def status(self) -> CallProgress:
        """This call for the dashboard: its media and how far its fax is."""
        out = CallProgress(line="", mode="t38" if self.mode == "t38" else "g711", codec=self.codec, bit_rate=0,
                           ecm=None, pages=0, page=None, remote_ident="")
        if self.session is not None:
            out.update(self.session.progress())
        return out
