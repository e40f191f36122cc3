"""A new owner's first hour, as one story in a real browser: an empty box leads to /setup, the
password, the wizard to a configured box (a peer added as step 2 advises, an SMTP test message
received by a real SMTP server, a half-written address refused, the box's own test fax passing),
logging out and in, the time zone on the dashboard and in the fax's mail, a setting changed with no
false restart prompt, the fax page read as text, its call diagnostics downloaded and the pcap in it
parsed, the certificate and the password from the account menu; `faxbridge run`'s output clean."""

from __future__ import annotations

import datetime
import io
import re
import stat
import tomllib
import zipfile
import zoneinfo
from collections.abc import Iterator

import dpkt

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Appliance
from tests.browser.helpers import account_menu, log_out
from tests.budgets import LOADED
from tests.conftest import free_port
from tests.e2e.conftest import SmtpServer

NEW_PASSWORD = "a longer one the owner chose 2026"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on loopback: where the wizard points the box."""
    server = SmtpServer(free_port("tcp"))
    server.start()
    yield server
    server.stop()


def wizard(page: Page, app: Appliance, smtp: SmtpServer, shot) -> None:
    """The four steps after the password, each saved and applied, to the finish."""
    expect(page.get_by_role("heading", name="Name and time zone")).to_be_visible()
    shot(page, "wizard-system")
    page.get_by_label("Host name").fill("faxbridge-test")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_role("button", name="Save and continue").click()

    expect(page).to_have_url(re.compile(r".*/setup/lines$"))
    expect(page.locator("p.flash")).to_contain_text("Saved and applied")
    expect(page.locator("#restart-needed")).to_have_count(0)  # nothing saved so far waits for a restart
    page.get_by_label("This fax machine's number (ident)").fill("+1 555 1000")
    # the step's advice: the gateway as a peer (which leaves this machine out of who may call)
    page.locator("[name='peers-0-name']").fill("gateway")
    page.locator("[name='peers-0-match']").fill("192.0.2.10")
    shot(page, "wizard-lines")
    page.get_by_role("button", name="Save and continue").click()

    expect(page).to_have_url(re.compile(r".*/setup/delivery$"))
    choice = page.locator("#kind-smtp")
    choice.locator("summary").click()
    # by name: the four forms repeat the fields' ids, so a label may point into another form
    choice.locator("[name='delivery.url']").fill(f"smtp://127.0.0.1:{smtp.port}")
    choice.locator("[name='delivery.from']").fill("fax@example.test")
    choice.get_by_label("Send the test message to").fill("owner@example.test")
    choice.get_by_role("button", name="Send a test message").click()
    outcome = page.locator("#kind-smtp #test-outcome")
    expect(outcome).to_have_class(re.compile(r"\bok\b"))
    test_message = smtp.wait_for(1, timeout=LOADED)[0]
    assert test_message["To"] == "owner@example.test" and test_message["From"] == "fax@example.test"
    shot(page, "wizard-delivery")
    page.locator("#kind-smtp").get_by_role("button", name="Save and continue").click()

    expect(page).to_have_url(re.compile(r".*/setup/mailbox$"))
    # a half-written address is refused in the page's words, beside its field, and nothing is saved
    page.get_by_label("Default mailbox").fill("sales@")
    page.get_by_role("button", name="Save and continue").click()
    expect(page).to_have_url(re.compile(r".*/setup/mailbox$"))
    error = page.locator(".field.has-error .field-error")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("not a mail address")
    expect(page.locator("#form-errors li")).to_have_count(0)  # no follow-on error about a domain made from it
    expect(page.locator("main")).not_to_contain_text("routing.default")  # the page's words, not the file's
    assert "sales@" not in app.config.read_text()
    shot(page, "wizard-mailbox-refused")
    page.get_by_label("Default mailbox").fill("owner@example.test")
    page.get_by_role("button", name="Save and continue").click()

    expect(page).to_have_url(re.compile(r".*/setup/done$"))
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("faxbridge-test")
    expect(facts).to_contain_text("smtp as fax@example.test")
    expect(facts).to_contain_text("owner@example.test")
    expect(facts).to_contain_text("gateway")
    shot(page, "wizard-done")
    # the test fax goes through all the same: the appliance's own call is always let in
    page.get_by_role("button", name="Send a test fax to the appliance").click()
    expect(page.locator("#test-fax[data-state='finished']")).to_be_visible(timeout=150_000)
    expect(page.locator("#test-fax")).to_contain_text("It works.")
    shot(page, "wizard-test-fax")
    page.get_by_role("link", name="Back").click()
    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("The appliance is set up.")).to_be_visible()

    # what the wizard wrote is the daemon's configuration file, our comment kept
    text = app.config.read_text()
    assert text.startswith("# written by tests/browser/conftest.py")
    cfg = tomllib.loads(text)
    assert cfg["web"]["setup_done"] is True
    assert cfg["system"]["hostname"] == "faxbridge-test" and cfg["system"]["timezone"] == "Europe/Berlin"
    assert cfg["delivery"]["backend"] == "smtp" and cfg["delivery"]["url"] == f"smtp://127.0.0.1:{smtp.port}"
    assert cfg["routing"]["default"] == "owner@example.test" and cfg["fax"]["ident"] == "+1 555 1000"
    assert [p["match"] for p in cfg["sip"]["peers"]] == ["192.0.2.10"]


def test_a_new_owners_first_hour(appliance: Appliance, smtp: SmtpServer, page: Page, shot) -> None:
    base = appliance.base_url
    # every page of an empty box leads to the password page; the API answers 401, not a page
    for path in ("/", "/faxes", "/login"):
        page.goto(base + path)
        expect(page).to_have_url(base + "/setup")
    api = page.request.get(base + "/api/faxes")
    assert api.status == 401 and "password" in api.json()["error"]
    expect(page.get_by_role("heading", name="Welcome to Faxbridge")).to_be_visible()
    expect(account_menu(page)).to_have_count(0)  # nobody is logged in yet
    shot(page, "setup")

    # the one-time setup code, printed in the terminal as on the box's console: a wrong one is
    # refused, said in words, nothing stored
    code = appliance.setup_code()
    assert code in appliance.log_text()
    page.get_by_label("Setup code").fill("AAAA-AAAA-AAAA")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same again").fill(PASSWORD)
    page.get_by_role("button", name="Set the password and continue").click()
    expect(page.get_by_role("alert")).to_contain_text("The setup code is wrong.")
    assert not (appliance.workdir / "web" / "admin.json").exists()

    # two different passwords: refused, said in words, nothing stored
    page.get_by_label("Setup code").fill(code.lower().replace("-", " "))  # as typed off a screen
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same again").fill(PASSWORD + "x")
    page.get_by_role("button", name="Set the password and continue").click()
    expect(page.get_by_role("alert")).to_have_text("The two passwords differ.")
    assert not (appliance.workdir / "web" / "admin.json").exists()

    page.get_by_label("Setup code").fill(code)
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same again").fill(PASSWORD)
    page.get_by_role("button", name="Set the password and continue").click()
    expect(account_menu(page)).to_have_text("admin")
    expect(page).to_have_url(base + "/setup/system")  # on into the wizard
    admin = appliance.workdir / "web" / "admin.json"
    assert stat.S_IMODE(admin.stat().st_mode) == 0o600
    assert not (appliance.workdir / "web" / "setup-code.json").exists()  # the code is void
    assert PASSWORD not in admin.read_text() and "$argon2id$" in admin.read_text()

    wizard(page, appliance, smtp, shot)

    # the password page is gone for good once a password exists
    page.goto(base + "/setup")
    expect(page).not_to_have_url(base + "/setup")

    log_out(page)
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
    listing = page.request.get(base + "/api/faxes").json()
    assert listing["total"] == 1 and listing["faxes"][0]["caller_number"] == "test"  # the wizard's test fax

    # the API's description, as JSON and as a page that renders under the CSP without a CDN
    assert page.request.get(base + "/api/openapi.json").json()["openapi"].startswith("3.1")
    page.goto(base + "/api/docs")
    expect(page.get_by_role("heading", name="Faxbridge JSON API")).to_be_visible()
    expect(page.locator("#listFaxes")).to_contain_text("/api/faxes")
    assert not page.problems.csp_violations(), page.problems.console_errors  # type: ignore[attr-defined]
    assert not page.problems.page_errors  # type: ignore[attr-defined]
    shot(page, "logged-in")

    the_hour_after_the_wizard(page, appliance, smtp, shot)

    # the terminal `make run` writes to stayed readable the whole time: nothing looked like a crash
    out = appliance.log_text()
    for alarming in ("Traceback", "SSLV3_ALERT", "ERROR"):
        assert alarming not in out, (alarming, out[-3000:])


def the_hour_after_the_wizard(page: Page, app: Appliance, smtp: SmtpServer, shot) -> None:
    """What the owner does next: checks the time, changes a setting, reads a fax, downloads what
    support asks for, looks at the certificate and chooses a new password."""
    base = app.base_url
    zone = datetime.datetime.now(zoneinfo.ZoneInfo("Europe/Berlin")).strftime("%Z")  # CET or CEST

    # the wizard's zone: on the dashboard and in the mail of the wizard's test fax, named
    page.goto(base + "/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("div.heading p.muted")).to_contain_text(zone)
    shot(page, "dashboard")
    fax_mail = smtp.wait_for(2, timeout=LOADED)[1]  # the first was the wizard's test message
    assert fax_mail["To"] == "owner@example.test"
    body = fax_mail.get_body(preferencelist=("plain",))
    assert body is not None and re.search(rf"\d\d:\d\d(:\d\d)? {zone}\b", body.get_content()), body.get_content()
    tiff = next(p for p in fax_mail.iter_attachments() if p.get_content_type() == "image/tiff")
    assert tiff.get_param("application") == "faxbw"

    # the System page: the zone named, the log's lines (this start's) in it
    page.goto(base + "/system")
    expect(page.locator("main")).to_contain_text("Europe/Berlin")
    expect(page.locator("#log")).to_contain_text("SIP listening on")
    shot(page, "system")

    # a setting changed: a peer for this desk whose calls' media is recorded; saved and applied,
    # and no restart is claimed (none is needed), on this page or the next
    page.goto(base + "/settings/sip")
    page.locator("[name='peers-1-name']").fill("desk")
    page.locator("[name='peers-1-match']").fill("127.0.0.1")
    page.locator("[name='peers-1-capture']").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("p.flash")).to_contain_text("Saved and applied")
    expect(page.locator("#restart-needed")).to_have_count(0)
    page.goto(base + "/faxes")
    expect(page.locator("#restart-needed")).to_have_count(0)

    # a fax from that peer, read on its page as a person reads it
    app.send_test_fax("--caller", "5550123", "--ident", "+1 555 0123")
    smtp.wait_for(3, timeout=LOADED)
    page.goto(base + "/faxes")
    page.locator("table.faxes tbody tr").filter(has_text="5550123").get_by_role("link").nth(1).click()
    expect(page.locator("#call")).to_contain_text("desk")
    text = page.locator("main").inner_text()
    for internal in ("{", "}", "[]", "None", "DNSName(", "Fax UID"):
        assert internal not in text, (internal, text)
    for words in ("G.711", "bit/s", "+1 555 0123", "5550123", "DCS"):
        assert words in text, (words, text)
    shot(page, "fax-page")

    # the file support asks for: SIP messages, the trace, the media, and the call's packets
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download call diagnostics").click()
    download = download_info.value
    assert re.fullmatch(r"fax-\d{8}-\d{6}-\d+-call-diagnostics\.zip", download.suggested_filename)
    archive = zipfile.ZipFile(download.path())
    names = {n.split("/", 1)[1]: n for n in archive.namelist()}
    assert "INVITE sip:" in archive.read(names["sip-messages.txt"]).decode()
    assert "DCS" in archive.read(names["t30-trace.txt"]).decode()
    rtp = rtp_packets(archive.read(names["media.pcap"]))
    assert len(rtp) > 500, len(rtp)  # 50 a second each way for the call's seconds
    assert {pt for pt, _ in rtp} <= {0, 8, 13, 101} and any(pt in (0, 8) for pt, _ in rtp)

    # the account menu: the certificate, named plainly, and a new password
    account_menu(page).click()
    page.get_by_role("link", name="Certificate").click()
    expect(page.locator("main")).to_contain_text("IP: 127.0.0.1")
    assert "DNSName(" not in page.locator("main").inner_text()
    shot(page, "certificate")
    account_menu(page).click()
    page.get_by_role("link", name="Change password").click()
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_label("The same again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change the password").click()
    expect(page.locator("main")).to_contain_text("changed")
    log_out(page)
    page.goto(base + "/faxes")
    page.get_by_label("Administrator password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong password.")
    page.get_by_label("Administrator password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Received faxes")).to_be_visible()


def rtp_packets(pcap: bytes) -> list[tuple[int, int]]:
    """(payload type, sequence number) of every RTP packet in a capture, read with dpkt."""
    out = []
    for _, frame in dpkt.pcap.Reader(io.BytesIO(pcap)):
        ip = dpkt.ethernet.Ethernet(frame).data
        udp = ip.data
        assert isinstance(udp, dpkt.udp.UDP), type(udp)
        rtp = dpkt.rtp.RTP(udp.data)
        assert rtp.version == 2
        out.append((rtp.pt, rtp.seq))
    return out
