"""The settings pages refuse a half-written mail address with the loader's own reason (one rule for
the web UI, check-config and the CLI) and write nothing."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from webauth import csrf


BOX_TOML = """[spool]
dir = "spool"

[routing]
default = "faxes@example.com"
"""


@pytest.mark.parametrize("url,form,value", [
    ("/settings/system", {"system.hostname": "", "system.timezone": "", "system.retention_days": "0",
                          "delivery.admin": "admin@"}, "admin@"),
    ("/settings/routing", {"routing.default": "sales@", "routing.called": "", "rules-count": "0"}, "sales@"),
])
def test_half_an_address_is_refused_with_the_reason(web: FlaskClient, box: Path, url: str, form: dict,
                                                    value: str) -> None:
    r = web.post(url, data={"csrf_token": csrf(web), **form})
    page = html.unescape(r.get_data(as_text=True))
    assert r.status_code == 400
    assert f"'{value}' is not a mail address: there must be something after the @-sign" in page
    assert box.read_text() == BOX_TOML
