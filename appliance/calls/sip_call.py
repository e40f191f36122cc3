"""One inbound SIP fax call, from the answered INVITE to the last page: the asyncio driver.

The decisions about the call's media (G.711 or T.38, when to switch, when to fall back) are
`calls/t38switch.T38Switcher`'s, made sans-I/O; this driver feeds it the call's SIP events, the
first UDPTL packet and the T.30 session's progress, carries out what it returns on the user agent,
the media channel and the spandsp terminals, and hangs up when the T.30 session says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.calls.facts import CallProgress, MediaFacts
from appliance.calls.t38switch import (
    Action,
    AnswerReinvite,
    FaxProgress,
    Mode,
    Note,
    ReinviteNotSent,
    ReinviteSent,
    RejectReinvite,
    Retarget,
    SendReinvite,
    T38Policy,
    T38Switcher,
    UdptlArrived,
    UseAudio,
    UseT38,
)
from appliance.config import Config
from appliance.fax.session import ReceiveSession, SessionProgress
from appliance.media.channel import MediaChannel
from appliance.media.clock import MediaClock
from appliance.sip import events as sipev
from appliance.sip.errors import LocalProtocolError
from appliance.sip.sdp import SessionDescription, T38Params
from appliance.sip.transport import SipEndpoint
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spandsp.t30 import T30Terminal
from appliance.spandsp.t38 import T38FaxTerminal

log = logging.getLogger("faxbridge.call")
#: how often the T.30 session is asked for progress (pages, hang-up) while nothing else happens
POLL_INTERVAL = 0.25
#: the fax part of status() before the T.30 session starts (read only)
NO_FAX_YET = SessionProgress(pages=0, page=None, bit_rate=0, ecm=None, remote_ident="")


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
    end_reason: str = ""
    switcher: T38Switcher = field(init=False)
    _udptl_reported: bool = False

    def __post_init__(self) -> None:
        self.switcher = T38Switcher(
            T38Policy(self.t38_policy),
            self.local_ip,
            self.channel.port,
            random.SystemRandom().getrandbits(31),
            max_datagram_override=self.t38_max_datagram_override,
        )

    @property
    def mode(self) -> Mode:
        return self.switcher.mode

    @property
    def codec(self) -> str:
        return self.switcher.codec

    @property
    def switches(self) -> list[str]:
        return self.switcher.switches

    # -- answering ----------------------------------------------------------------------------
    def answer(self, offer: SessionDescription) -> str:
        """Build our answer to the INVITE's offer and set the media up; returns the SDP to send.

        Raises NoUsableCodec when neither usable audio nor (allowed) T.38 is offered.
        """
        now = asyncio.get_running_loop().time()
        use = self.switcher.answer(offer, now)
        if isinstance(use, UseT38):
            t38 = self._t38_terminal(use.params)
            self.session = ReceiveSession(t38, now, self.cfg.fax)
            self.channel.use_t38(t38, use.remote, use.far_max_datagram)
        else:
            audio = self._audio_terminal(use.audio.codec)
            self.session = ReceiveSession(audio, now, self.cfg.fax)
            self.channel.use_audio(audio, use.audio.payload_type, use.audio.remote)
        self.channel.start_clock(self.clock)
        return self.switcher.sdp

    def _audio_terminal(self, codec: str) -> AudioFaxTerminal:
        return AudioFaxTerminal(
            calling=False, codec=codec, ident=self.cfg.fax.ident, ecm=self.cfg.fax.ecm, rx_file=self.rx_file
        )

    def _t38_terminal(self, params: T38Params) -> T38FaxTerminal:
        return T38FaxTerminal(
            calling=False,
            ident=self.cfg.fax.ident,
            ecm=self.cfg.fax.ecm,
            rx_file=self.rx_file,
            version=params.version,
            max_bitrate=params.max_bitrate,
            rate_management=params.rate_management,
        )

    # -- the call loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Until the call ends: SIP events, the switcher's timers, T.30 progress."""
        loop = asyncio.get_running_loop()
        assert self.session is not None
        while True:
            timeout = POLL_INTERVAL
            deadline = self.switcher.next_timer()
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - loop.time()))
            try:
                ev = await asyncio.wait_for(self.events.get(), timeout)
            except TimeoutError:
                ev = None
            now = loop.time()
            if isinstance(ev, sipev.CallEnded):
                self.end_reason = self.end_reason or ev.reason
                self.switcher.receive(ev, now)
                return
            if ev is not None:
                self._carry_out(self.switcher.receive(ev, now), now)
            if not self._udptl_reported and self.channel.udptl_seen_at is not None:
                self._udptl_reported = True
                self._carry_out(self.switcher.receive(UdptlArrived(), now), now)
            deadline = self.switcher.next_timer()
            if deadline is not None and deadline <= now:
                self._carry_out(self.switcher.handle_timer(now), now)
            seen = len(self.session.pages)
            reason = self.session.poll(now)
            for n, page in enumerate(self.session.pages[seen:], seen + 1):
                log.info(
                    "call %s: page %d received (%s, %d bad rows, %d bit/s%s)",
                    self.call_id,
                    n,
                    page.resolution,
                    page.bad_rows,
                    page.bit_rate,
                    ", ECM" if page.ecm else "",
                )
            self.switcher.receive(FaxProgress(len(self.session.pages), self.session.phase_e is not None), now)
            if reason:
                log.info("call %s: hanging up: %s", self.call_id, reason)
                self.end_reason = reason
                self.sip.hangup(self.call_id)
                return

    def _carry_out(self, actions: list[Action], now: float) -> None:
        for action in actions:
            if isinstance(action, AnswerReinvite):
                self.sip.answer_reinvite(self.call_id, action.sdp)
            elif isinstance(action, RejectReinvite):
                self.sip.reject_reinvite(self.call_id, action.status, action.reason)
            elif isinstance(action, SendReinvite):
                try:
                    self.sip.reinvite(self.call_id, action.sdp)
                except LocalProtocolError as e:  # an offer is open just now (the peer's, or ours)
                    outcome: ReinviteSent | ReinviteNotSent = ReinviteNotSent(action.kind, str(e))
                else:
                    outcome = ReinviteSent(action.kind)
                self._carry_out(self.switcher.receive(outcome, now), now)
            elif isinstance(action, UseT38):
                self._switch_to_t38(action, now)
            elif isinstance(action, UseAudio):
                self._switch_to_audio(action, now)
            elif isinstance(action, Retarget):
                self.channel._retarget(action.remote)
            elif isinstance(action, Note):
                log.info("call %s: %s", self.call_id, action.text)

    def _switch_to_t38(self, use: UseT38, now: float) -> None:
        assert self.session is not None
        self._retire(self.session.terminal)
        terminal = self._t38_terminal(use.params)
        self.session.restart(terminal, now)
        self.channel.use_t38(terminal, use.remote, use.far_max_datagram)
        log.info("call %s: switched to T.38 (%s), max datagram %d", self.call_id, use.why, use.far_max_datagram)

    def _switch_to_audio(self, use: UseAudio, now: float) -> None:
        assert self.session is not None
        self._retire(self.session.terminal)
        terminal = self._audio_terminal(use.audio.codec)
        self.session.restart(terminal, now)
        self.channel.use_audio(terminal, use.audio.payload_type, use.audio.remote)
        log.info("call %s: back to G.711 (%s)", self.call_id, use.why)

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

    def close(self) -> None:
        """Stop the media and close the terminal: the rx file is complete after this."""
        self.channel.close()
        if self.session is not None:
            self.session.terminal.close()

    def media_facts(self) -> MediaFacts:
        ch = self.channel
        return MediaFacts(
            mode="T.38" if self.mode == Mode.T38 else f"G.711 {self.codec}",
            switches=self.switches,
            rtp={**ch.playout.stats, **ch.stats, "late_ticks": ch.late_ticks},
            udptl=dict(ch.udptl_rx.stats),
        )

    def status(self) -> CallProgress:
        """This call for the dashboard: its media and how far its fax is."""
        fax = self.session.progress() if self.session is not None else NO_FAX_YET
        return CallProgress(
            line="",
            mode="t38" if self.mode == Mode.T38 else "g711",
            codec=self.codec,
            bit_rate=fax["bit_rate"],
            ecm=fax["ecm"],
            pages=fax["pages"],
            page=fax["page"],
            remote_ident=fax["remote_ident"],
        )
