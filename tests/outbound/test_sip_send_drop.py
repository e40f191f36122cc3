"""A line drop mid-fax: the far end hangs up (BYE) after page 1 of 3, or its media stops after page
1 without a BYE. Both give DROPPED with one page confirmed, and that page arrived pixel for pixel.
And a far end that agrees to our T.38 and then sends no UDPTL: we go back to G.711 and the fax
goes through.

The far end is a receiving spandsp terminal written here on the SIP core and RTP channel (the
daemon never hangs up mid-fax of its own accord); the calls run at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.fax.pages import STANDARD, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.media.channel import MediaChannel
from appliance.media.clock import MediaClock
from appliance.outbound.outcome import Outcome, Result
from appliance.outbound.sip_send import send_over_sip
from appliance.sip import events as sipev
from appliance.sip.sdp import answer_audio, answer_t38, has_t38
from appliance.sip.transport import SipEndpoint
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spandsp.t30 import PageDone
from tests.e2e.conftest import assert_pages_equal

pytestmark = pytest.mark.slow


class DroppingReceiver:
    """Answers one call per Request-URI user with a receiving fax terminal and, after the first
    page, either hangs up ("bye") or stops its media without a word ("silence"); "t38silent"
    agrees to a T.38 re-INVITE but stays on audio (a broken gateway) and receives every page."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.endpoint = SipEndpoint()
        self.files: dict[str, Path] = {}
        self.reinvites: list[str] = []  # the offers of our re-INVITEs, in order
        self.tasks: list[asyncio.Task[None]] = []
        self.port = 0

    async def start(self) -> None:
        await self.endpoint.start([("udp", "127.0.0.1", 0)])
        self.port = self.endpoint.locals[0].port
        self.tasks.append(asyncio.create_task(self._serve()))

    async def _serve(self) -> None:
        queues: dict[str, asyncio.Queue[sipev.Event]] = {}
        while True:
            ev = await self.endpoint.events.get()
            if isinstance(ev, sipev.IncomingCall):
                queues[ev.call_id] = asyncio.Queue()
                self.tasks.append(asyncio.create_task(self._call(ev, queues[ev.call_id])))
            elif ev.call_id in queues:
                queues[ev.call_id].put_nowait(ev)

    async def _call(self, ev: sipev.IncomingCall, events: asyncio.Queue[sipev.Event]) -> None:
        how = ev.called_number
        rx = self.files[how] = self.tmp / f"rx-{how}.tif"
        channel = await MediaChannel.open_ephemeral("127.0.0.1")
        assert ev.offer is not None
        audio = answer_audio(ev.offer, "127.0.0.1", channel.port, channel.port, 1)
        terminal = AudioFaxTerminal(calling=False, codec=audio.codec, ident="DROPPER", rx_file=rx)
        channel.use_audio(terminal, audio.payload_type, audio.remote)
        channel.start_clock(MediaClock())
        self.endpoint.answer_call(ev.call_id, audio.sdp)
        version = 1
        try:
            while True:
                while (tev := terminal.next_event()) is not None:
                    if isinstance(tev, PageDone) and tev.stats.pages_rx >= 1 and how != "t38silent":
                        # let our MCF go out (V.21 at 300 bit/s: about a second) and page 2 begin
                        await asyncio.sleep(2.5)
                        if how == "bye":
                            self.endpoint.hangup(ev.call_id)
                        else:
                            channel.close()  # no more RTP, no BYE: the line went dead
                        await asyncio.sleep(2.0)  # the caller's CallEnded / its own time-outs
                        return
                try:
                    end = await asyncio.wait_for(events.get(), 0.1)
                except TimeoutError:
                    continue
                if isinstance(end, sipev.CallEnded):
                    return
                if isinstance(end, sipev.ReinviteReceived) and end.offer is not None:
                    version += 1
                    if has_t38(end.offer):  # says yes, and never sends a UDPTL packet
                        sdp = answer_t38(end.offer, "127.0.0.1", channel.port, channel.port, version).sdp
                    else:
                        sdp = answer_audio(end.offer, "127.0.0.1", channel.port, channel.port, version).sdp
                    self.reinvites.append("T.38" if has_t38(end.offer) else "audio")
                    self.endpoint.answer_reinvite(ev.call_id, sdp)
        finally:
            terminal.close()
            channel.close()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.endpoint.close()


def test_drops_after_page_1_of_3_and_a_silent_t38_far_end(tmp_path: Path) -> None:
    pages = demo_pages(3, STANDARD, seed=77)
    doc = tmp_path / "doc.tif"
    write_fax_tiff(pages, doc, STANDARD)
    confirmed: dict[str, list[int]] = {"bye": [], "silence": [], "t38silent": []}

    async def run() -> tuple[list[Outcome], DroppingReceiver]:
        receiver = DroppingReceiver(tmp_path)
        await receiver.start()
        try:
            outcomes = await asyncio.gather(
                *(
                    send_over_sip(
                        f"sip:{how}@127.0.0.1:{receiver.port}",
                        doc,
                        ident="+1 555 3000",
                        t38="request" if how == "t38silent" else "off",
                        caller="drop test",
                        local_ip="127.0.0.1",
                        credentials=None,
                        on_connected=lambda: None,
                        on_page=confirmed[how].append,
                        cancel=asyncio.Event(),
                        timeout=240.0,
                    )
                    for how in ("bye", "silence", "t38silent")
                )
            )
        finally:
            await receiver.close()
        return outcomes, receiver

    (bye, silence, t38silent), receiver = asyncio.run(run())
    for o in (bye, silence, t38silent):
        print(f"{o.result} {o.detail!r} {o.way!r} {o.duration} s {o.bit_rate} bit/s far end {o.remote_ident!r}")
    assert (bye.result, bye.pages_confirmed, bye.pages_total) == (Result.DROPPED, 1, 3), bye
    assert bye.detail == "the far end hung up (BYE) after 1 confirmed page(s)", bye
    assert bye.words() == "the line was dropped during the fax (on page 2 of 3)"
    assert bye.remote_ident == silence.remote_ident == "DROPPER" and bye.bit_rate >= 9600, bye
    assert (silence.result, silence.pages_confirmed) == (Result.DROPPED, 1), silence
    assert silence.detail.startswith("T.30: "), silence  # spandsp's own time-out named the cause
    assert confirmed == {"bye": [1], "silence": [1], "t38silent": [1, 2, 3]}
    assert (t38silent.result, t38silent.pages_confirmed) == (Result.SENT, 3), t38silent
    assert t38silent.way == "SIP G.711 PCMU (T.38 agreed, but no T.38 media came)", t38silent
    assert receiver.reinvites == ["T.38", "audio"]
    assert_pages_equal(receiver.files["t38silent"].read_bytes(), pages)
    for how in ("bye", "silence"):
        assert_pages_equal(receiver.files[how].read_bytes(), pages[:1])
        assert len(read_pages(receiver.files[how])) == 1
