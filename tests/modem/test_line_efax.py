"""End to end on the virtual line: a far end dials from port A, the daemon's modem line on port B
counts the rings, reads caller ID, answers with the real class driver, and the fax is spooled,
routed by the called number and delivered as mail: efax's 3 pages intact below its header, through
Class 1 and through Class 2.0; a caller that hangs up after page 2, and a modem pulled out after
page 1, mailed as incomplete with the pages that came."""
from __future__ import annotations

import asyncio
import email
import email.policy
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from appliance.daemon import Appliance
from appliance.fax.pages import STANDARD, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.modem.class1 import Class1Sender
from appliance.modem.serial_port import ModemPort
from appliance.modem.virtual import LineOptions, VirtualLine
from tests.provided import provided

from .lines import fax_to_the_daemon, mailed_tiff, until
from .test_daemon_modem import appliance_side_effects, config  # noqa: F401 (fixture)
from .test_virtual_line import BODY_FROM, EFAX_HEADER_ROWS, _efax_pages, _rows

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("modem-line"),
              provided(shutil.which("efax") and shutil.which("tiffcp"),
                       "needs Debian's efax and libtiff-tools (make test installs them)")]


def _efax(tmp_path: Path, pages: list[Path], options: tuple[str, ...] = ("-o1",)):  # type: ignore[no-untyped-def]
    """The far end: efax dialling 5551000 from port A with ``pages``; returns its exit status."""
    async def efax(port_a: str) -> int:
        with open(tmp_path / "efax.log", "w") as log:
            proc = await asyncio.create_subprocess_exec(
                "efax", "-d", port_a, *options, "-t", "5551000", *map(str, pages), stdout=log, stderr=log)
            return await asyncio.wait_for(proc.wait(), 240)
    return efax


