"""``faxbridge send-test-fax``: place a real fax call over SIP with spandsp as the calling party.

Users run it to check an installation end to end; the test suite uses it as the gateway.  It is
the same stack as the daemon (SIP core, RTP channel, spandsp terminal) in the calling role.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..media.channel import MediaChannel
from ..netutil import route_source
from ..media.clock import MediaClock
from ..sip import events as sipev
from ..sip.message import SipUri
from ..sip.sdp import (T38Params, answer_t38, has_t38, offer_audio, offer_t38, parse_answer,
                       parse_t38_answer)
from ..sip.transport import SipEndpoint
from ..spandsp.audio import AudioFaxTerminal, PageDone, PhaseE
from ..spandsp.t30 import T30Terminal
from ..spandsp.t38 import T38FaxTerminal
from .pages import FAX_WIDTH, prepare_for_sending

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
    trace: list[str] = field(default_factory=list)


def _fax_ready(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            dpi = tuple(round(float(d)) for d in im.info.get("dpi", (0, 0)))
            return im.mode == "1" and im.width == FAX_WIDTH and dpi in ((204, 98), (204, 196), (204, 391))
    except OSError:
        return False


#: how the sender treats T.38: what a gateway on the calling side would do
T38_MODES = ("off", "reinvite", "accept", "initial", "refuse")


async def send_fax(target: str, tiff: Path, *, caller: str = "5550100", caller_name: str = "Faxbridge test",
                   ident: str = "", codec: str | None = None, ecm: bool = True,
                   hangup_after_pages: int | None = None, timeout: float = 600.0, t38: str = "off",
                   loss: float = 0.0, bind: str | None = None,
                   headers: list[tuple[str, str]] | None = None) -> SendResult:
    """Call ``target`` (sip:USER@HOST[:PORT][;transport=tcp]) and send every page of ``tiff``.

    ``t38``: "off" refuses T.38 re-INVITEs (488) and stays on G.711; "refuse" the same, said
    explicitly; "accept" switches when the far end re-INVITEs; "reinvite" re-INVITEs to T.38 one
    second after the answer (as an originating gateway does on CNG); "initial" offers only T.38 in
    the INVITE.  ``loss`` drops that share of our outgoing media packets (a test of redundancy).
    """
    if t38 not in T38_MODES:
        raise ValueError(f"t38 must be one of {', '.join(T38_MODES)}")
    uri = SipUri.parse(target)
    transport = uri.params.get("transport", "udp").lower()
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport {transport!r} is not supported (udp or tcp)")
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(uri.host.strip("[]"), uri.port or 5060, type=socket.SOCK_DGRAM)
    remote = (infos[0][4][0], infos[0][4][1])
    local_ip = bind or route_source(remote[0])

    with tempfile.TemporaryDirectory(prefix="faxbridge-send-") as tmp:
        if not _fax_ready(tiff):
            converted = Path(tmp) / "send.tif"
            prepare_for_sending(tiff, converted)
            tiff = converted
        endpoint = SipEndpoint()
        await endpoint.start([(transport, local_ip, 0)])
        channel = await MediaChannel.open_ephemeral(local_ip)
        channel.send_loss = loss
        call = _OutgoingCall(endpoint, channel, tiff, local_ip, ident=ident, ecm=ecm, t38=t38,
                             hangup_after_pages=hangup_after_pages)
        if t38 == "initial":
            sdp = offer_t38(local_ip, channel.port, channel.port, 1, T38Params(max_datagram=400))
        else:
            sdp = offer_audio(local_ip, channel.port, session_id=channel.port, version=1,
                              codecs=(codec,) if codec else ("PCMU", "PCMA"))
        start = loop.time()
        call.call_id = endpoint.invite(target, from_uri=f"sip:{caller}@{local_ip}", from_display=caller_name,
                                       sdp=sdp, remote=remote, transport=transport, headers=headers or ())
        try:
            await asyncio.wait_for(call.run(), timeout)
        except asyncio.TimeoutError:
            call.result.status = "timed out"
            endpoint.hangup(call.call_id)
            await asyncio.sleep(0.2)
        finally:
            call.result.duration = round(loop.time() - start, 1)
            call.close()
            await endpoint.close()
        return call.result


class _OutgoingCall:
    """The calling side's call loop: SIP events, media switches, T.30 progress."""

    def __init__(self, endpoint: SipEndpoint, channel: MediaChannel, tiff: Path, local_ip: str, *,
                 ident: str, ecm: bool, t38: str, hangup_after_pages: int | None) -> None:
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

    def _audio(self, codec: str) -> AudioFaxTerminal:
        return AudioFaxTerminal(calling=True, codec=codec, ident=self.ident, ecm=self.ecm, tx_file=self.tiff)

    def _t38(self, params: T38Params) -> T38FaxTerminal:
        return T38FaxTerminal(calling=True, ident=self.ident, ecm=self.ecm, tx_file=self.tiff,
                              version=params.version, max_bitrate=params.max_bitrate,
                              rate_management=params.rate_management)

    def _switch_to_t38(self, params: T38Params, remote: tuple[str, int], far_max: int) -> None:
        if self.terminal is not None:
            self.terminal.close()
        terminal = self._t38(params)
        self.terminal = terminal
        self.channel.use_t38(terminal, remote, far_max)
        self.result.mode = "T.38"
        log.info("switched to T.38")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ep, result = self.endpoint, self.result
        while True:
            try:
                ev = await asyncio.wait_for(ep.events.get(), 0.2)
            except asyncio.TimeoutError:
                ev = None
            if ev is not None and getattr(ev, "call_id", self.call_id) != self.call_id:
                ev = None
            now = loop.time()
            if isinstance(ev, sipev.CallAnswered) and self.terminal is None:
                self.answered_at = now
                if self.t38 == "initial":
                    t38 = parse_t38_answer(str(ev.answer))
                    self._switch_to_t38(t38.params, t38.remote, t38.far_max_datagram)
                else:
                    answer = parse_answer(str(ev.answer))
                    self.terminal = self._audio(answer.codec)
                    self.channel.use_audio(self.terminal, answer.payload_type, answer.remote)
                    result.mode = f"G.711 {answer.codec}"
                self.channel.start_clock(self.clock)
                result.status = "answered"
            elif isinstance(ev, sipev.CallFailed):
                result.sip_status, result.status = ev.status, f"call failed: {ev.status} {ev.reason}"
                return
            elif isinstance(ev, sipev.CallEnded):
                if result.result_code is None and not self.hung_up:
                    result.status = f"far end hung up ({ev.reason})"
                return
            elif isinstance(ev, sipev.ReinviteReceived):
                self._on_reinvite(ev)
            elif isinstance(ev, sipev.ReinviteAnswered) and ev.answer is not None and has_t38(ev.answer):
                t38 = parse_t38_answer(str(ev.answer))
                self._switch_to_t38(t38.params, t38.remote, t38.far_max_datagram)
            elif isinstance(ev, sipev.ReinviteFailed):
                log.info("far end refused T.38: %s %s", ev.status, ev.reason)
            if (self.t38 == "reinvite" and not self.reinvited and self.answered_at is not None
                    and now - self.answered_at >= 1.0):
                self.reinvited = True
                self.version += 1
                ep.reinvite(self.call_id, offer_t38(self.local_ip, self.channel.port, self.channel.port,
                                                    self.version, T38Params(max_datagram=400)))
            self._t30_progress(now)

    def _on_reinvite(self, ev: "sipev.ReinviteReceived") -> None:
        offer = ev.offer
        if offer is not None and has_t38(offer) and self.t38 in ("accept", "reinvite", "initial"):
            self.version += 1
            t38 = answer_t38(offer, self.local_ip, self.channel.port, self.channel.port, self.version)
            self.endpoint.answer_reinvite(self.call_id, t38.sdp)
            if self.result.mode != "T.38":
                self._switch_to_t38(t38.params, t38.remote, t38.far_max_datagram)
            return
        if offer is not None and has_t38(offer):
            self.endpoint.reject_reinvite(self.call_id, 488, "Not Acceptable Here")
            return
        # a refresh, or audio: answer with audio on the same port and carry on
        self.version += 1
        codec = "PCMU"
        sdp = offer_audio(self.local_ip, self.channel.port, self.channel.port, self.version, codecs=(codec,))
        self.endpoint.answer_reinvite(self.call_id, sdp)

    def _t30_progress(self, now: float) -> None:
        result, terminal = self.result, self.terminal
        if terminal is None:
            return
        while (tev := terminal.next_event()) is not None:
            if isinstance(tev, PageDone):
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
                result.pages_sent = tev.stats.pages_tx
        if self.phase_e_at is not None and not self.hung_up and now - self.phase_e_at > 0.5:
            self.hung_up = True
            self.endpoint.hangup(self.call_id)

    def close(self) -> None:
        self.channel.close()
        if self.terminal is not None:
            self.result.trace = list(self.terminal.trace)
            self.terminal.close()
