"""The settings pages' form parsing (appliance/web/forms.py, settings_fields.py, tomledit.py), without HTTP.

Input: a POSTed form body (application/x-www-form-urlencoded, parsed by werkzeug as the page
would) holding any of the settings pages' fields and entry rows (peers, registrations, routing
rules).  It is applied to the box's configuration document exactly as the pages do.  Contract:
applying never raises (bad values become errors naming the key, shown beside the form, which
must render too); a result without errors either fails validation with ConfigError or is
written as files the daemon loads to exactly the validated Config.
"""
from __future__ import annotations

import io
import os

import tomlkit
from werkzeug.wrappers import Request

from appliance.config import Config, ConfigError
from appliance.web.forms import apply_entries, apply_fields, form_values, submitted_rows
from appliance.web.settings_fields import (DELIVERY_FIELDS, MODEM_FIELDS, PEERS, REGISTRATIONS, ROUTING_FIELDS,
                                           RULES, SIP_FIELDS, SYSTEM_FIELDS)
from appliance.web.tomledit import ConfigDoc
from tests.fuzz.targets import scratch
from tests.fuzz.targets.config_restore import BEFORE_MAIN, BEFORE_SECRETS

MAX_LEN = 4096
DICTS = ("web", "_text")
_DIR = scratch("fuzz-settings-")
MAIN, SECRETS = _DIR / "faxbridge.toml", _DIR / "secrets.toml"
FIELDS = SYSTEM_FIELDS + SIP_FIELDS + MODEM_FIELDS + ROUTING_FIELDS + DELIVERY_FIELDS
SPECS = (PEERS, REGISTRATIONS, RULES)


def _form(data: bytes):  # type: ignore[no-untyped-def]
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/x-www-form-urlencoded",
               "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data), "QUERY_STRING": "",
               "SERVER_NAME": "fax.example", "SERVER_PORT": "443", "wsgi.url_scheme": "https"}
    return Request(environ).form


def TestOneInput(data: bytes) -> None:
    form = _form(data)
    doc = ConfigDoc(MAIN, tomlkit.parse(BEFORE_MAIN), tomlkit.parse(BEFORE_SECRETS), exists=True)
    errors: list[str] = []
    apply_fields(doc, FIELDS, form, errors)
    for spec in SPECS:
        apply_entries(doc, spec, form, errors)
    if errors:
        assert all(isinstance(e, str) and ": " in e for e in errors), errors
        form_values(FIELDS, form)
        for spec in SPECS:
            submitted_rows(spec, form, doc)
        return
    try:
        cfg = doc.validate()
    except ConfigError as e:
        assert e.errors
        return
    MAIN.write_text(doc.main_text(), encoding="utf-8")
    fd = os.open(SECRETS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(tomlkit.dumps(doc.secrets))
    loaded = Config.load(MAIN)
    assert loaded == cfg, (doc.main_text(), loaded, cfg)
