"""faxbridge.txt on the card's boot partition (appliance/firstboot/bootconfig.py).

Input: the file's bytes, as an owner's editor may leave them.
Contract: ``parse`` never raises; it returns a BootConfig with only known keys set and Problems
whose line numbers are in the file and whose messages are non-empty; a problem on a secret's
line is one of the fixed messages (it never repeats the secret). ``blank_secrets`` leaves no
secret that ``parse`` would read, changes no other setting, keeps the line count (so the
problems' line numbers stay true), and is idempotent.
"""
from __future__ import annotations

import re

from appliance.firstboot.bootconfig import PARSERS, SECRET_KEYS, _key_of, blank_secrets, decode, parse

MAX_LEN = 4096
DICTS = ("bootconfig", "_text")
#: every message a line that sets a secret may get
SECRET_LINE = re.compile(
    r"(admin_password: (The password must have at least \d+ characters\.|The password needs more different "
    r"characters\.|The password is too long \(at most \d+ characters\)\.)"
    r"|wifi_passphrase: (a WPA passphrase has 8 to 63 printable ASCII characters|no wifi_ssid is set; ignored)"
    r"|(admin_password|wifi_passphrase) is set again \(first on line \d+\): this one is ignored"
    r"|longer than \d+ characters: ignored|not UTF-8 text \(save the file as UTF-8\): ignored)")


def TestOneInput(data: bytes) -> None:
    cfg, problems = parse(data)
    text, _ = decode(data)
    lines = text.split("\n")
    for p in problems:
        assert 0 <= p.line <= len(lines) and p.message, p
        if p.line and _key_of(lines[p.line - 1]) in SECRET_KEYS:
            assert SECRET_LINE.fullmatch(p.message), p
    assert set(cfg.given) <= set(PARSERS)
    blanked = blank_secrets(data)
    after, _ = parse(blanked)
    assert not after.admin_password and not after.wifi_passphrase, blanked
    for key in PARSERS:
        if key not in SECRET_KEYS:
            assert getattr(after, key) == getattr(cfg, key), key
    assert decode(blanked)[0].count("\n") == text.count("\n")
    assert blank_secrets(blanked) == blanked
