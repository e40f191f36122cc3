"""The system page's Update card in a real browser: update.js uploads the chosen bundle as the
raw body, then follows /system/update/status as root's installer (here: the test, writing
status.json the way appliance/update/request.py does) moves through its phases."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect

from appliance.update import request as handoff
from appliance.update.status import Status
from tests.browser.conftest import Appliance
from tests.browser.helpers import login, set_password


def installer_says(app: Appliance, **kw: object) -> None:
    """What faxbridge-update.service does: take the request, write status.json."""
    fd = handoff.open_update_dir(app.workdir)
    try:
        if os.path.lexists(app.workdir / "update" / "request"):
            handoff.take_request(fd)
        handoff.write_status(fd, Status(**kw))  # type: ignore[arg-type]
    finally:
        os.close(fd)


def test_upload_progress_and_result(configured_box: Appliance, page: Page, tmp_path: Path, shot) -> None:
    set_password(configured_box)
    login(page, configured_box, path="/system")
    bundle = tmp_path / "faxbridge-2.0.0-arm64.raucb"
    data = b"SIGNED 2.0.0\n" + os.urandom(3 * 1024 * 1024)
    bundle.write_bytes(data)
    expect(page.locator("#update-result")).to_have_text("No update has been installed on this box yet.")
    page.get_by_label("Update file (.raucb)").set_input_files(str(bundle))
    page.get_by_role("button", name="Install and restart").click()
    expect(page.locator("#update-phase")).to_have_text("Waiting for the installer")
    expect(page.locator("#update-form")).to_be_hidden()
    assert (configured_box.workdir / "update" / "bundle.raucb").read_bytes() == data
    installer_says(configured_box, phase="installing", percent=40, message="Copying image to rootfs.1",
                   version="2.0.0")
    expect(page.locator("#update-phase")).to_have_text("Installing")
    expect(page.locator("#update-message")).to_have_text("Copying image to rootfs.1")
    expect(page.locator("#update-bar")).to_have_attribute("value", "40")
    shot(page, "installing")
    installer_says(configured_box, phase="failed", version="2.0.0",
                   error="the update file's signature is not valid for this box")
    expect(page.locator("#update-result")).to_have_text(
        "The update could not be installed: the update file's signature is not valid for this box. Nothing was changed.")
    expect(page.locator("#update-progress")).to_be_hidden()
    expect(page.locator("#update-form")).to_be_visible()
