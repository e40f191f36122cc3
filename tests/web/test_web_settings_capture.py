"""Media capture is a per-peer setting, off unless the owner switches it on on the SIP settings
page: through the real form into the real file, and back."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from webauth import csrf

from appliance.config import Config, ConfigError

BOX_TOML = """[spool]
dir = "spool"

[routing]
default = "faxes@contoso.com"

[[sip.peers]]
name = "ht802"
match = "192.0.2.20"
"""


def _sip(**over: str) -> dict[str, str]:
    form = {"sip.listen": "udp:127.0.0.1:5060", "sip.public_address": "", "sip.rtp_ports": "40000-40999",
            "sip.tls_cert": "", "sip.tls_key": "", "sip.tls_ca": "", "peers-count": "2",
            "peers-0-_origin": "0", "peers-0-name": "ht802", "peers-0-match": "192.0.2.20", "peers-0-transport": "",
            "peers-0-t38": "accept", "peers-0-username": "", "peers-0-t38_max_datagram": "0",
            "peers-0-exchange_um-shown": "1", "peers-0-capture-shown": "1",
            "peers-1-_origin": "", "peers-1-name": "", "peers-1-match": "", "peers-1-transport": "",
            "peers-1-t38": "accept", "peers-1-username": "", "peers-1-t38_max_datagram": "0",
            "peers-1-exchange_um-shown": "1", "peers-1-capture-shown": "1", "regs-count": "0"}
    form.update(over)
    return form


def test_capture_is_off_by_default_and_switched_per_peer(web: FlaskClient, box: Path) -> None:
    assert [p.capture for p in Config.load(box).sip.peers] == [False]
    page = web.get("/settings/sip").get_data(as_text=True)
    assert 'name="peers-0-capture-shown"' in page and "Record call media" in page
    assert "Download call diagnostics" in page  # the help says where the capture ends up
    assert 'name="peers-0-capture" value="1" checked' not in page
    r = web.post("/settings/sip", data={"csrf_token": csrf(web), **_sip(**{
        "peers-0-capture": "1", "peers-1-name": "pbx", "peers-1-match": "192.0.2.30"})})
    assert r.status_code == 302, r.get_data(as_text=True)
    assert [(p.name, p.capture) for p in Config.load(box).sip.peers] == [("ht802", True), ("pbx", False)]
    assert "capture = true" in box.read_text() and box.read_text().count("capture") == 1
    assert 'name="peers-0-capture" value="1" checked' in web.get("/settings/sip").get_data(as_text=True)
    # unchecked again: off
    r = web.post("/settings/sip", data={"csrf_token": csrf(web), **_sip(**{
        "peers-count": "3", "peers-1-_origin": "1", "peers-1-name": "pbx", "peers-1-match": "192.0.2.30",
        "peers-2-_origin": "", "peers-2-t38": "accept", "peers-2-t38_max_datagram": "0"})})
    assert r.status_code == 302, r.get_data(as_text=True)
    assert [p.capture for p in Config.load(box).sip.peers] == [False, False]


def test_capture_in_the_file_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "faxbridge.toml"
    path.write_text(BOX_TOML + 'capture = "yes"\n')
    with pytest.raises(ConfigError) as e:
        Config.load(path)
    assert any("capture" in err for err in e.value.errors)
