"""Restoring an uploaded configuration backup (appliance/web/tomledit.py ConfigDoc.restore).

Input: the uploaded file's text (the page refuses what is not UTF-8).  The box already has a
configuration with secrets.  Contract: restore returns the new Config or raises ConfigError /
TomlEditError, and then nothing was written; after a restore the daemon loads exactly that
Config from the files, no secret is left in the main file (they go to secrets.toml, mode 0600),
and secrets the backup lacks are kept.
"""
from __future__ import annotations

import os
import tomllib

import tomlkit

from appliance.config import Config, ConfigError
from appliance.web.tomledit import ConfigDoc, TomlEditError
from tests.fuzz.targets import scratch

MAX_LEN = 8192
DICTS = ("config", "_text")
_DIR = scratch("fuzz-restore-")
MAIN, SECRETS = _DIR / "faxbridge.toml", _DIR / "secrets.toml"
BEFORE_MAIN = """\
# the box's configuration before the restore
[delivery]
backend = "smtp"
url = "smtp://mail.example.com:587"
from = "fax@example.com"
username = "fax@example.com"

[[sip.registrations]]
name = "pbx"
registrar = "sip:pbx.example.com"
user = "100"
"""
BEFORE_SECRETS = """\
[delivery]
password = "old-smtp-secret"

[[sip.registrations]]
name = "pbx"
password = "old-reg-secret"
"""


def _reset() -> None:
    MAIN.write_text(BEFORE_MAIN)
    fd = os.open(SECRETS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(BEFORE_SECRETS)


def TestOneInput(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    _reset()
    doc = ConfigDoc.load(MAIN)
    try:
        cfg = doc.restore(text)
    except (ConfigError, TomlEditError) as e:
        assert str(e)
        assert MAIN.read_text() == BEFORE_MAIN and SECRETS.read_text() == BEFORE_SECRETS, "written despite the error"
        return
    assert Config.load(MAIN) == cfg
    assert os.stat(SECRETS).st_mode & 0o077 == 0
    main = tomllib.loads(MAIN.read_text())
    delivery = main.get("delivery", {})
    assert "password" not in delivery and "client_secret" not in delivery, delivery
    for table in ("registrations", "peers"):
        assert all("password" not in e for e in main.get("sip", {}).get(table, [])), main["sip"]
    given = tomlkit.parse(text).unwrap().get("delivery", {})
    if not (isinstance(given, dict) and isinstance(given.get("password"), str) and given["password"]):
        assert cfg.delivery.password == "old-smtp-secret", cfg.delivery.password
