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

from ..media.channel import AudioChannel
from ..netutil import route_source
from ..media.clock import MediaClock
from ..sip import events as sipev
from ..sip.message import SipUri
from ..sip.sdp import offer_audio, parse_answer
from ..sip.transport import SipEndpoint
from ..spandsp.audio import AudioFaxTerminal, PageDone, PhaseE
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
    trace: list[str] = field(default_factory=list)


def _fax_ready(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            dpi = tuple(round(float(d)) for d in im.info.get("dpi", (0, 0)))
            return im.mode == "1" and im.width == FAX_WIDTH and dpi in ((204, 98), (204, 196), (204, 391))
    except OSError:
        return False


async def send_fax(target: str, tiff: Path, *, caller: str = "5550100", caller_name: str = "Faxbridge test",
                   ident: str = "", codec: str | None = None, ecm: bool = True,
                   hangup_after_pages: int | None = None, timeout: float = 600.0) -> SendResult:
    """Call ``target`` (sip:USER@HOST[:PORT][;transport=tcp]) and send every page of ``tiff``."""
    uri = SipUri.parse(target)
    transport = uri.params.get("transport", "udp").lower()
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport {transport!r} is not supported (udp or tcp)")
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(uri.host.strip("[]"), uri.port or 5060, type=socket.SOCK_DGRAM)
    remote = (infos[0][4][0], infos[0][4][1])
    local_ip = route_source(remote[0])

    with tempfile.TemporaryDirectory(prefix="faxbridge-send-") as tmp:
        if not _fax_ready(tiff):
            converted = Path(tmp) / "send.tif"
            prepare_for_sending(tiff, converted)
            tiff = converted
        endpoint = SipEndpoint()
        await endpoint.start([(transport, local_ip, 0)])
        channel = await AudioChannel.open_ephemeral(local_ip)
        codecs = (codec,) if codec else ("PCMU", "PCMA")
        sdp = offer_audio(local_ip, channel.port, session_id=channel.port, version=1, codecs=codecs)
        start = loop.time()
        call_id = endpoint.invite(target, from_uri=f"sip:{caller}@{local_ip}", from_display=caller_name,
                                  sdp=sdp, remote=remote, transport=transport)
        terminal: AudioFaxTerminal | None = None
        result = SendResult(False, "no answer")
        try:
            result = await asyncio.wait_for(
                _run_call(endpoint, channel, call_id, tiff, ident, ecm, hangup_after_pages, result,
                          lambda c: AudioFaxTerminal(calling=True, codec=c, ident=ident, ecm=ecm,
                                                     tx_file=tiff)),
                timeout)
        except asyncio.TimeoutError:
            result.status = "timed out"
            endpoint.hangup(call_id)
            await asyncio.sleep(0.2)
        finally:
            result.duration = round(loop.time() - start, 1)
            channel.close()
            await endpoint.close()
        return result


async def _run_call(endpoint: SipEndpoint, channel: AudioChannel, call_id: str, tiff: Path, ident: str,
                    ecm: bool, hangup_after_pages: int | None, result: SendResult,
                    make_terminal) -> SendResult:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    terminal: AudioFaxTerminal | None = None
    phase_e_at: float | None = None
    hung_up = False
    try:
        while True:
            try:
                ev = await asyncio.wait_for(endpoint.events.get(), 0.2)
            except asyncio.TimeoutError:
                ev = None
            if isinstance(ev, sipev.CallAnswered) and ev.call_id == call_id and terminal is None:
                answer = parse_answer(str(ev.answer))
                channel.playout.payload_type = channel.stream.payload_type = answer.payload_type
                channel.remote = answer.remote
                terminal = make_terminal(answer.codec)
                channel.start(terminal, MediaClock())
                result.status = "answered"
            elif isinstance(ev, sipev.CallFailed) and ev.call_id == call_id:
                result.sip_status, result.status = ev.status, f"call failed: {ev.status} {ev.reason}"
                return result
            elif isinstance(ev, sipev.CallEnded) and ev.call_id == call_id:
                if result.result_code is None and not hung_up:
                    result.status = f"far end hung up ({ev.reason})"
                break
            if terminal is not None:
                while (tev := terminal.next_event()) is not None:
                    if isinstance(tev, PageDone):
                        result.pages_sent = tev.stats.pages_tx
                        log.info("page %d sent at %d bit/s", tev.stats.pages_tx, tev.stats.bit_rate)
                        if hangup_after_pages is not None and tev.stats.pages_tx >= hangup_after_pages and not hung_up:
                            hung_up = True
                            result.status = f"hung up after page {tev.stats.pages_tx} as asked"
                            endpoint.hangup(call_id)
                    elif isinstance(tev, PhaseE):
                        phase_e_at = loop.time()
                        result.result_code = tev.code
                        result.ok = tev.ok and not hung_up
                        result.status = tev.text
                        result.bit_rate, result.ecm = tev.stats.bit_rate, tev.stats.ecm
                        result.remote_ident = tev.stats.remote_ident
                        result.pages_sent = tev.stats.pages_tx
                if phase_e_at is not None and not hung_up and loop.time() - phase_e_at > 0.5:
                    hung_up = True
                    endpoint.hangup(call_id)
    finally:
        if terminal is not None:
            channel.close()
            result.trace = list(terminal.trace)
            terminal.close()
    return result
