"""First start in a real browser: an empty box leads to /setup, the password, logging out and in."""

from __future__ import annotations

import re
import stat

from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Appliance


def test_empty_box_sets_password_then_logs_out_and_in(appliance: Appliance, page: Page, shot) -> None:
    base = appliance.base_url
    # every page of an empty box leads to the password page; the API answers 401, not a page
    for path in ("/", "/faxes", "/login"):
        page.goto(base + path)
        expect(page).to_have_url(base + "/setup")
    api = page.request.get(base + "/api/faxes")
    assert api.status == 401 and "password" in api.json()["error"]
    expect(page.get_by_role("heading", name="Welcome to Faxbridge")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    shot(page, "setup")

    # two different passwords: refused, said in words, nothing stored
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same again").fill(PASSWORD + "x")
    page.get_by_role("button", name="Set the password and continue").click()
    expect(page.get_by_role("alert")).to_have_text("The two passwords differ.")
    assert not (appliance.workdir / "web" / "admin.json").exists()

    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same again").fill(PASSWORD)
    page.get_by_role("button", name="Set the password and continue").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page).not_to_have_url(re.compile(r".*/(setup|login)$"))
    shot(page, "after-password")
    admin = appliance.workdir / "web" / "admin.json"
    assert stat.S_IMODE(admin.stat().st_mode) == 0o600
    assert PASSWORD not in admin.read_text() and "$argon2id$" in admin.read_text()

    # the password page is gone for good once a password exists
    page.goto(base + "/setup")
    expect(page).not_to_have_url(base + "/setup")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r".*/login$"))
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    page.goto(base + "/faxes")
    expect(page).to_have_url(re.compile(r".*/login\?next=.*faxes"))
    assert page.request.get(base + "/api/faxes").status == 401

    page.get_by_label("Administrator password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong password.")
    shot(page, "wrong-password")

    page.get_by_label("Administrator password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(base + "/faxes")  # back where the login interrupted
    expect(page.get_by_role("heading", name="Received faxes")).to_be_visible()
    assert page.request.get(base + "/api/faxes").json() == {"total": 0, "faxes": []}
    assert not page.problems.csp_violations(), page.problems.console_errors  # type: ignore[attr-defined]
    assert not page.problems.page_errors  # type: ignore[attr-defined]
    shot(page, "logged-in")
