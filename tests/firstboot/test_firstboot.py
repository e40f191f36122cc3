"""``faxbridge firstboot`` on a plain directory tree: boot (FAT), data partition, root."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from appliance.firstboot import network
from appliance.firstboot.run import CODE_FILE, ISSUE, SSH_WANTS, SSHD_DROPIN, firstboot
from appliance.web import setupcode
from appliance.web.auth import AdminStore

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl owner@pc"
WIFI_PASS = "wifi-secret-77"
ADMIN_PASS = "correct horse battery"
TXT = (f"hostname = faxdesk\r\ntimezone = Europe/Berlin\r\nwifi_ssid = Office\r\nwifi_passphrase = {WIFI_PASS}\r\n"
       f"wifi_country = DE\r\naddress = 192.168.1.50/24\r\ngateway = 192.168.1.1\r\ndns = 192.168.1.1\r\n"
       f"ssh = on\r\nssh_authorized_key = {KEY}\r\nadmin_password = {ADMIN_PASS}\r\ncolour = blue\r\n")
TEMPLATE = Path(__file__).parents[2] / "image" / "boot" / "faxbridge.txt"


@pytest.fixture
def card(tmp_path: Path) -> tuple[Path, Path, Path]:
    boot, data, root = (tmp_path / n for n in ("boot", "data", "root"))
    for d in (boot, data, root):
        d.mkdir()
    return boot, data, root


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def every_file(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_the_template_card_gets_unique_keys_and_a_setup_code(card: tuple[Path, Path, Path]) -> None:
    boot, data, root = card
    (boot / "faxbridge.txt").write_bytes(TEMPLATE.read_bytes())
    report = firstboot(boot, data, root)
    assert report.problems == []
    for kind in ("ed25519", "ecdsa"):
        key = data / "firstboot" / "ssh" / f"ssh_host_{kind}_key"
        assert mode(key) == 0o600 and b"PRIVATE KEY" in key.read_bytes()
        assert f"HostKey {key}" in (root / SSHD_DROPIN).read_text()
    assert len((root / "etc/machine-id").read_text().strip()) == 32
    web = data / "web"
    assert mode(web / "session.key") == 0o600 and mode(web / "tls" / "key.pem") == 0o600
    assert (web / "tls" / "cert.pem").exists()
    assert mode(data / "firstboot") == 0o700
    # no password: the setup code on the card, on the console, in the web state (0600)
    code = report.setup_code
    assert code and setupcode.read(web) == code and mode(setupcode.path(web)) == 0o600
    assert code in (boot / CODE_FILE).read_text() and code in (root / ISSUE).read_text()
    # the template's defaults: DHCP on the cable, no Wi-Fi, SSH off
    assert "DHCP=yes" in (root / network.WIRED).read_text()
    assert not (root / network.WPA).exists() and not (root / SSH_WANTS).is_symlink()
    assert (boot / "faxbridge.txt").read_bytes() == TEMPLATE.read_bytes()  # nothing to erase


def test_two_cards_from_one_image_differ(tmp_path: Path) -> None:
    made = []
    for n in ("a", "b"):
        boot, data, root = (tmp_path / n / d for d in ("boot", "data", "root"))
        for d in (boot, data, root):
            d.mkdir(parents=True)
        report = firstboot(boot, data, root)
        made.append((every_file(data / "firstboot" / "ssh"), (root / "etc/machine-id").read_text(),
                     (data / "web" / "session.key").read_bytes(), (data / "web" / "tls" / "key.pem").read_bytes(),
                     report.setup_code))
    for x, y in zip(*made):
        assert x != y


def test_running_again_changes_nothing_unique(card: tuple[Path, Path, Path]) -> None:
    boot, data, root = card
    (boot / "faxbridge.txt").write_text(TXT)
    first = firstboot(boot, data, root)
    unique = ["firstboot/ssh", "firstboot/machine-id", "web/session.key", "web/tls", "web/admin.json"]
    before = {u: every_file(data / u) if (data / u).is_dir() else (data / u).read_bytes() for u in unique}
    root_before, boot_before = every_file(root), every_file(boot)
    second = firstboot(boot, data, root)
    # the same problems on the same lines (an erased secret's line became a comment line)
    assert second.done == [] and second.problems == first.problems
    assert {u: every_file(data / u) if (data / u).is_dir() else (data / u).read_bytes() for u in unique} == before
    assert every_file(root) == root_before and every_file(boot) == boot_before


def test_secrets_move_to_the_data_partition_and_leave_the_card(card: tuple[Path, Path, Path]) -> None:
    boot, data, root = card
    (boot / "faxbridge.txt").write_bytes(b"\xef\xbb\xbf" + TXT.encode())
    report = firstboot(boot, data, root)
    fat = (boot / "faxbridge.txt").read_bytes()
    assert WIFI_PASS.encode() not in fat and ADMIN_PASS.encode() not in fat
    assert b"# wifi_passphrase: imported to the box and erased here" in fat
    assert fat.startswith(b"\xef\xbb\xbf") and b"hostname = faxdesk\r\n" in fat and KEY.encode() in fat
    # on the data partition, private
    state = data / "firstboot" / "state.json"
    assert mode(state) == 0o600 and json.loads(state.read_text())["wifi"]["passphrase"] == WIFI_PASS
    admin = AdminStore(data / "web")
    assert admin.verify(ADMIN_PASS) and mode(admin.file) == 0o600
    assert ADMIN_PASS not in admin.file.read_text()
    # a pre-seeded password: no first-start page, so no setup code anywhere
    assert report.setup_code == "" and setupcode.read(data / "web") is None
    assert not (boot / CODE_FILE).exists() and "Setup code" not in (root / ISSUE).read_text()
    # no secret in a file the root or the console shows
    for path, content in every_file(root).items():
        assert WIFI_PASS.encode() not in content and ADMIN_PASS.encode() not in content, path
    wpa = root / network.WPA
    assert mode(wpa) == 0o600 and f"psk={network.psk('Office', WIFI_PASS)}" in wpa.read_text()
    # the next boot still joins the network with the imported passphrase
    firstboot(boot, data, root)
    assert f"psk={network.psk('Office', WIFI_PASS)}" in wpa.read_text()


def test_settings_reach_the_configuration_the_root_and_sshd(card: tuple[Path, Path, Path]) -> None:
    boot, data, root = card
    (boot / "faxbridge.txt").write_text(TXT)
    old = os.umask(0o077)  # as `faxbridge firstboot` runs (cli.py sets it for every command)
    try:
        report = firstboot(boot, data, root)
    finally:
        os.umask(old)
    assert [str(p) for p in report.problems] == ["faxbridge.txt line 12: unknown setting 'colour'"]
    assert "unknown setting 'colour'" in (root / ISSUE).read_text()
    assert json.loads((data / "web" / "faxbridge-txt-problems.json").read_text()) == [
        "faxbridge.txt line 12: unknown setting 'colour'"]
    cfg = tomllib.loads((data / "faxbridge.toml").read_text())
    assert cfg["system"] == {"hostname": "faxdesk", "timezone": "Europe/Berlin"}
    assert (root / "etc/hostname").read_text() == "faxdesk\n"
    assert "https://faxdesk.local/" in (root / ISSUE).read_text()  # the name avahi announces
    assert "127.0.1.1\tfaxdesk" in (root / "etc/hosts").read_text()
    assert str((root / "etc/localtime").readlink()) == "/usr/share/zoneinfo/Europe/Berlin"
    wifi = (root / network.WIRELESS).read_text()
    assert "Name=wl*" in wifi and "Address=192.168.1.50/24" in wifi and "Gateway=192.168.1.1" in wifi
    assert "DNS=192.168.1.1" in wifi
    assert "DHCP=yes" in (root / network.WIRED).read_text()  # the static address is on Wi-Fi only
    assert "country=DE" in (root / network.WPA).read_text() and 'ssid="Office"' in (root / network.WPA).read_text()
    assert str((root / SSH_WANTS).readlink()) == "/lib/systemd/system/ssh.service"
    kept = data / "firstboot" / "ssh" / "authorized_keys" / "admin"
    assert kept.read_text() == KEY + "\n" and stat.S_IMODE(kept.stat().st_mode) == 0o600
    # sshd reads it as the user, who cannot enter root's directory: a readable copy in the root
    public = root / "etc/ssh/authorized_keys/admin"
    assert public.read_text() == KEY + "\n" and stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(public.parent.stat().st_mode) == 0o755  # even under the CLI's umask 077
    dropin = (root / SSHD_DROPIN).read_text()
    assert "AuthorizedKeysFile /etc/ssh/authorized_keys/%u" in dropin and "PasswordAuthentication no" in dropin


def test_the_web_uis_change_is_not_undone_and_the_owners_edit_applies(card: tuple[Path, Path, Path]) -> None:
    boot, data, root = card
    (boot / "faxbridge.txt").write_text("timezone = Europe/Berlin\nssh = on\n")
    firstboot(boot, data, root)
    toml = data / "faxbridge.toml"
    toml.write_text(toml.read_text().replace("Europe/Berlin", "Europe/Paris"))  # the settings page
    firstboot(boot, data, root)
    assert tomllib.loads(toml.read_text())["system"]["timezone"] == "Europe/Paris"
    (boot / "faxbridge.txt").write_text("timezone = America/New_York\nssh = off\n")  # the owner edits the card
    firstboot(boot, data, root)
    assert tomllib.loads(toml.read_text())["system"]["timezone"] == "America/New_York"
    assert not (root / SSH_WANTS).is_symlink()


def test_a_bad_file_never_stops_the_boot(card: tuple[Path, Path, Path]) -> None:
    boot, data, root = card
    (boot / "faxbridge.txt").write_bytes(b"\x00\xff" * 50000 + b"\nhostname = x\n")
    report = firstboot(boot, data, root)
    assert report.problems and report.setup_code and (data / "firstboot/ssh/ssh_host_ed25519_key").exists()
    (data / "faxbridge.toml").write_text("[system\n")  # a configuration file that is not TOML
    (boot / "faxbridge.txt").write_text("timezone = UTC\n")
    report = firstboot(boot, data, root)
    assert any("host name and time zone not applied" in str(p) for p in report.problems)
    assert (data / "faxbridge.toml").read_text() == "[system\n"  # nothing lost


def test_the_code_is_removed_from_the_card_at_the_boot_after_the_password(card: tuple[Path, Path, Path]) -> None:
    boot, data, root = card
    code = firstboot(boot, data, root).setup_code
    assert (boot / CODE_FILE).exists()
    (boot / CODE_FILE).chmod(0o644)
    AdminStore(data / "web").set_password(ADMIN_PASS)  # the web UI, which cannot write the FAT
    firstboot(boot, data, root)
    assert not (boot / CODE_FILE).exists() and code not in (root / ISSUE).read_text()
    assert setupcode.read(data / "web") is None


def test_a_power_cut_midway_leaves_a_tree_the_next_run_finishes(card: tuple[Path, Path, Path]) -> None:
    """Killed at each step in turn (os.replace is where a file appears): every later run ends
    with the same complete tree, and no half-written file."""
    boot, data, root = card
    (boot / "faxbridge.txt").write_text(TXT)
    script = ("import os, sys\n"
              "n = int(sys.argv[4]); real = os.replace\n"
              "def cut(a, b):\n"
              "    global n\n"
              "    n -= 1\n"
              "    if n < 0: os._exit(9)\n"
              "    real(a, b)\n"
              "os.replace = cut\n"
              "from appliance.firstboot.run import firstboot\n"
              "firstboot(*sys.argv[1:4])\n")
    for cut in range(0, 60, 7):
        subprocess.run([sys.executable, "-c", script, str(boot), str(data), str(root), str(cut)], check=False)
        report = firstboot(boot, data, root)
        assert AdminStore(data / "web").verify(ADMIN_PASS)
        assert WIFI_PASS not in (boot / "faxbridge.txt").read_text()
        assert f"psk={network.psk('Office', WIFI_PASS)}" in (root / network.WPA).read_text()
        assert [p.message for p in report.problems] == ["unknown setting 'colour'"]
    assert not [p for p in (boot, data, root) for p in p.rglob("*.tmp")]


def test_an_oversized_file_is_erased_whole_not_cut(card: tuple[Path, Path, Path]) -> None:
    boot, data, root = card
    tail = b"# " + b"x" * 70000 + b"\nadmin_password = beyond the limit 1\n# the end\n"
    (boot / "faxbridge.txt").write_bytes(f"admin_password = {ADMIN_PASS}\n".encode() + tail)
    report = firstboot(boot, data, root)
    assert any("larger than 64 KiB" in str(p) for p in report.problems)
    fat = (boot / "faxbridge.txt").read_bytes()
    assert ADMIN_PASS.encode() not in fat and b"beyond the limit" not in fat and fat.endswith(b"# the end\n")
    assert AdminStore(data / "web").verify(ADMIN_PASS)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another user needs root, as on the box")
def test_the_service_user_gets_the_web_state_and_root_keeps_the_host_keys(card: tuple[Path, Path, Path]) -> None:
    boot, data, root = card
    (boot / "faxbridge.txt").write_text(f"timezone = UTC\nadmin_password = {ADMIN_PASS}\n")
    system = data.parent / "system"  # root's own, outside the state directory the service user owns
    firstboot(boot, data, root, user="nobody", system=system)
    nobody = pwd.getpwnam("nobody").pw_uid
    for p in (data / "web" / "admin.json", data / "web" / "session.key", data / "web" / "tls" / "key.pem",
              data / "faxbridge.toml", data / "web"):
        assert p.stat().st_uid == nobody, p
    assert not (data / "firstboot").exists()
    key = system / "ssh" / "ssh_host_ed25519_key"
    assert key.stat().st_uid == 0 and (system / "state.json").stat().st_uid == 0 and mode(system) == 0o700
    assert f"HostKey {key}" in (root / SSHD_DROPIN).read_text()
