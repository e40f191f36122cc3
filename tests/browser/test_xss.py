"""Whatever a caller sends is shown as text in the browser: no markup, no script, no dialog.

The fax is written into the running appliance's spool the way the daemon records a call (the
real Spool class, a real G4 TIFF), with HTML and script in every field a caller controls: the
TSI, the caller's name and number, the called number and the result text.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from appliance.spool.store import Spool
from tests.browser.conftest import Appliance
from tests.browser.helpers import logged_in_box
from tests.web.webfax import STANDARD, T0, add_fax

FACTS = {
    "caller_name": "<img src=x onerror=alert('name')>",
    "remote_ident": "<script>alert('tsi')</script>",
    "caller_number": "\"><svg onload=alert('num')>",
    "called_number": "<b id=bold>5551000</b>",
    "result_text": "<iframe src=javascript:alert('result')></iframe>",
}

#: elements the payloads would create if they were taken as markup (our own scripts have a src)
INJECTED = "img[src='x'], svg, iframe, #bold, script:not([src])"
#: what the list shows of a fax (the detail page shows everything)
LISTED = ("caller_name", "remote_ident", "caller_number", "called_number")


def assert_inert(page: Page, shown: tuple[str, ...] = tuple(FACTS)) -> None:
    """The `shown` payloads are visible as their literal text, and none became an element or ran."""
    page.wait_for_load_state("load")  # an <img src=x> would have failed (and fired) by now
    text = page.locator("main").inner_text()
    for key in shown:
        assert FACTS[key] in text, f"{key} {FACTS[key]!r} is not shown as text on {page.url}"
    main = page.locator("main")
    for selector in INJECTED.split(", "):
        expect(main.locator(selector)).to_have_count(0)
    assert page.problems.dialogs == [], page.problems.dialogs  # type: ignore[attr-defined]
    assert page.problems.page_errors == []  # type: ignore[attr-defined]


def test_caller_html_is_shown_as_text(configured_box: Appliance, page: Page, shot) -> None:
    spool = Spool(configured_box.workdir / "spool")
    try:
        fax = add_fax(spool, T0, dpis=[STANDARD], line="sip:gw1", **FACTS)
    finally:
        spool.close()
    logged_in_box(configured_box, page)
    base = configured_box.base_url

    page.goto(base + "/faxes")
    assert_inert(page, LISTED)
    row = page.locator("table.faxes tbody tr")
    expect(row).to_have_count(1)
    expect(row.get_by_text(FACTS["remote_ident"], exact=True)).to_be_visible()
    shot(page, "list")

    page.goto(f"{base}/faxes/{fax.id}")
    assert_inert(page)
    shot(page, "detail")

    # a search for the payload reflects it into the search box as a value, not as markup
    page.goto(base + "/faxes")
    page.get_by_placeholder("Number, name, TSI or recipient").fill(FACTS["remote_ident"])
    page.get_by_role("button", name="Search").click()
    expect(page.locator("input[name=q]")).to_have_value(FACTS["remote_ident"])
    expect(page.locator("table.faxes tbody tr")).to_have_count(1)
    assert_inert(page, LISTED)

    page.goto(base + "/")  # the dashboard (or the list until it lands) shows today's faxes too
    page.wait_for_load_state("load")
    expect(page.locator("main").locator(INJECTED)).to_have_count(0)
    assert page.problems.dialogs == []  # type: ignore[attr-defined]
