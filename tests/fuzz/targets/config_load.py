"""The configuration file (appliance/config.py Config.load), with secrets.toml merged over it.

Input: the main file's text, then optionally SEPARATOR and the text of secrets.toml (mode 0600).
Contract: Config.load raises ConfigError (whose errors are non-empty strings) or returns a
Config; a configuration that loads reads the same through the web UI's editor (tomledit), which
validates what it would write exactly as the daemon loads it.
"""
from __future__ import annotations

import os

from appliance.config import Config, ConfigError
from appliance.web.tomledit import ConfigDoc, TomlEditError
from tests.fuzz.targets import scratch

MAX_LEN = 8192
DICTS = ("config", "_text")
SEPARATOR = b"\n#--secrets.toml--\n"
_DIR = scratch("fuzz-config-")
MAIN, SECRETS = _DIR / "faxbridge.toml", _DIR / "secrets.toml"


def TestOneInput(data: bytes) -> None:
    main, sep, secrets = data.partition(SEPARATOR)
    MAIN.write_bytes(main)
    if sep:
        fd = os.open(SECRETS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets)
    elif SECRETS.exists():
        SECRETS.unlink()
    try:
        cfg = Config.load(MAIN)
    except ConfigError as e:
        assert e.errors and all(isinstance(m, str) and m for m in e.errors), e.errors
        return
    assert isinstance(cfg, Config)
    try:
        doc = ConfigDoc.load(MAIN)
    except TomlEditError as e:  # tomlkit is stricter than tomllib on a few corner cases
        assert "not valid TOML" in str(e), e
        return
    assert doc.validate() == cfg
