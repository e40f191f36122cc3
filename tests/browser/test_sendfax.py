"""Sending a fax from the web page in chromium: form, preview of every page, send, live progress,
the sent-fax list with its thumbnail, cancel, and the errors a user sees.

The web process runs as on the box (`python -m appliance.web`, cheroot, HTTPS, the real login).
The daemon side of the outbound control commands is tests/browser/sendfax_double.py on the real
control socket (the daemon's own commands arrive with the lead's part; it then replaces the
double): it renders the uploaded PNGs into real preview PNGs and a real fax TIFF, and moves the
job through its states on the clock, so the page's polling is watched for real.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Appliance, _answers
from tests.browser.helpers import logged_in_box
from tests.browser.sendfax_double import HOSTILE_CSI, OutboundDouble
from tests.budgets import LOADED

#: elements a CSI or file name would create if it were taken as markup (our own scripts have a src)
INJECTED = "img[src='x'], svg, iframe, #bold, script:not([src])"


class WebOnly(Appliance):
    """The web process alone; the test's double answers on its control socket."""

    def start(self, timeout: float = LOADED) -> None:
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "appliance.web", "--config", str(self.config), "--state-dir",
                 str(self.workdir)],
                cwd=self.workdir, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"web process exited with {self.proc.returncode}:\n{self.log_text()}")
            for scheme in ("https", "http"):
                if _answers(f"{scheme}://127.0.0.1:{self.web_port}/healthz"):
                    self.base_url = f"{scheme}://127.0.0.1:{self.web_port}"
                    return
            time.sleep(0.1)
        raise AssertionError(f"web process did not answer /healthz in {timeout} s:\n{self.log_text()}")


@pytest.fixture
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebOnly, OutboundDouble]]:
    app = WebOnly(tmp_path_factory.mktemp("box"), configured=True,
                  extra='[outbound]\nenabled = true\ncountry_code = "1"\nmax_bytes = 2000000\n'
                        '[[outbound.routes]]\nname = "pbx"\nmatch = "^\\\\+"\nvia = "sip:{number}@127.0.0.1:5"\n')
    (app.workdir / "spool").mkdir()
    double = OutboundDouble(app.workdir / "spool", page_seconds=2.0)
    with double.serve(app.workdir / "fb.sock"):
        app.start()
        try:
            yield app, double
        finally:
            app.stop()


def page_png(path: Path, text: str, box: tuple[int, int, int, int]) -> Path:
    """A letter-shaped page a user might scan: a line of text and a black block where it differs."""
    im = Image.new("L", (850, 1100), 255)
    draw = ImageDraw.Draw(im)
    draw.text((60, 60), text, fill=0)
    draw.rectangle(box, fill=0)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return path


def assert_image_loaded(page: Page, img: Locator) -> None:
    img.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())


def assert_inert(page: Page) -> None:
    page.wait_for_load_state("load")
    expect(page.locator("main").locator(INJECTED)).to_have_count(0)
    assert page.problems.dialogs == [], page.problems.dialogs  # type: ignore[attr-defined]
    assert page.problems.page_errors == []  # type: ignore[attr-defined]


