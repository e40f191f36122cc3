"""faxbridge.txt's parser: every valid line applies, every bad one is named with its line."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from appliance.firstboot import bootconfig
from appliance.firstboot.bootconfig import MAX_BYTES, MAX_LINE, parse

TEMPLATE = Path(__file__).parents[2] / "image" / "boot" / "faxbridge.txt"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl owner@pc"
GOOD = f"""# a comment
hostname = FaxDesk
timezone = Europe/Berlin
wifi_ssid = "Office WLAN"
wifi_passphrase = correct-horse-1
wifi_country = de
address = 192.168.1.50/24
gateway = 192.168.1.1
dns = 192.168.1.1, 9.9.9.9
ssh = on
ssh_authorized_key = {KEY}
admin_password = correct horse battery
"""


def messages(text: str | bytes) -> list[str]:
    _, problems = parse(text.encode() if isinstance(text, str) else text)
    return [str(p) for p in problems]


def test_a_good_file() -> None:
    cfg, problems = parse(GOOD.encode())
    assert problems == []
    assert cfg.hostname == "faxdesk" and cfg.timezone == "Europe/Berlin"
    assert (cfg.wifi_ssid, cfg.wifi_passphrase, cfg.wifi_country) == ("Office WLAN", "correct-horse-1", "DE")
    assert cfg.address == ipaddress.ip_interface("192.168.1.50/24")
    assert cfg.gateway == ipaddress.ip_address("192.168.1.1")
    assert cfg.dns == [ipaddress.ip_address("192.168.1.1"), ipaddress.ip_address("9.9.9.9")]
    assert cfg.ssh is True and cfg.ssh_authorized_key == KEY
    assert cfg.admin_password == "correct horse battery"


def test_the_shipped_template_parses_clean_and_holds_no_secret() -> None:
    data = TEMPLATE.read_bytes()
    cfg, problems = parse(data)
    assert problems == []
    assert cfg.admin_password == "" and cfg.wifi_passphrase == "" and cfg.ssh_authorized_key == ""
    assert cfg.ssh is False and cfg.address is None
    assert not bootconfig.has_secrets(data)
    for key in bootconfig.PARSERS:  # every setting is documented there
        assert f"\n{key} =" in data.decode(), key


def test_windows_notepad_crlf_and_bom() -> None:
    cfg, problems = parse(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    assert problems == [] and cfg.hostname == "faxdesk" and cfg.admin_password == "correct horse battery"
    cfg, problems = parse(b"hostname = a\rtimezone = UTC\r")  # old Mac line ends
    assert problems == [] and (cfg.hostname, cfg.timezone) == ("a", "UTC")


@pytest.mark.parametrize("line, words", [
    ("hostname = fax_desk", "hostname: letters, digits and '-' only"),
    ("hostname = -desk", "not starting or ending with '-'"),
    ("timezone = Mars/Olympus", "'Mars/Olympus' is not a known time zone"),
    ("timezone = Berlin", "not a time zone name such as Europe/Berlin"),
    ("timezone = ../../etc/passwd", "not a time zone name"),
    ("wifi_ssid = " + "x" * 33, "at most 32 bytes"),
    ('wifi_ssid = a"b', "quote, backslash or control character"),
    ("wifi_country = Germany", "two letters"),
    ("address = 192.168.1.50", "with its prefix length"),
    ("address = 192.168.1.0/24", "not a host address"),
    ("address = 300.1.1.1/24", "is not an address with a prefix length"),
    ("address = somewhere", "write 'dhcp' or an address"),
    ("ssh = maybe", "ssh: write on or off"),
    ("ssh_authorized_key = AAAAC3Nza", "one public key line"),
    ("ssh_authorized_key = ssh-ed25519 not!base64", "not base64"),
    ("admin_password = short", "at least 10 characters"),
    ("admin_password = aaaaaaaaaaaa", "more different characters"),
    ("hostname", "not 'key = value'"),
    ("= value", "not 'key = value'"),
    ("hostnme = desk", "unknown setting 'hostnme' (did you mean hostname?)"),
    ("colour = blue", "unknown setting 'colour'"),
])
def test_each_bad_line_is_named_with_its_number_and_the_rest_applies(line: str, words: str) -> None:
    other = "timezone = UTC" if line.startswith("hostname") else "hostname = desk"
    cfg, problems = parse(f"# first\n{other}\n{line}\n".encode())
    assert [p.line for p in problems] == [3], problems
    assert words in str(problems[0]) and str(problems[0]).startswith("faxbridge.txt line 3: ")
    assert (cfg.timezone == "UTC" or cfg.hostname == "desk")


def test_a_secret_on_a_bad_line_is_never_repeated_in_the_message() -> None:
    for line in ("admin_password correct horse battery", "admin_password = short-pw",
                 "wifi_passphrase = seven77", "wifi_passphrase = nonascii-päss"):
        secret = line.split()[-1]
        text = "\n".join(messages(f"wifi_ssid = home\n{line}\n"))
        assert text and secret not in text, text


def test_settings_that_need_another() -> None:
    assert messages("gateway = 10.0.0.1\n") == [
        "faxbridge.txt line 1: gateway: only used with a static address (address = ...); ignored"]
    assert "not in the address's network 10.0.0.0/24" in messages("address = 10.0.0.5/24\ngateway = 10.0.1.1\n")[0]
    assert "DHCP gives the name servers" in messages("dns = 1.1.1.1\n")[0]
    assert "no wifi_ssid is set" in messages("wifi_passphrase = long-enough\n")[0]
    cfg, _ = parse(b"gateway = 10.0.0.1\n")
    assert cfg.gateway is None and "gateway" not in cfg.given


def test_a_key_set_twice_keeps_the_first() -> None:
    cfg, problems = parse(b"hostname = one\nhostname = two\n")
    assert cfg.hostname == "one"
    assert [str(p) for p in problems] == [
        "faxbridge.txt line 2: hostname is set again (first on line 1): this one is ignored"]


def test_empty_values_and_quotes() -> None:
    cfg, problems = parse(b"hostname =\ntimezone = ''\naddress = DHCP\nwifi_ssid = 'My Net'\n")
    assert problems == [] and cfg.hostname == "" and cfg.timezone == "" and cfg.address is None
    assert cfg.wifi_ssid == "My Net"


def test_oversize_file_long_lines_and_bad_bytes() -> None:
    cfg, problems = parse(b"hostname = ok\n" + b"#" * (MAX_BYTES + 100) + b"\ntimezone = UTC\n")
    assert cfg.hostname == "ok" and cfg.timezone == ""  # beyond the limit: not read
    assert "larger than 64 KiB" in str(problems[0]) and problems[0].line == 0
    cfg, problems = parse(b"hostname = " + b"a" * MAX_LINE + b"\ntimezone = UTC\n")
    assert [str(p) for p in problems] == [f"faxbridge.txt line 1: longer than {MAX_LINE} characters: ignored"]
    assert cfg.timezone == "UTC"
    cfg, problems = parse(b"hostname = d\xe9sk\ntimezone = UTC\n")  # Latin-1 from an old editor
    assert "not UTF-8" in str(problems[0]) and cfg.timezone == "UTC"


def test_blanking_secrets_keeps_everything_else_byte_for_byte() -> None:
    raw = b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode()
    out = bootconfig.blank_secrets(raw)
    assert b"correct-horse-1" not in out and b"correct horse battery" not in out
    assert out.startswith(b"\xef\xbb\xbf") and b"\n" not in out.replace(b"\r\n", b"")
    assert b"# admin_password: imported to the box and erased here" in out
    cfg, problems = parse(out)
    assert problems == [] and cfg.admin_password == "" and cfg.wifi_passphrase == ""
    assert cfg.hostname == "faxdesk" and cfg.ssh_authorized_key == KEY
    assert bootconfig.blank_secrets(out) == out and not bootconfig.has_secrets(out)
    commented = b"# admin_password = not-a-setting\n"
    assert bootconfig.blank_secrets(commented) == commented


def test_a_secret_the_parser_reads_is_always_erased() -> None:
    """Both read a line the same way: Unicode spaces (a no-break space from a word processor) or
    capitals around the key do not hide a secret from the erasure."""
    for line in ("\u00a0admin_password = correct horse battery", "ADMIN_PASSWORD\u2003= correct horse battery",
                 "  admin_password='correct horse battery'"):
        raw = f"hostname = a\n{line}\n".encode()
        assert parse(raw)[0].admin_password == "correct horse battery", line
        out = bootconfig.blank_secrets(raw)
        assert b"correct horse battery" not in out and parse(out)[0].hostname == "a", line
