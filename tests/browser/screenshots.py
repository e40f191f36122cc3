"""The README's screenshots of the main pages, taken from a real appliance in Debian's chromium.

    .venv/bin/python -m tests.browser.screenshots [docs/screenshots]   (or: make screenshots)

A configured box (the same `faxbridge run` the browser tests start) gets a few faxes recorded
through the real Spool with demo pages as their images, plus one real fax call over SIP that the
dashboard shows live; then each page is captured at 1280x800 (the fax page whole, one at phone
size) and the PNGs
are reduced to a small palette so they stay small in the repository.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from appliance.control import ControlClient
from appliance.fax.pages import FINE, STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.spool.store import Spool
from tests.browser.conftest import CHROMIUM, Appliance
from tests.browser.helpers import login, set_password

#: (minutes ago, facts, pages, resolution, recipients): a morning's faxes on a small office's box
FAXES = [
    (185, dict(caller_number="+15550142", caller_name="Northwind Traders", remote_ident="+1 555 0142",
               called_number="5551000"), 2, FINE, ["sales@example.com"]),
    (140, dict(caller_number="+15550178", caller_name="", remote_ident="CONTOSO LEGAL",
               called_number="5551003"), 4, STANDARD, ["legal@example.com"]),
    (96, dict(caller_number="+15550107", caller_name="Fabrikam Medical", remote_ident="+1 555 0107",
              called_number="5551001"), 1, FINE, ["support@example.com", "ops@example.com"]),
    (52, dict(caller_number="+15550193", caller_name="Tailspin Toys", remote_ident="TAILSPIN",
              called_number="5551000"), 3, STANDARD, ["sales@example.com"]),
    (21, dict(caller_number="+15550166", caller_name="Adatum Insurance", remote_ident="+1 555 0166",
              called_number="5551002"), 2, FINE, ["billing@example.com"]),
]


def populate(app: Appliance) -> None:
    """Record the faxes as the daemon does (begin, image, finish, jobs); the daemon delivers them."""
    spool = Spool(app.workdir / "spool")
    try:
        now = time.time()
        for n, (ago, facts, pages, res, rcpts) in enumerate(FAXES, start=1):
            t = now - ago * 60
            fax = spool.begin_fax(t, line="sip:gw1", bit_rate=14400 if n % 2 else 9600, ecm=True,
                                  resolution=f"{res[0]}x{res[1]}", pages=pages, duration=18.0 + 21 * pages,
                                  result_code=0, result_text="OK", **facts)
            write_fax_tiff(demo_pages(pages, res, seed=n), spool.incoming_path(fax), res)
            spool.finish_fax(fax.id, t + 20 + 21 * pages, complete=True)
            spool.add_jobs(fax.id, rcpts, t + 21 + 21 * pages)
        # a call that brought no page: the caller hung up during training
        t = now - 70 * 60
        fax = spool.begin_fax(t, line="sip:gw1", caller_number="+15550120", called_number="5551000",
                              result_code=48, result_text="Far end hung up before sending a page")
        spool.finish_fax(fax.id, t + 12, complete=False)
    finally:
        spool.close()
    ControlClient(app.workdir / "fb.sock").request({"cmd": "wake"})


def save(page: Page, path: Path, *, full_page: bool = False) -> None:
    """The visible viewport (what a visitor first sees), or the whole page, reduced to a 64-colour
    palette."""
    page.screenshot(path=str(path), full_page=full_page)
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    print(f"{path} {path.stat().st_size // 1024} KiB")


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    called = "\n".join(f'"{n}" = "{m}@example.com"' for n, m in
                        [("5551000", "sales"), ("5551001", "support"), ("5551002", "billing"), ("5551003", "legal")])
    app = Appliance(Path(tempfile.mkdtemp(prefix="fbshots-")), configured=True,
                    extra=f'timezone = "America/New_York"\n[routing.called]\n{called}\n')  # under [system]
    app.config.write_text(app.config.read_text().replace('default = "faxes@example.test"',
                                                          'default = "faxes@example.com"'))
    app.start()
    try:
        set_password(app)
        populate(app)
        app.wait_mails(len(FAXES) + 1, timeout=60)  # delivered first: the call then has the CPU
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox"] if os.geteuid() == 0 else [])
            ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
            ctx.set_default_timeout(15_000)
            page = ctx.new_page()
            login(page, app)

            # the dashboard while a real fax is coming in (its page counter moves live)
            sent: dict[str, str] = {}
            letter = app.workdir / "letter.tif"
            write_fax_tiff(demo_pages(1, STANDARD, seed=7), letter, STANDARD)
            call = threading.Thread(target=lambda: sent.update(out=app.send_test_fax(
                "--caller", "+15550131", "--caller-name", "Litware Inc.", "--ident", "+1 555 0131", tiff=letter)))
            page.goto(app.base_url + "/")
            call.start()
            deadline = time.monotonic() + 25
            while "page 1" not in page.locator("#calls-body").inner_text() and time.monotonic() < deadline:
                time.sleep(0.5)  # until the live row shows the page coming in
            save(page, out / "dashboard.png")
            call.join(120)
            assert "OK" in sent.get("out", ""), sent

            page.goto(app.base_url + "/faxes")
            expect(page.locator("table.faxes tbody tr")).to_have_count(len(FAXES) + 2)
            page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.complete)")
            save(page, out / "faxes.png")

            # the fax that just came in over SIP, whole: the call in words, delivery, pages, T.30, media
            page.locator("table.faxes tbody tr").first.get_by_role("link").nth(1).click()
            expect(page.locator("#call")).to_contain_text("Litware Inc.")
            page.locator("ul.pages img").first.scroll_into_view_if_needed()  # the previews load lazily
            page.wait_for_function("() => [...document.querySelectorAll('ul.pages img')].every(i => i.complete)")
            save(page, out / "fax.png", full_page=True)

            page.goto(app.base_url + "/settings/routing")
            save(page, out / "settings.png")

            page.goto(app.base_url + "/setup/delivery")
            page.locator("#kind-o365-oauth summary").click()
            save(page, out / "wizard.png")

            phone = browser.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844},
                                        device_scale_factor=1, is_mobile=True, has_touch=True)
            mobile = phone.new_page()
            login(mobile, app, path="/faxes")
            mobile.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.complete)")
            save(mobile, out / "faxes-phone.png")
            browser.close()
    finally:
        app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")))
