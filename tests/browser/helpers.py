"""Steps the browser tests share: the password, logging in through the real form."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from appliance.web.auth import AdminStore
from tests.browser.conftest import PASSWORD, Appliance


def set_password(app: Appliance, password: str = PASSWORD) -> None:
    """The administrator password as the first-start page stores it (argon2id in admin.json)."""
    AdminStore(app.workdir / "web").set_password(password)


def login(page: Page, app: Appliance, password: str = PASSWORD, *, path: str = "/") -> None:
    """Open `path`, get sent to the login page, log in through its form."""
    page.goto(app.base_url + path)
    expect(page).to_have_url(re.compile(r".*/login\b.*"))
    page.get_by_label("Administrator password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(account_menu(page)).to_be_visible()


def account_menu(page: Page) -> Locator:
    """The account menu's handle in the top bar (the user's name); its items show when it is open."""
    return page.locator("header details.account > summary")


def log_out(page: Page) -> None:
    """Through the account menu, as the owner does."""
    account_menu(page).click()
    page.get_by_role("button", name="Log out").click()


def logged_in_box(app: Appliance, page: Page) -> None:
    """A box with its password set, the browser logged in."""
    set_password(app)
    login(page, app)
