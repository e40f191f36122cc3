"""A settings change applied without a restart, then a real fax through the appliance's own SIP
listener: live on the dashboard, in the list and on its page with previews; then resent.

`faxbridge send-test-fax` (spandsp as the calling fax machine) calls the running appliance over
SIP/RTP on loopback; the daemon receives it and delivers it into the Maildir, to the mailbox the
settings page named a moment before (the same daemon process, reloaded over its control socket).
"""

from __future__ import annotations

import threading

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Appliance
from tests.browser.helpers import logged_in_box
from tests.budgets import LOADED

pytestmark = pytest.mark.slow  # one real-time fax call (about 20 s)


def assert_image_loaded(page: Page, img: Locator) -> None:
    """The <img> really decoded a picture (not a broken icon): naturalWidth > 0."""
    img.scroll_into_view_if_needed()  # the previews load lazily
    handle = img.element_handle()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle)


CALLER_NAME = "<img src=x onerror=alert('live')>"


def test_settings_then_test_fax_live_listed_previewed_resent(configured_box: Appliance, page: Page, shot) -> None:
    box = configured_box
    assert box.proc is not None
    daemon_pid = box.proc.pid
    logged_in_box(box, page)

    # the default mailbox changed on the settings page: saved and applied by the running daemon
    page.goto(box.base_url + "/settings/routing")
    page.get_by_label("Default mailbox").fill("new-default@example.test")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("p.flash")).to_contain_text("Saved and applied")
    expect(page.get_by_label("Default mailbox")).to_have_value("new-default@example.test")
    shot(page, "settings")
    assert box.proc.poll() is None and box.proc.pid == daemon_pid

    # the call, watched live on the dashboard (server-sent events; the caller's name as text)
    page.goto(box.base_url + "/")
    expect(page.locator("#calls-none")).to_be_visible()
    sent: dict[str, object] = {}
    call = threading.Thread(target=lambda: sent.update(out=box.send_test_fax(
        "--caller", "5550123", "--caller-name", CALLER_NAME, "--ident", "+1 555 0123")))
    call.start()
    try:
        live = page.locator("#calls-body tr")
        expect(live).to_contain_text(CALLER_NAME)
        expect(live).to_contain_text("5550123")
        shot(page, "dashboard-call")
        expect(page.locator("main img[src='x']")).to_have_count(0)
    finally:
        call.join(4 * LOADED)
    assert "OK" in str(sent.get("out")), sent
    expect(page.locator("#calls-none")).to_be_visible()  # the call ended, live too
    mail = box.wait_mails(1)[0]
    assert mail["To"] == "new-default@example.test"  # the new setting, no restart in between
    assert box.proc.poll() is None and box.proc.pid == daemon_pid

    page.goto(box.base_url + "/faxes")
    row = page.locator("table.faxes tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("5550123")
    expect(row).to_contain_text(CALLER_NAME)  # the caller's name, as text
    expect(row).to_contain_text("+1 555 0123")
    expect(row.locator(".badge")).to_have_text("Delivered")
    assert_image_loaded(page, row.locator("img.thumb"))
    shot(page, "list")

    row.get_by_role("link").nth(1).click()
    expect(page.get_by_role("heading", name="Fax 1")).to_be_visible()
    previews = page.locator("ul.pages img")
    expect(previews).to_have_count(1)
    assert_image_loaded(page, previews.first)
    expect(page.locator("#delivery")).to_contain_text("new-default@example.test")
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
    assert resent["To"] == "again@example.test" and resent["Cc"] is None  # not the first recipient's
    assert any(p.get_content_type() == "image/tiff" for p in resent.iter_attachments())
    shot(page, "resent")
    assert not page.problems.dialogs and not page.problems.page_errors  # type: ignore[attr-defined]
