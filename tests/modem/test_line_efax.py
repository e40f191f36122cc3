"""End to end on the virtual line: efax dials from port A, the daemon's modem line on port B
counts the rings, reads caller ID, answers with the real Class 1 driver, and the fax is spooled,
routed by the called number and delivered as mail, pixels intact below efax's header."""
from __future__ import annotations

import asyncio
import email
import email.policy
import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from appliance.daemon import Appliance
from appliance.modem.virtual import VirtualLine

from .lines import until
from .test_daemon_modem import appliance_side_effects, config  # noqa: F401 (fixture)
from .test_virtual_line import BODY_FROM, EFAX_HEADER_ROWS, _efax_pages, _rows

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("modem-line"),
              pytest.mark.skipif(shutil.which("efax") is None or shutil.which("tiffcp") is None,
                                 reason="needs Debian's efax and libtiff-tools")]


def test_efax_to_the_daemon_over_the_virtual_line(tmp_path: Path, appliance_side_effects: None) -> None:  # noqa: F811
    pages = _efax_pages(tmp_path, 3)
    links = (str(tmp_path / "ttyA"), str(tmp_path / "ttyB"))

    async def main() -> tuple[object, list[Path], str]:
        app = Appliance(config(tmp_path, [links[1]]))
        await app.start()
        try:
            assert app.modems is not None
            line = app.modems.lines[links[1]]
            await until(lambda: line.state == "idle", 10, "idle")
            with open(tmp_path / "efax.log", "w") as log:
                efax = await asyncio.create_subprocess_exec(
                    "efax", "-d", links[0], "-o1", "-t", "5551000", *map(str, pages), stdout=log, stderr=log)
                rc = await asyncio.wait_for(efax.wait(), 240)
            await until(lambda: app.stats["faxes"] == 1, 20, "fax recorded")
            await until(lambda: any(j.state == "delivered" for j in app.spool.jobs_for(1)), 20, "delivered")
            fax = app.spool.get_fax(1)
        finally:
            await app.stop()
        assert rc == 0, (tmp_path / "efax.log").read_text()[-2000:]
        return fax, list((tmp_path / "Maildir" / "new").iterdir()), line.state

    with VirtualLine(*links):
        fax, mails, state = asyncio.run(asyncio.wait_for(main(), 330))
    assert fax.line == "modem:ttyB" and fax.complete and fax.pages == 3
    assert (fax.caller_number, fax.caller_name, fax.called_number) == ("5550100", "Virtual A", "5551000")
    assert fax.extra["rings"] == 2 and fax.extra["modem_class"] == "1"
    (mail,) = mails
    msg = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert "sales@example.test" in msg["To"]  # routed by the NDID the modem reported
    (tif,) = [p for p in msg.iter_attachments() if p.get_content_type() == "image/tiff"]
    assert msg["X-FaxNumberOfPages"] == "3"
    with Image.open(io.BytesIO(tif.get_content())) as im:
        assert im.n_frames == 3
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


async def _class1_send(path: str, tiff: Path, ecm: bool) -> tuple[bool, dict]:
    from appliance.modem.class1 import Class1Sender
    from appliance.modem.serial_port import ModemPort

    port = await ModemPort.open(path, flow="none")
    try:
        for cmd in ("ATZ", "ATE0", "AT+VCID=1", "AT+FCLASS=1"):
            await port.command(cmd)
        return await Class1Sender("5551000", tiff, ident="+1 555 0100", ecm=ecm, max_duration=300).send(port)
    finally:
        port.close()


def _daemon_receives(tmp_path: Path, tiff: Path, ecm: bool, options=None):  # type: ignore[no-untyped-def]
    """Our Class 1 sender on port A, the daemon's line on port B; (fax record, mails, sender info)."""
    from appliance.modem.virtual import LineOptions

    links = (str(tmp_path / "ttyA"), str(tmp_path / "ttyB"))

    async def main():  # type: ignore[no-untyped-def]
        app = Appliance(config(tmp_path, [links[1]]))
        await app.start()
        try:
            line = app.modems.lines[links[1]]
            await until(lambda: line.state == "idle", 10, "idle")
            sent = await _class1_send(links[0], tiff, ecm)
            await until(lambda: app.stats["faxes"] == 1, 60, "fax recorded")
            await until(lambda: any(j.state == "delivered" for j in app.spool.jobs_for(1)), 20, "delivered")
            return app.spool.get_fax(1), list((tmp_path / "Maildir" / "new").iterdir()), sent
        finally:
            await app.stop()

    with VirtualLine(*links, options=options or LineOptions()):
        return asyncio.run(asyncio.wait_for(main(), 300))


def _mail(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def test_caller_hanging_up_after_page_two_is_delivered_incomplete_with_two_pages(
        tmp_path: Path, appliance_side_effects: None) -> None:  # noqa: F811
    from appliance.fax.pages import STANDARD, read_pages, write_fax_tiff
    from appliance.fax.testpages import demo_pages
    from appliance.modem.virtual import LineOptions
    from PIL import ImageChops

    pages = demo_pages(3, STANDARD, seed=22)
    write_fax_tiff(pages, tmp_path / "send.tif", STANDARD)
    fax, mails, (sent_ok, _) = _daemon_receives(tmp_path, tmp_path / "send.tif", ecm=False,
                                                options=LineOptions(hangup_after_page=2, hangup_linger=1.0))
    assert not sent_ok
    assert not fax.complete and fax.pages == 2
    (mail,) = mails
    msg = _mail(mail)
    assert "incomplete" in msg["Subject"].lower(), msg["Subject"]
    (tif,) = [p for p in msg.iter_attachments() if p.get_content_type() == "image/tiff"]
    got = read_pages(io.BytesIO(tif.get_content()))
    assert len(got) == 2
    for n, (g, s) in enumerate(zip(got, pages[:2]), 1):
        assert ImageChops.difference(g.convert("L"), s.convert("L")).getbbox() is None, n
