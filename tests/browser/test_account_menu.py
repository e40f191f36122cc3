"""The account menu in the top bar: the user's name, "Change password", "Certificate", "Log out";
reached with the keyboard alone, and with JavaScript switched off."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PASSWORD, Appliance
from tests.browser.helpers import account_menu, log_out, login, set_password


def test_account_pages_are_reached_from_the_menu_by_keyboard(configured_box: Appliance, page: Page, shot) -> None:
    set_password(configured_box)
    login(page, configured_box)
    menu = account_menu(page)
    expect(menu).to_have_text("admin")
    change = page.get_by_role("link", name="Change password")
    expect(change).to_be_hidden()  # closed until asked for
    menu.focus()
    page.keyboard.press("Enter")
    expect(change).to_be_visible()
    shot(page, "open")
    page.keyboard.press("Tab")
    expect(change).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r".*/account/password$"))
    expect(page.get_by_role("heading", name="Change the administrator password")).to_be_visible()

    menu.focus()
    page.keyboard.press(" ")  # Space opens it too
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Certificate")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r".*/account/certificate$"))
    expect(page.get_by_role("heading", name="HTTPS certificate")).to_be_visible()

    log_out(page)
    expect(page).to_have_url(re.compile(r".*/login$"))
    expect(account_menu(page)).to_have_count(0)


def test_the_menu_works_without_javascript(configured_box: Appliance, browser: Browser) -> None:
    set_password(configured_box)
    ctx = browser.new_context(ignore_https_errors=True, java_script_enabled=False)
    try:
        page = ctx.new_page()
        page.goto(configured_box.base_url + "/login")
        page.get_by_label("Administrator password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        account_menu(page).click()
        page.get_by_role("link", name="Certificate").click()
        expect(page.get_by_role("heading", name="HTTPS certificate")).to_be_visible()
        account_menu(page).click()
        page.get_by_role("link", name="Change password").click()
        expect(page.get_by_role("heading", name="Change the administrator password")).to_be_visible()
    finally:
        ctx.close()
