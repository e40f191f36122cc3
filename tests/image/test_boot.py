"""The SD-card image from this tree, booted unmodified under QEMU (software arm64), used as an
owner uses it: the setup code from the console, the wizard in chromium, a fax over SIP from this
host delivered pixel-equal to an SMTP server here, the units healthy and hardened, a second boot
that keeps everything, and a power cut while one fax is received and another delivered.

One story in order (each test needs the box as the one before left it); one xdist worker.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import assert_pages_equal, tiff_attachment
from tests.image.conftest import ROOT, Box, MailServer
from tests.image.pifirmware import ahead_of_the_suite

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("image")]

CODE_RE = r"Setup code for the first start: ([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})"


def one_page(tmp: Path) -> tuple[Path, list]:
    from appliance.fax.pages import STANDARD, write_fax_tiff
    from appliance.fax.testpages import demo_pages

    page = demo_pages(1, STANDARD)[0]
    half = page.crop((0, 0, page.width, page.height // 2))
    path = tmp / "one-page.tif"
    write_fax_tiff([half], path, STANDARD)
    return path, [half]


def send_fax(box: Box, tiff: Path | None, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "appliance", "send-test-fax", "--to", f"sip:fax@{box.lan.guest_addr}:5060",
           "--bind", box.lan.host_addr, *([str(tiff)] if tiff else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=ahead_of_the_suite)


def test_first_boot_shows_the_setup_code_and_the_wizard_completes(box: Box, smtp: MailServer,
                                                                 tmp_path: Path) -> None:
    seconds = box.boot()
    box.notes["first boot to the web page"] = f"{seconds:.0f} s"
    # the console (a screen on the box) shows the code; the FAT has it for a headless owner
    box.setup_code = box.machine.wait_console(CODE_RE, 120).group(1)
    from playwright.sync_api import expect, sync_playwright

    mailbox = smtp.mailbox
    # the site's CA, which signed its Exchange server's certificate, handed to the box over SSH
    ca = subprocess.run(["ssh", "-i", str(box.key), "-o", "StrictHostKeyChecking=no", "-o",
                         "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                         f"admin@{box.lan.guest_addr}",
                         "sudo install -o faxbridge -m 0644 /dev/stdin /var/lib/faxbridge/site-ca.pem"],
                        input=smtp.ca_pem, capture_output=True, timeout=120)
    assert ca.returncode == 0, ca.stderr
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        page = browser.new_context(ignore_https_errors=True).new_page()
        page.set_default_timeout(60_000)
        page.goto(box.url + "/")
        page.get_by_label("Setup code").fill("AAAA-AAAA-AAAA")
        page.get_by_label("New password").fill(box.password)
        page.get_by_label("The same again").fill(box.password)
        page.get_by_role("button", name="Set the password and continue").click()
        expect(page.locator("main")).to_contain_text("The setup code is wrong")
        page.screenshot(path=str(tmp_path / "setup-refused.png"))
        page.get_by_label("Setup code").fill(box.setup_code)
        page.get_by_label("New password").fill(box.password)
        page.get_by_label("The same again").fill(box.password)
        page.get_by_role("button", name="Set the password and continue").click()

        expect(page.get_by_role("heading", name="Name and time zone")).to_be_visible()
        # faxbridge.txt's values are already there
        expect(page.get_by_label("Host name")).to_have_value("faxbridge-ci")
        page.get_by_role("button", name="Save and continue").click()
        expect(page).to_have_url(re.compile(r".*/setup/lines$"))
        page.get_by_label("This fax machine's number (ident)").fill("+1 555 1000")
        page.locator("[name='peers-0-name']").fill("bench")
        page.locator("[name='peers-0-match']").fill(box.lan.host_addr)
        page.get_by_role("button", name="Save and continue").click()
        expect(page).to_have_url(re.compile(r".*/setup/delivery$"))
        choice = page.locator("#kind-exchange-server")
        choice.locator("summary").click()
        choice.locator("[name='host']").fill(smtp.host)
        choice.locator("[name='delivery.from']").fill("fax@example.test")
        choice.locator("[name='delivery.ca_file']").fill("/var/lib/faxbridge/site-ca.pem")
        choice.get_by_label("Send the test message to").fill("owner@example.test")
        choice.get_by_role("button", name="Send a test message").click()
        outcome = page.locator("#kind-exchange-server #test-outcome")
        expect(outcome).to_have_class(re.compile(r"\bok\b"), timeout=120_000)
        assert mailbox.wait_for(1, 60)[0]["To"] == "owner@example.test"
        choice.get_by_role("button", name="Save and continue").click()
        expect(page).to_have_url(re.compile(r".*/setup/mailbox$"))
        page.get_by_label("Default mailbox").fill("owner@example.test")
        page.get_by_role("button", name="Save and continue").click()
        expect(page).to_have_url(re.compile(r".*/setup/done$"))
        page.get_by_role("button", name="Finish").click()
        expect(page.get_by_text("The appliance is set up.")).to_be_visible()
        page.screenshot(path=str(tmp_path / "dashboard.png"))
        browser.close()
    # the code is void now: on the page, and (at the next boot) on the card
    status, body = box.get("/setup")
    assert b"Setup code" not in body


def test_a_fax_over_sip_is_delivered_pixel_equal(box: Box, smtp: MailServer, tmp_path: Path) -> None:
    mailbox = smtp.mailbox
    before = len(mailbox.parsed())
    tiff, pages = one_page(tmp_path)
    out = send_fax(box, tiff)
    assert out.returncode == 0, f"send-test-fax failed:\n{out.stdout}{out.stderr}"
    msg = mailbox.wait_for(before + 1, 180)[-1]
    assert msg["To"] == "owner@example.test"
    assert_pages_equal(tiff_attachment(msg), pages)


def test_units_run_healthy_as_the_service_user_and_hardened(box: Box) -> None:
    failed = box.ssh("systemctl --failed --no-legend --plain").stdout.strip()
    assert failed == "", f"failed units:\n{failed}"
    for unit in ("faxbridge.service", "faxbridge-web.service"):
        props = dict(line.split("=", 1) for line in box.ssh(
            f"systemctl show {unit} -p ActiveState -p User -p ProtectSystem -p NoNewPrivileges -p UMask "
            f"-p PrivateTmp -p ReadWritePaths -p MainPID -p Restart").stdout.splitlines() if "=" in line)
        assert props["ActiveState"] == "active", (unit, props)
        assert props["User"] == "faxbridge" and props["ProtectSystem"] == "strict", (unit, props)
        assert props["NoNewPrivileges"] == "yes" and props["UMask"] == "0077" and props["PrivateTmp"] == "yes"
        assert props["ReadWritePaths"] == "/var/lib/faxbridge" and props["Restart"] == "on-failure", (unit, props)
        user = box.ssh(f"ps -o user= -p {props['MainPID']}").stdout.strip()
        assert user == "faxbridge", (unit, user)
        security = box.ssh(f"systemd-analyze security --no-pager {unit}").stdout
        exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", security).group(1))
        assert exposure <= 2.5, f"{unit}: exposure {exposure}\n{security[-2000:]}"
    # the daemon's watchdog is armed
    assert box.ssh("systemctl show faxbridge.service -p WatchdogUSec").stdout.strip() == "WatchdogUSec=30s"
    # the data partition grew into the bigger card, the root is read-only underneath the overlay
    size_mb = int(box.ssh("df -BM --output=size /data | tail -1").stdout.strip().rstrip("M"))
    assert size_mb > 2000, f"/data is {size_mb} MB: it did not grow"
    mounts = box.ssh("findmnt -no FSTYPE,OPTIONS /").stdout
    assert mounts.startswith("overlay"), mounts
    box.notes["host key"] = box.host_key()


def test_a_second_boot_keeps_the_configuration_the_spool_and_the_host_key(box: Box) -> None:
    box.shutdown()
    box.boot()
    assert box.host_key() == box.notes["host key"]
    config = box.ssh("sudo cat /var/lib/faxbridge/faxbridge.toml").stdout
    assert 'backend = "smtp"' in config and "owner@example.test" in config
    tiffs = box.ssh("sudo find /var/lib/faxbridge/spool -name '*.tif' | wc -l").stdout.strip()
    assert int(tiffs) >= 1, "the received fax is gone from the spool after a reboot"
    status, body = box.get("/setup")
    assert b"Setup code" not in body
    # firstboot removed the void code from the card
    assert box.ssh("sudo test -e /boot/firmware/setup-code.txt", check=False).returncode == 1


def test_a_power_cut_loses_no_received_fax_and_delivers_each_once(box: Box, smtp: MailServer,
                                                                 tmp_path: Path) -> None:
    mailbox = smtp.mailbox
    before = len(mailbox.parsed())
    tiff, pages = one_page(tmp_path)
    # fax 1 is received completely; its delivery hangs in DATA when the power goes
    mailbox.hold.set()
    out = send_fax(box, tiff, "--caller", "5550111")
    assert out.returncode == 0, f"send-test-fax failed:\n{out.stdout}{out.stderr}"
    assert mailbox.holding.wait(180), "the box never started to deliver fax 1"
    # fax 2 is being received when the power goes
    import subprocess as sp
    caller = sp.Popen([sys.executable, "-m", "appliance", "send-test-fax", "--to",
                       f"sip:fax@{box.lan.guest_addr}:5060", "--bind", box.lan.host_addr, "--demo",
                       "--caller", "5550122"], stdout=sp.PIPE, stderr=sp.STDOUT, text=True,
                      preexec_fn=ahead_of_the_suite)
    time.sleep(25)
    box.machine.power_cut()
    caller.kill()
    caller.wait()
    mailbox.hold.clear()
    box.boot()
    got = mailbox.wait_for(before + 1, 300)
    time.sleep(30)  # anything delivered twice would arrive by now
    got = mailbox.parsed()[before:]
    from_fax1 = [m for m in got if "5550111" in str(m["Subject"]) + m.get_body().get_content()]
    assert len(from_fax1) == 1, f"fax 1 delivered {len(from_fax1)} times: {[m['Subject'] for m in got]}"
    assert_pages_equal(tiff_attachment(from_fax1[0]), pages)


def booted_slot(box: Box) -> str:
    return re.search(r"rauc\.slot=(\w)", box.ssh("cat /proc/cmdline").stdout).group(1)


def install(box: Box, bundle: Path) -> subprocess.CompletedProcess[str]:
    """`sudo faxbridge update FILE` over SSH, the bundle streamed in (the root is RAM)."""
    with open(bundle, "rb") as f:
        return subprocess.run(["ssh", "-i", str(box.key), "-o", "StrictHostKeyChecking=no", "-o",
                               "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                               f"admin@{box.lan.guest_addr}", "sudo faxbridge update /dev/stdin"],
                              stdin=f, capture_output=True, text=True, timeout=1200)


def make_bundle(box: Box, root_ext4: Path, out: Path, version: str, env: dict[str, str] | None = None) -> Path:
    import os

    run = subprocess.run([str(ROOT / "image" / "bundle.sh"), str(root_ext4), str(out), version,
                          str(box.built.cache)], env={**os.environ, **(env or {})}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return out


def test_a_bundle_with_a_bad_signature_is_refused(box: Box, tmp_path: Path) -> None:
    key, cert = tmp_path / "other.key.pem", tmp_path / "other.cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "30", "-subj", "/CN=someone else", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    bundle = make_bundle(box, box.built.root_ext4, tmp_path / "forged.raucb", box.built.version,
                         {"SIGNING_CERT": str(cert), "SIGNING_KEY": str(key)})
    out = install(box, bundle)
    assert out.returncode != 0, f"a forged bundle was accepted:\n{out.stdout}{out.stderr}"
    text = out.stdout + out.stderr
    assert "signature is not valid for this box" in text, text
    assert box.machine.proc.poll() is None, "the box restarted for a forged bundle"
    assert booted_slot(box) == "a"
    status = box.ssh("sudo faxbridge update --status").stdout
    assert "Nothing was changed" in status or "failed" in status.lower(), status


def test_an_update_is_tried_on_the_other_slot_and_committed(box: Box) -> None:
    assert booted_slot(box) == "a"
    key = box.host_key()
    out = install(box, box.built.bundle)
    assert out.returncode == 0, f"the update failed:\n{out.stdout}{out.stderr}"
    box.machine.wait_off(300)
    assert box.machine.tryboot_next, "the box did not restart with tryboot"
    box.boot()
    boot = box.machine.boots[-1]
    assert (boot.config_file, boot.os_prefix) == ("tryboot.txt", "b/") and "rauc.slot=b" in boot.cmdline
    deadline = time.monotonic() + 600
    while "os_prefix=b/" not in box.ssh("sudo cat /boot/firmware/config.txt").stdout:
        assert time.monotonic() < deadline, box.ssh("sudo faxbridge update --status", check=False).stdout
        time.sleep(5)
    status = box.ssh("sudo faxbridge update --status").stdout
    assert f"Updated to version {box.built.version}" in status, status
    # configuration, spool and identity are the data partition's: untouched
    assert box.host_key() == key
    assert 'backend = "smtp"' in box.ssh("sudo cat /var/lib/faxbridge/faxbridge.toml").stdout


def test_an_update_whose_daemon_cannot_start_is_rolled_back(box: Box, tmp_path: Path) -> None:
    assert booted_slot(box) == "b"
    run = subprocess.run([str(ROOT / "image" / "broken-bundle.sh"), str(box.built.root_ext4),
                          str(tmp_path / "broken.raucb"), box.built.version + ".broken", str(box.built.cache)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    bundle = tmp_path / "broken.raucb"
    # the bench's shorter patience for a trial (the box's own default is 300 s)
    box.ssh("echo HEALTH_TIMEOUT=120 | sudo tee /data/system/update.env")
    out = install(box, bundle)
    assert out.returncode == 0, f"the install failed:\n{out.stdout}{out.stderr}"
    box.machine.wait_off(300)
    assert box.machine.tryboot_next
    box.boot()
    assert box.machine.boots[-1].os_prefix == "a/"
    # the trial never becomes healthy: boot health gives up and restarts; the firmware reads config.txt
    box.machine.wait_off(600)
    assert not box.machine.tryboot_next
    box.boot()
    boot = box.machine.boots[-1]
    assert (boot.config_file, boot.os_prefix) == ("config.txt", "b/")
    assert booted_slot(box) == "b"
    status = box.ssh("sudo faxbridge update --status").stdout
    assert "rolled back" in status, status
    assert box.ssh("systemctl is-active faxbridge.service").stdout.strip() == "active"
