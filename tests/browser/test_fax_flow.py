"""A real fax through the appliance's own SIP listener, seen in the browser; then resent from its page.

`faxbridge send-test-fax` (spandsp as the calling fax machine) calls the running appliance over
SIP/RTP on loopback; the daemon receives and delivers it into the Maildir, and the web process
shows it with its page previews rendered from the received TIFF.
"""

from __future__ import annotations

import threading

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Appliance
from tests.browser.helpers import logged_in_box

pytestmark = pytest.mark.slow  # one real-time fax call (about 20 s)


def assert_image_loaded(page: Page, img: Locator) -> None:
    """The <img> really decoded a picture (not a broken icon): naturalWidth > 0."""
    img.scroll_into_view_if_needed()  # the previews load lazily
    handle = img.element_handle()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle)


def test_test_fax_appears_with_preview_and_resends(configured_box: Appliance, page: Page, shot) -> None:
    box = configured_box
    logged_in_box(box, page)
    sent: dict[str, object] = {}
    call = threading.Thread(target=lambda: sent.update(out=box.send_test_fax(
        "--caller", "5550123", "--caller-name", "ACME <b>Sales</b>", "--ident", "+1 555 0123")))
    call.start()
    call.join(120)
    assert "OK" in str(sent.get("out")), sent
    mail = box.wait_mails(1)[0]
    assert mail["To"] == "faxes@example.test"

    page.goto(box.base_url + "/faxes")
    row = page.locator("table.faxes tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("5550123")
    expect(row).to_contain_text("ACME <b>Sales</b>")  # the caller's name, as text
    expect(row).to_contain_text("+1 555 0123")
    expect(row.locator(".badge")).to_have_text("Delivered")
    assert_image_loaded(page, row.locator("img.thumb"))
    shot(page, "list")

    row.get_by_role("link").nth(1).click()
    expect(page.get_by_role("heading", name="Fax 1")).to_be_visible()
    previews = page.locator("ul.pages img")
    expect(previews).to_have_count(1)
    assert_image_loaded(page, previews.first)
    expect(page.locator("#delivery")).to_contain_text("faxes@example.test")
    shot(page, "detail")

    # resend to another address from the fax page: a new message lands in the Maildir
    page.get_by_placeholder("someone@example.com").fill("again@example.test")
    page.get_by_role("button", name="Send to this address").click()
    expect(page.locator("p.notice.ok")).to_contain_text("Queued again")
    mails = box.wait_mails(2)  # Maildir keeps no envelope: the new job's Message-ID tells them apart
    page.reload()
    job = page.locator("#delivery article.job").filter(has_text="again@example.test")
    expect(job.locator("header .badge")).to_have_text("Delivered")
    message_id = job.locator("dt:text-is('Message-ID') + dd").inner_text().strip()
    assert message_id in [m["Message-ID"] for m in mails] and message_id != mail["Message-ID"]
    resent = next(m for m in mails if m["Message-ID"] == message_id)
    assert any(p.get_content_type() == "image/tiff" for p in resent.iter_attachments())
    shot(page, "resent")
    assert not page.problems.dialogs and not page.problems.page_errors  # type: ignore[attr-defined]
