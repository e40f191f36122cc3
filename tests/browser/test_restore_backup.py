"""A box comes back on a fresh card, in a real browser: the encrypted backup downloaded from one
running appliance's Backup page, then restored on another, empty one in the wizard's first step
(a wrong passphrase first: said, nothing written), straight to the end with what came back
listed, and the restart the restored settings wait for said on the page."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Appliance

PASSPHRASE = "blue ocean seventeen kites"


def _first_password(page: Page, app: Appliance) -> None:
    page.goto(app.base_url + "/setup")
    page.get_by_label("Setup code").fill(app.setup_code())
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same again").fill(PASSWORD)
    page.get_by_role("button", name="Set the password and continue").click()
    expect(page).to_have_url(app.base_url + "/setup/system")


def test_a_box_comes_back_on_a_fresh_card_from_its_backup(appliance_factory: Callable[..., Appliance],
                                                          page: Page, shot) -> None:  # type: ignore[no-untyped-def]
    old = appliance_factory(configured=True, extra='hostname = "frontdesk"\n')
    _first_password(page, old)
    page.goto(old.base_url + "/settings/backup")
    page.get_by_label("Passphrase", exact=True).fill(PASSPHRASE)
    page.get_by_label("Passphrase again").fill(PASSPHRASE)
    shot(page, "backup")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the encrypted backup").click()
    assert re.fullmatch(r"faxbridge-backup-frontdesk-\d{4}-\d\d-\d\d\.fxbk", download.value.suggested_filename)
    backup = download.value.path()

    new = appliance_factory()
    before = new.config.read_text()
    _first_password(page, new)
    page.locator("details.restore summary").click()
    page.get_by_label("Backup file (.fxbk)").set_input_files(backup)
    page.get_by_label("Its passphrase").fill("not the passphrase it was made with")
    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("the passphrase is wrong")
    expect(page.get_by_label("Its passphrase")).to_be_visible()  # the form stays open to try again
    shot(page, "wrong-passphrase")
    assert new.config.read_text() == before

    page.get_by_label("Backup file (.fxbk)").set_input_files(backup)
    page.get_by_label("Its passphrase").fill(PASSPHRASE)
    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page).to_have_url(new.base_url + "/setup/done")
    expect(page.locator("p.flash")).to_contain_text("Restored from the backup: the configuration (faxbridge.toml)")
    expect(page.locator("dl.facts")).to_contain_text("frontdesk")
    # the old box listened elsewhere: this one's web page and SIP listeners move at the restart
    expect(page.locator("#restart-needed")).to_contain_text("the web page's address")
    shot(page, "restored")
    assert tomllib.loads(new.config.read_text()) == tomllib.loads(old.config.read_text())
    page.get_by_role("button", name="Finish").click()
    expect(page).to_have_url(new.base_url + "/")