def _assert_efax_pages_mailed(msg, pages: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """The mailed TIFF has efax's pages: every sent row below efax's header, pixel for pixel."""
    with Image.open(io.BytesIO(mailed_tiff(msg))) as im:
        assert im.n_frames == len(pages)
        for n, page in enumerate(pages):
            im.seek(n)
            frame = im.convert("1")
            w, h = frame.size
            data, stride = frame.tobytes(), (w + 7) // 8
            got = [data[i * stride:(i + 1) * stride] for i in range(h)]
            sent = _rows(page)
            body = got[BODY_FROM + EFAX_HEADER_ROWS:len(sent) + EFAX_HEADER_ROWS]
            bad = [i for i, (x, y) in enumerate(zip(sent[BODY_FROM:], body)) if x != y]
            assert len(body) == len(sent) - BODY_FROM and not bad, (n + 1, len(got), bad[:5])


def test_efax_to_the_daemon_over_the_virtual_line(tmp_path: Path, appliance_side_effects: None) -> None:  # noqa: F811
    pages = _efax_pages(tmp_path, 3)
    rc, fax, msg, call = fax_to_the_daemon(tmp_path, _efax(tmp_path, pages))
    assert rc == 0, (tmp_path / "efax.log").read_text()[-2000:]
    assert fax.line == "modem:ttyB" and fax.complete and fax.pages == 3 and call.pages == 3
    assert (fax.caller_number, fax.caller_name, fax.called_number) == ("5550100", "Virtual A", "5551000")
    assert fax.extra["rings"] == 2 and fax.extra["modem_class"] == "1"
    assert "sales@example.test" in msg["To"]  # routed by the NDID the modem reported
    assert msg["X-FaxNumberOfPages"] == "3"
    _assert_efax_pages_mailed(msg, pages)


async def _class1_send(path: str, tiff: Path, ecm: bool) -> tuple[bool, dict]:
    port = await ModemPort.open(path, flow="none")
    try:
        for cmd in ("ATZ", "ATE0", "AT+VCID=1", "AT+FCLASS=1"):
            await port.command(cmd)
        return await Class1Sender("5551000", tiff, ident="+1 555 0100", ecm=ecm, max_duration=300).send(port)
    finally:
        port.close()


def test_caller_hanging_up_after_page_two_is_delivered_incomplete_with_two_pages(
        tmp_path: Path, appliance_side_effects: None) -> None:  # noqa: F811
    pages = demo_pages(3, STANDARD, seed=22)
    write_fax_tiff(pages, tmp_path / "send.tif", STANDARD)
    (sent_ok, _), fax, msg, call = fax_to_the_daemon(
        tmp_path, lambda dev: _class1_send(dev, tmp_path / "send.tif", ecm=False),
        options=LineOptions(hangup_after_page=2, hangup_linger=1.0))
    assert not sent_ok and call.pages == 2
    assert not fax.complete and fax.pages == 2
    assert "incomplete" in msg["Subject"].lower(), msg["Subject"]
    got = read_pages(io.BytesIO(mailed_tiff(msg)))
    assert len(got) == 2
    for n, (g, s) in enumerate(zip(got, pages[:2]), 1):
        assert ImageChops.difference(g.convert("L"), s.convert("L")).getbbox() is None, n


def test_efax_to_the_daemon_through_the_class_2_0_driver(tmp_path: Path, appliance_side_effects: None) -> None:  # noqa: F811
    """The Class 2.0 path: the line prefers 2.0, the virtual modem's Class 2.0 mode does T.30, and
    our driver turns its page data into the mailed TIFF."""
    pages = _efax_pages(tmp_path, 3)
    rc, fax, msg, call = fax_to_the_daemon(tmp_path, _efax(tmp_path, pages),
                                           modem={"class_preference": ["2.0", "1.0"]})
    assert rc == 0, (tmp_path / "efax.log").read_text()[-2000:]
    assert fax.extra["modem_class"] == "2.0"
    assert fax.complete and fax.pages == 3 and call.pages == 3, fax.result_text
    assert fax.called_number == "5551000" and "sales@example.test" in msg["To"]
    _assert_efax_pages_mailed(msg, pages)


def test_modem_pulled_out_after_page_one_keeps_that_page(tmp_path: Path, appliance_side_effects: None) -> None:  # noqa: F811
    """The USB modem vanishes mid-call (the pty goes: EIO, as a pulled USB device gives): the real
    Class 1 driver ends the call with the page it has, the fax is mailed as incomplete, and the line
    is down until the device comes back."""
    pages = demo_pages(3, STANDARD, seed=23)
    write_fax_tiff(pages, tmp_path / "send.tif", STANDARD)
    links = (str(tmp_path / "ttyA"), str(tmp_path / "ttyB"))
    vl = VirtualLine(*links).start_thread()

    async def main():  # type: ignore[no-untyped-def]
        app = Appliance(config(tmp_path, [links[1]]))
        await app.start()
        try:
            line = app.modems.lines[links[1]]
            await until(lambda: line.state == "idle", 15, "idle")
            sender = asyncio.create_task(_class1_send(links[0], tmp_path / "send.tif", ecm=False))
            await until(lambda: bool(vl.calls) and vl.calls[-1].pages >= 1, 120, "page 1 through")
            await asyncio.to_thread(vl.close)  # pulled out
            await until(lambda: app.stats["faxes"] == 1, 30, "fax recorded")
            await until(lambda: any(j.state == "delivered" for j in app.spool.jobs_for(1)), 20, "delivered")
            await asyncio.gather(sender, return_exceptions=True)
            return app.spool.get_fax(1), list((tmp_path / "Maildir" / "new").iterdir()), line.state
        finally:
            await app.stop()

    try:
        fax, mails, state = asyncio.run(asyncio.wait_for(main(), 240))
    finally:
        vl.close()
    assert state == "down"
    assert not fax.complete and fax.pages == 1, fax.result_text
    assert "gone" in fax.result_text or "gone" in str(fax.extra.get("end_reason", "")), fax.result_text
    (mail,) = mails
    msg = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert "incomplete" in msg["Subject"].lower()
    (got,) = read_pages(io.BytesIO(mailed_tiff(msg)))
    assert ImageChops.difference(got.convert("L"), pages[0].convert("L")).getbbox() is None


def test_efax_in_its_default_mode_sends_through_the_virtual_class_2_0_modem(
        tmp_path: Path, appliance_side_effects: None) -> None:  # noqa: F811
    """efax with no -o option picks Class 2.0 from AT+FCLASS=? and dials with it (issue 14 item
    6: it used to fail with "dial command failed"): the virtual modem on port A takes its pages
    and sends them with spandsp's T.30 to the daemon's Class 1 line on port B."""
    pages = _efax_pages(tmp_path, 2)
    rc, fax, msg, call = fax_to_the_daemon(tmp_path, _efax(tmp_path, pages, ()))
    log = (tmp_path / "efax.log").read_text()
    assert rc == 0, log[-2000:]
    assert "in class 2.0" in log and "dial command failed" not in log, log[:3000]
    assert fax.complete and fax.pages == 2 and call.pages == 2, fax.result_text
    _assert_efax_pages_mailed(msg, pages)
