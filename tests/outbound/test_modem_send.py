"""Sending faxes over a modem line: our Class 1 and Class 2.0 senders through the virtual modem
pair to efax receiving (pages compared pixel for pixel with what we sent), and the ends a real
line has: busy, no answer, answered by no fax machine, dropped after page 1, cancelled.

The daemon's own line (ModemManager/ModemLine on port A, the real drivers) sends; the far end is
efax (Debian) on port B.  Each real-time fax takes 30-60 s."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.calls.modem_line import LineBusy, LineSettings
from appliance.fax.pages import write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.modem.driver import ModemSendResult
from appliance.modem.manager import ModemManager
from appliance.modem.virtual import LineOptions, VirtualLine
from appliance.outbound.modem_send import outcome_from, send_over_modem
from appliance.outbound.outcome import Outcome, Result
from tests.budgets import LOADED
from tests.modem.lines import Spool, until
from tests.modem.test_virtual_line import Dte, _rows
from tests.provided import provided

EFAX = shutil.which("efax")
needs_efax = provided(EFAX is not None, "needs Debian's efax (make test installs it)")


def _document(tmp_path: Path, pages: int) -> Path:
    tiff = tmp_path / "doc.tif"
    write_fax_tiff(demo_pages(pages), tiff)
    return tiff


# -- the words: pure -------------------------------------------------------------------------------

#: a Class 1 / Class 2.0 call that a fax machine answered
C1: dict[str, Any] = {"dial_result": "CONNECT", "modem_class": "1", "fax_answered": True}
C20: dict[str, Any] = {"dial_result": "OK", "modem_class": "2.0", "fax_answered": True}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (ModemSendResult(dial_result="BUSY", reason="dialling: BUSY"), Result.BUSY),
        (ModemSendResult(dial_result="NO ANSWER"), Result.NO_ANSWER),
        (ModemSendResult(dial_result="timeout"), Result.NO_ANSWER),
        (ModemSendResult(dial_result="NO CARRIER"), Result.NO_CARRIER),
        (ModemSendResult(dial_result="NO DIALTONE"), Result.NO_ROUTE),
        (ModemSendResult(dial_result="CONNECT", modem_class="1", t30_code=2), Result.NO_CARRIER),
        (ModemSendResult(**C1, t30_code=6), Result.TRAINING_FAILED),
        (ModemSendResult(**C1, t30_code=49), Result.DROPPED),
        (ModemSendResult(**C1, t30_code=17), Result.FAR_END_ERROR),
        (ModemSendResult(**C20, hangup_code="11"), Result.NO_CARRIER),
        (ModemSendResult(**C20, hangup_code="25"), Result.TRAINING_FAILED),
        (ModemSendResult(**C20, hangup_code="54"), Result.DROPPED),
        (ModemSendResult(**C20, hangup_code="55"), Result.FAR_END_ERROR),
        (ModemSendResult(dial_result="OK", modem_class="2", fax_answered=True, cancelled=True), Result.CANCELLED),
        (ModemSendResult(dial_result="OK", complete=True, pages_sent=2, pages_total=2), Result.SENT),
        (ModemSendResult(reason="modem error: ATDT1: device gone", device_lost=True), Result.NO_ROUTE),
    ],
)
def test_what_the_modem_said_in_the_reports_words(result: ModemSendResult, expected: Result) -> None:
    assert outcome_from(result).result is expected


def test_a_drop_after_page_one_names_the_page_and_the_hangup_code() -> None:
    r = ModemSendResult(**C20, hangup_code="52",
                        pages_sent=1, pages_total=3, reason="page end: ERROR")
    out = outcome_from(r, duration=42.0, way="modem ttyA Class 2.0")
    assert out.result is Result.DROPPED and out.retryable
    assert out.words() == "the line was dropped during the fax (on page 2 of 3)"
    assert "+FHS:52 no response to MPS repeated 3 times" in out.detail and out.way == "modem ttyA Class 2.0"


def test_no_line_that_can_send_is_no_route(tmp_path: Path) -> None:
    tiff = _document(tmp_path, 1)
    spool = Spool(tmp_path)
    mgr = ModemManager(LineSettings(), [str(tmp_path / "ttyX")], spool.begin, spool.finish)  # never started: down
    with pytest.raises(LineBusy, match="no modem line can send now"):
        mgr.acquire("any")
    with pytest.raises(LineBusy, match="no modem line 'nope' is configured"):
        mgr.acquire("nope")

    async def go() -> Outcome:
        return await send_over_modem(mgr, "ttyX", "5551000", tiff, ident="1", on_connected=lambda: None,
                                     on_page=lambda n: None, cancel=asyncio.Event())

    out = asyncio.run(go())
    assert out.result is Result.NO_ROUTE and "ttyX down" in out.detail and out.pages_total == 1


# -- real calls on the virtual line ------------------------------------------------------------------


class Sending:
    """Our line on port A of a virtual line (the daemon's ModemManager and drivers)."""

    def __init__(self, tmp_path: Path, classes: tuple[str, ...]) -> None:
        self.tmp_path = tmp_path
        self.path = str(tmp_path / "ttyA")
        self.spool = Spool(tmp_path)
        self.mgr = ModemManager(LineSettings(class_preference=classes, ident="+1 555 0100", rings=2),
                                [self.path], self.spool.begin, self.spool.finish)
        self.connected = 0
        self.pages: list[int] = []
        self.cancel = asyncio.Event()

    async def send(self, tiff: Path, dial: str = "5551000", *, timeout: float = 600.0, **kw: Any) -> Outcome:
        await self.mgr.start(hotplug=False)
        try:
            line = self.mgr.lines[self.path]
            await until(lambda: line.state == "idle", LOADED, "our line idle")

            def connected() -> None:
                self.connected += 1

            out = await send_over_modem(self.mgr, "any", dial, tiff, ident="+1 555 0100", on_connected=connected,
                                        on_page=self.pages.append, cancel=self.cancel, timeout=timeout, **kw)
            await until(lambda: line.state == "idle", LOADED, "our line idle again after the call")
            assert line.sent == 1 and line.calls == 0 and not self.spool.begun  # it never answered
            return out
        finally:
            await self.mgr.stop()


def _efax_receives(tmp_path: Path, ln: VirtualLine) -> subprocess.Popen[bytes]:
    """efax answering on port B (Class 1, its own T.30), pages to rx.001, rx.002 ..."""
    log = open(tmp_path / "rx.log", "w")  # noqa: SIM115 - closed with the process by the caller
    rx = subprocess.Popen([str(EFAX), "-d", str(tmp_path / "ttyB"), "-o1", "-r", str(tmp_path / "rx")],
                          stdout=log, stderr=subprocess.STDOUT)
    assert ln.wait_for(lambda line: line.b.present, LOADED)
    time.sleep(1.5)  # efax initialises the modem, then answers (ATA) and waits for the call
    return rx


def _assert_pages_equal(tmp_path: Path, sent_tiff: Path, count: int) -> None:
    """efax's received pages are ours row for row (Pillow splits our multi-page TIFF per page)."""
    from PIL import Image

    received = sorted(tmp_path.glob("rx.0*"))
    assert len(received) == count, received
    with Image.open(sent_tiff) as im:
        for n, got in enumerate(received):
            im.seek(n)
            page = tmp_path / f"sent{n + 1}.png"
            im.convert("1").save(page)
            sent_rows, got_rows = _rows(page), _rows(got)
            assert len(got_rows) >= len(sent_rows), (n + 1, len(got_rows), len(sent_rows))
            bad = [i for i, (x, y) in enumerate(zip(sent_rows, got_rows[: len(sent_rows)], strict=True)) if x != y]
            assert not bad, f"page {n + 1}: {len(bad)} rows differ, first {bad[:5]}"


def _send_to_efax(tmp_path: Path, classes: tuple[str, ...], pages: int,
                  options: LineOptions | None = None) -> tuple[Outcome, Sending, int, float, Path]:
    tiff = _document(tmp_path, pages)
    s = Sending(tmp_path, classes)
    with VirtualLine(s.path, str(tmp_path / "ttyB"), options=options) as ln:
        rx = _efax_receives(tmp_path, ln)
        t0 = time.monotonic()
        try:
            out = asyncio.run(asyncio.wait_for(s.send(tiff), 600))
            rx_rc = rx.wait(60)
        finally:
            if rx.poll() is None:
                rx.kill()
                rx.wait()
        elapsed = time.monotonic() - t0
    return out, s, rx_rc, elapsed, tiff


@pytest.mark.slow
@pytest.mark.xdist_group("modem-send")
@needs_efax
@pytest.mark.parametrize("classes", [("1.0", "1"), ("2.0",), ("2",)], ids=["class1", "class2.0", "class2"])
def test_our_line_sends_two_pages_to_efax(tmp_path: Path, classes: tuple[str, ...]) -> None:
    out, s, rx_rc, elapsed, tiff = _send_to_efax(tmp_path, classes, 2)
    log = (tmp_path / "rx.log").read_text()[-3000:]
    assert out.result is Result.SENT, (out, log)
    assert rx_rc == 0, log
    assert out.pages_confirmed == 2 and out.pages_total == 2 and s.pages == [1, 2] and s.connected == 1, out
    assert out.way == f"modem ttyA Class {classes[0]}" and out.bit_rate >= 9600, out
    _assert_pages_equal(tmp_path, tiff, 2)
    print(f"{classes[0]} -> efax, 2 pages: {elapsed:.1f} s, {out.bit_rate} bit/s, ECM {out.ecm}")


@pytest.mark.slow
@pytest.mark.xdist_group("modem-send")
@pytest.mark.parametrize("classes", [("1.0",), ("2.0",)], ids=["class1", "class2.0"])
def test_a_busy_number_is_busy(tmp_path: Path, classes: tuple[str, ...]) -> None:
    tiff = _document(tmp_path, 1)
    s = Sending(tmp_path, classes)
    with VirtualLine(s.path, str(tmp_path / "ttyB"), options=LineOptions(busy=True)) as ln:
        out = asyncio.run(asyncio.wait_for(s.send(tiff), 120))
        assert not ln.calls  # it never rang
    assert out.result is Result.BUSY and out.retryable and s.connected == 0, out
    assert out.words() == "the number was busy"


@pytest.mark.slow
@pytest.mark.xdist_group("modem-send")
@pytest.mark.parametrize("classes", [("1.0",), ("2.0",)], ids=["class1", "class2.0"])
def test_nobody_answering_is_no_answer(tmp_path: Path, classes: tuple[str, ...]) -> None:
    """Nothing on port B picks up: the line rings until its ring timeout, the modem says NO ANSWER."""
    tiff = _document(tmp_path, 1)
    s = Sending(tmp_path, classes)
    with VirtualLine(s.path, str(tmp_path / "ttyB"), options=LineOptions(ring_timeout=6.0)) as ln:
        out = asyncio.run(asyncio.wait_for(s.send(tiff), 120))
        assert ln.calls and not ln.calls[-1].answered and ln.calls[-1].rings >= 2, ln.calls
    assert out.result is Result.NO_ANSWER and s.connected == 0, out


@pytest.mark.slow
@pytest.mark.xdist_group("modem-send")
@pytest.mark.parametrize("classes", [("1.0",), ("2.0",)], ids=["class1", "class2.0"])
def test_answered_by_no_fax_machine_is_no_carrier(tmp_path: Path, classes: tuple[str, ...]) -> None:
    """Port B goes off hook at the second ring and says nothing (a person, a voice box): no DIS."""
    tiff = _document(tmp_path, 1)
    s = Sending(tmp_path, classes)
    with VirtualLine(s.path, str(tmp_path / "ttyB")) as ln:
        b = Dte(tmp_path / "ttyB")
        try:
            assert ln.wait_for(lambda line: line.b.present, LOADED)
            b.command("ATE0")
            b.command("AT+FCLASS=0")  # a data/voice line: no fax tones

            async def go() -> Outcome:
                sender = asyncio.ensure_future(s.send(tiff, timeout=300))
                await asyncio.to_thread(b.read_until, b"RING\r\n")
                b.send(b"ATA\r")
                return await sender

            out = asyncio.run(asyncio.wait_for(go(), 300))
            assert ln.calls[-1].answered
        finally:
            b.close()
    assert out.result is Result.NO_CARRIER and out.pages_confirmed == 0, out
    # Class 1 hears no DIS, so never says connected; the virtual Class 2.0 modem stores and
    # forwards, so it answers ATD (our "connected") before it knows there is no fax machine
    assert s.connected == (0 if classes[0] == "1.0" else 1), s.connected
    assert out.words() == "the call was answered, but not by a fax machine"


@pytest.mark.slow
@pytest.mark.xdist_group("modem-send")
@needs_efax
@pytest.mark.parametrize("classes", [("1.0",), ("2.0",)], ids=["class1", "class2.0"])
def test_the_line_dropping_after_page_one_is_dropped_with_one_page(tmp_path: Path, classes: tuple[str, ...]) -> None:
    out, s, _, elapsed, tiff = _send_to_efax(tmp_path, classes, 2, LineOptions(hangup_after_page=1, hangup_delay=3.0))
    assert out.result is Result.DROPPED and out.retryable, out
    assert out.pages_confirmed == 1 and out.pages_total == 2 and s.pages == [1], out
    assert out.words() == "the line was dropped during the fax (on page 2 of 2)"
    _assert_pages_equal(tmp_path, tiff, 1)
    print(f"{classes[0]}, line dropped after page 1: {elapsed:.1f} s: {out.detail}")


@pytest.mark.slow
@pytest.mark.xdist_group("modem-send")
@needs_efax
@pytest.mark.parametrize("classes", [("1.0",), ("2.0",)], ids=["class1", "class2.0"])
def test_cancel_during_the_call_hangs_up_and_frees_the_line(tmp_path: Path, classes: tuple[str, ...]) -> None:
    tiff = _document(tmp_path, 3)
    s = Sending(tmp_path, classes)
    with VirtualLine(s.path, str(tmp_path / "ttyB")) as ln:
        rx = _efax_receives(tmp_path, ln)
        try:
            async def go() -> Outcome:
                sender = asyncio.ensure_future(s.send(tiff))
                await until(lambda: ln.call is not None and ln.call.answered, 60, "answered")
                await asyncio.sleep(4.0)
                s.cancel.set()
                return await sender

            t0 = time.monotonic()
            out = asyncio.run(asyncio.wait_for(go(), 300))
            took = time.monotonic() - t0
            rx.wait(60)
        finally:
            if rx.poll() is None:
                rx.kill()
                rx.wait()
        call = ln.calls[-1]
    assert out.result is Result.CANCELLED and not out.retryable, out
    assert out.pages_confirmed < 3 and call.ended is not None, (out, call)
    print(f"{classes[0]}: cancelled after {took:.1f} s: {out.detail}; line: {call.ended_by}")


def test_a_line_in_a_call_or_claimed_by_a_sender_cannot_send(tmp_path: Path) -> None:
    """The line's rule, without a modem: only an idle line with no ring counted and no other job
    may dial; a second sender finds it taken the moment the first called send()."""
    from appliance.calls.modem_line import LineState
    from appliance.modem.driver import ModemSendJob

    spool = Spool(tmp_path)
    mgr = ModemManager(LineSettings(), ["/dev/ttyFAKE0"], spool.begin, spool.finish)
    line = mgr.lines["/dev/ttyFAKE0"]
    for state in (LineState.RINGING, LineState.RECEIVING, LineState.SENDING, LineState.DOWN):
        line.state = state  # as the line's loop sets it
        assert not line.can_send
        with pytest.raises(LineBusy, match=f"ttyFAKE0 {state.value}"):
            mgr.acquire("modem:ttyFAKE0")
    line.state = LineState.IDLE
    assert mgr.acquire("modem:ttyFAKE0") is line and mgr.acquire("/dev/ttyFAKE0") is line

    async def go() -> None:
        job = ModemSendJob(dial="5551000", tiff_path=tmp_path / "doc.tif", ident="1")
        first = asyncio.ensure_future(line.send(job))
        await asyncio.sleep(0)  # send() claims the line before its first await
        assert not line.can_send
        with pytest.raises(LineBusy, match="another fax is going out"):
            await line.send(ModemSendJob(dial="5551001", tiff_path=tmp_path / "doc.tif", ident="1"))
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert job.cancel is not None and job.cancel.is_set()  # the driver would hang up
        assert line.can_send

    asyncio.run(go())


@pytest.mark.slow
@pytest.mark.xdist_group("modem-send")
@provided(os.path.exists("/usr/sbin/faxgetty"), "needs HylaFAX's faxgetty (make test installs hylafax-server)")
@pytest.mark.parametrize("classes", [("1.0", "1"), ("2.0",)], ids=["class1", "class2.0"])
def test_our_line_sends_two_pages_to_hylafax(tmp_path: Path, classes: tuple[str, ...]) -> None:
    """HylaFAX's faxgetty answers on the far port and stores the fax; its pages are ours, pixel for
    pixel (a second third-party receiver beside efax, with its own T.30)."""
    from PIL import Image, ImageChops

    from tests.modem.hylafax import HylafaxReceiver

    tiff = _document(tmp_path, 2)
    s = Sending(tmp_path, classes)
    with VirtualLine(s.path, str(tmp_path / "ttyB")):
        with HylafaxReceiver(str(tmp_path / "ttyB")) as rx:
            out = asyncio.run(asyncio.wait_for(s.send(tiff), 600))
            faxes = rx.received()
            log = rx.log()[-4000:]
            assert out.result is Result.SENT, (out, log)
            assert len(faxes) == 1, (faxes, log)
            got_pages = []
            with Image.open(faxes[0]) as im:
                for n in range(getattr(im, "n_frames", 1)):
                    im.seek(n)
                    got_pages.append(im.convert("L"))
    assert out.pages_confirmed == 2 and s.pages == [1, 2], out
    assert out.way == f"modem ttyA Class {classes[0]}", out
    with Image.open(tiff) as im:
        sent_pages = []
        for n in range(im.n_frames):
            im.seek(n)
            sent_pages.append(im.convert("L"))
    assert len(got_pages) == 2, len(got_pages)
    for n, (got, sent) in enumerate(zip(got_pages, sent_pages), 1):
        assert got.width == sent.width, (n, got.size, sent.size)
        h = min(got.height, sent.height)
        assert h >= sent.height - 2, (n, got.size, sent.size)
        box = ImageChops.difference(got.crop((0, 0, got.width, h)), sent.crop((0, 0, sent.width, h))).getbbox()
        assert box is None, f"page {n}: HylaFAX stored a page that differs from ours at {box}"
