"""The web page's send flow against the real daemon, in chromium: a PDF and a cover note are
previewed (rendered by the daemon's child process), sent over SIP to a second appliance that
receives and mails the fax, and the page follows the job to "Sent" with the receiver's CSI.

The receiver's pages equal the queued pages pixel for pixel below the header line.
"""

from __future__ import annotations

import io
import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw
from playwright.sync_api import Page, expect

from appliance.fax.pages import FINE, read_pages
from appliance.outbound.header import HEADER_MM
from tests.browser.conftest import Appliance
from tests.browser.helpers import logged_in_box
from tests.budgets import LOADED
from tests.e2e.conftest import ApplianceProcess, SmtpServer, smtp, tiff_attachment  # noqa: F401 - smtp is a fixture

pytestmark = pytest.mark.slow


@pytest.fixture
def sender_and_receiver(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer  # noqa: F811 - the fixture
) -> Iterator[tuple[Appliance, ApplianceProcess]]:
    rx = tmp_path_factory.mktemp("rx")
    receiver = ApplianceProcess(rx, smtp.port)
    receiver.start()
    sender = Appliance(
        tmp_path_factory.mktemp("tx"),
        configured=True,
        extra=f"""
[outbound]
enabled = true
ident = "+1 555 2000"
country_code = "1"
area_code = "555"
national_prefix = "1"
international_prefix = "011"

[[outbound.routes]]
name = "pbx"
match = "^\\\\+1555"
via = "sip:{{number}}@127.0.0.1:{receiver.sip_port}"
number_format = "local"
t38 = "off"
""",
    )
    sender.start()
    try:
        yield sender, receiver
    finally:
        sender.stop()
        receiver.stop()


def letter_pdf(path: Path) -> Path:
    """A one-page letter as an office scanner makes it: an image PDF at 200 dpi."""
    im = Image.new("L", (1700, 2200), 255)
    draw = ImageDraw.Draw(im)
    draw.rectangle((150, 300, 900, 700), fill=0)
    draw.rectangle((150, 1000, 1500, 1040), fill=0)
    im.save(path, "PDF", resolution=200.0)
    return path


def test_a_pdf_sent_from_the_web_page_arrives_and_the_page_shows_it_sent(
    sender_and_receiver: tuple[Appliance, ApplianceProcess], smtp: SmtpServer,  # noqa: F811 - the fixture
    page: Page, shot: Callable[[Page, str], Path], tmp_path: Path,
) -> None:
    sender, receiver = sender_and_receiver
    pdf = letter_pdf(tmp_path / "letter.pdf")
    logged_in_box(sender, page)
    page.get_by_role("link", name="Send a fax").click()
    page.get_by_label("Fax number").fill("555-1000")
    page.get_by_label("Files").set_input_files([str(pdf)])
    page.get_by_label("Note").fill("One page follows.")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-summary")).to_contain_text("2 pages to +1 555 555 1000 via pbx",
                                                             timeout=LOADED * 1000)
    expect(page.locator("#preview ul.pages img")).to_have_count(2)
    shot(page, "daemon-preview")
    page.locator("#preview").get_by_role("button", name="Send these 2 pages").click()
    page.wait_for_url("**/outbound/1")
    expect(page.locator("#job-state")).to_have_text("Sent", timeout=300_000)
    expect(page.locator("#job-confirmed")).to_have_text("2")
    expect(page.locator("#job-csi")).to_have_text("+1 555 1000")  # the receiving appliance's CSI
    expect(page.locator("#trace pre")).to_contain_text("MCF")
    shot(page, "daemon-sent")

    mail = smtp.wait_for(1, LOADED * 4)[0]
    got = read_pages(io.BytesIO(tiff_attachment(mail)))
    with closing(sqlite3.connect(sender.workdir / "spool" / "spool.db")) as c:
        (uid,) = c.execute("SELECT uid FROM out_jobs WHERE id = 1").fetchone()
    queued = read_pages(sender.workdir / "spool" / "outbound" / f"{uid}.tif")
    assert len(got) == len(queued) == 2
    rows = math.ceil(HEADER_MM / 25.4 * FINE[1])
    for n, (g, q) in enumerate(zip(got, queued), 1):
        box = ImageChops.difference(g.convert("L"), q.convert("L")).getbbox()
        assert box is not None and box[3] <= rows, f"page {n}: differs at {box}"
    # the letter's block is on page 2 (after the cover), black where the PDF had it
    letter = got[1].convert("L")
    assert letter.getpixel((letter.width // 2 - 200, 500)) == 0