def test_send_flow_preview_send_live_progress_report(
    box: tuple[WebOnly, OutboundDouble], page: Page, shot: Callable[[Page, str], Path], tmp_path: Path
) -> None:
    app, double = box
    one = page_png(tmp_path / "order.png", "Order 4711", (100, 300, 400, 500))
    two = page_png(tmp_path / "terms.png", "Terms", (400, 600, 800, 1000))
    logged_in_box(app, page)

    page.get_by_role("link", name="Send a fax").click()
    expect(page.get_by_role("heading", name="Send a fax")).to_be_visible()
    page.get_by_label("Fax number").fill("(555) 123-4567")
    page.get_by_label("Files").set_input_files([str(one), str(two)])
    page.get_by_label("From").fill("Ann at Contoso")
    page.get_by_label("To", exact=True).fill("Bob <b id=bold>")
    page.get_by_label("Subject").fill("Order 4711")
    page.get_by_label("Note").fill("Two pages follow.\nPlease sign and return.")
    shot(page, "form")
    page.get_by_role("button", name="Preview").click()

    preview = page.locator("#preview")
    expect(preview).to_be_visible()
    expect(page.locator("#preview-summary")).to_contain_text("3 pages to +1 555 123 4567 via pbx")
    images = preview.locator("ul.pages img")
    expect(images).to_have_count(3)
    for n in range(3):
        assert_image_loaded(page, images.nth(n))
    # the previews are the pages as rendered: the cover, then each file's page with its own block
    shown = [images.nth(n).evaluate("i => i.naturalHeight") for n in range(3)]
    assert all(h > 700 for h in shown), shown
    expect(page.locator("#staged")).to_contain_text("order.png, terms.png")
    expect(page.get_by_label("To", exact=True)).to_have_value("Bob <b id=bold>")
    assert_inert(page)
    shot(page, "preview")
    assert double.requests[-1]["cover"] == {
        "from": "Ann at Contoso", "to": "Bob <b id=bold>", "subject": "Order 4711",
        "note": "Two pages follow.\nPlease sign and return.",
    }

    preview.get_by_role("button", name="Send these 3 pages").click()
    page.wait_for_url("**/outbound/1")
    submit = [r for r in double.requests if r["cmd"] == "outbound-submit"]
    assert len(submit) == 1 and submit[0]["number"] == "(555) 123-4567" and submit[0]["source"] == "web"
    # live: the page's script polls and shows the job sending, then the page reloads with the report
    state = page.locator("#job-state")
    expect(state).to_have_text("Sending")
    expect(page.locator("#job-confirmed")).to_have_text(re.compile(r"^[12]$"))  # a page or two of 3 so far
    expect(page.locator("#job-csi")).to_have_text(HOSTILE_CSI)
    shot(page, "sending")
    expect(state).to_have_text("Sent", timeout=LOADED * 1000)
    expect(page.locator("#job-words")).to_have_text("Sent: all 3 pages confirmed by the far end.")
    expect(page.locator("#job-confirmed")).to_have_text("3")
    expect(page.locator("#trace pre")).to_contain_text("sent page 3; received MCF")
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    expect(page.locator("#attempts")).to_contain_text("14400 bit/s")
    expect(page.locator("#cancel-form")).to_have_count(0)
    assert_image_loaded(page, page.locator("a.firstpage img"))
    assert_inert(page)
    shot(page, "sent")

    page.get_by_role("link", name="Sent faxes").first.click()
    row = page.locator("table.outbound tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("+1 555 123 4567")
    expect(row).to_contain_text("3 of 3")
    expect(row.get_by_text(HOSTILE_CSI, exact=True)).to_be_visible()
    assert_image_loaded(page, row.locator("img.thumb"))
    assert_inert(page)
    shot(page, "list")

    # a phone's width: the list's rows become cards, the job page's columns stack
    page.set_viewport_size({"width": 390, "height": 844})
    expect(row.get_by_text(HOSTILE_CSI, exact=True)).to_be_visible()
    shot(page, "list-narrow")
    row.get_by_role("link").last.click()
    expect(page.locator("#job-words")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    shot(page, "sent-narrow")
    page.goto(app.base_url + "/send")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    shot(page, "form-narrow")


def test_errors_are_shown_next_to_their_fields(
    box: tuple[WebOnly, OutboundDouble], page: Page, shot: Callable[[Page, str], Path], tmp_path: Path
) -> None:
    app, double = box
    one = page_png(tmp_path / "a.png", "A", (10, 10, 50, 50))
    logged_in_box(app, page)
    page.goto(app.base_url + "/send")
    page.get_by_label("Fax number").fill("fax me")
    page.get_by_label("Files").set_input_files([str(one)])
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#err-number")).to_have_text("A fax number has digits, spaces, +, -, (, ) and dots only.")
    shot(page, "bad-number")
    # the files are kept from the refused post: only the number needs correcting
    expect(page.locator("#staged")).to_contain_text("a.png")
    page.get_by_label("Fax number").fill("1 900 555 0000")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#daemon-error")).to_have_text(
        "The fax cannot be previewed: premium-rate numbers are not allowed on route pbx"
    )
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(2_100_000))
    page.get_by_label("Fax number").fill("555 123 4567")
    page.get_by_label("Files").set_input_files([str(big)])
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#err-files")).to_contain_text("larger than 2.0 MB together")
    shot(page, "too-big")
    assert not [r for r in double.requests if r["cmd"] == "outbound-submit"]


def test_cancel_a_queued_fax(
    box: tuple[WebOnly, OutboundDouble], page: Page, shot: Callable[[Page, str], Path], tmp_path: Path
) -> None:
    app, double = box
    double.hold = True
    one = page_png(tmp_path / "a.png", "A", (10, 10, 50, 50))
    logged_in_box(app, page)
    page.goto(app.base_url + "/send")
    page.get_by_label("Fax number").fill("555 123 4567")
    page.get_by_label("Files").set_input_files([str(one)])
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url("**/outbound/1")
    expect(page.locator("#job-state")).to_have_text("Queued")
    shot(page, "queued")
    page.get_by_role("button", name="Cancel this fax").click()
    expect(page.locator("p.flash")).to_have_text("Cancelled.")
    expect(page.locator("#job-state")).to_have_text("Cancelled")
    expect(page.locator("#cancel-form")).to_have_count(0)
    assert [r["cmd"] for r in double.requests].count("outbound-cancel") == 1
    shot(page, "cancelled")
