"""Settings for the lines: detected serial devices, and the SIP TLS certificate upload."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import trustme
from webauth import csrf, login

from appliance.config import Config
from appliance.web.app import create_app
from appliance.web.modems import detected_modems


def test_detected_modems_prefer_stable_names_and_list_the_rest(tmp_path: Path) -> None:
    (tmp_path / "serial" / "by-id").mkdir(parents=True)
    for node in ("ttyUSB0", "ttyACM1", "ttyS0"):
        (tmp_path / node).touch()
    os.symlink("../../ttyUSB0", tmp_path / "serial" / "by-id" / "usb-USRobotics_5637-if00")
    found = detected_modems(tmp_path)
    assert [(d["name"], Path(d["node"]).name) for d in found] == [
        ("usb-USRobotics_5637-if00", "ttyUSB0"), ("ttyACM1", "ttyACM1")]  # ttyUSB0 once, ttyS0 not a USB modem


def test_modem_page_lists_what_is_plugged_in(tmp_path: Path, monkeypatch) -> None:
    import appliance.web.modems as modems

    (tmp_path / "ttyACM0").touch()
    monkeypatch.setattr(modems, "DEV", tmp_path)
    client = create_app(Config(base_dir=tmp_path)).test_client()
    login(client)
    page = client.get("/settings/modem").get_data(as_text=True)
    assert str(tmp_path / "ttyACM0") in page and ">Probe</button>" in page


def _pem_pair(tmp_path: Path) -> tuple[bytes, bytes]:
    ca = trustme.CA()
    cert = ca.issue_cert("fax.example.com")
    return cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes()


def test_certificate_upload_is_checked_stored_privately_and_configured(tmp_path: Path) -> None:
    box = tmp_path / "faxbridge.toml"
    box.write_text('# mine\n[sip]\nlisten = ["udp:127.0.0.1:5060"]\n')
    client = create_app(Config.load(box)).test_client()
    login(client)
    cert, key = _pem_pair(tmp_path)
    other_key = _pem_pair(tmp_path)[1]

    r = client.post("/settings/sip/certificate", content_type="multipart/form-data", data={
        "csrf_token": csrf(client), "cert": (io.BytesIO(cert), "cert.pem"), "key": (io.BytesIO(other_key), "key.pem")})
    assert r.status_code == 302
    page = client.get("/settings/sip").get_data(as_text=True)
    assert "Not stored: the key does not belong to the certificate" in page
    assert "tls_cert" not in box.read_text()

    r = client.post("/settings/sip/certificate", content_type="multipart/form-data", data={
        "csrf_token": csrf(client), "cert": (io.BytesIO(cert), "cert.pem"), "key": (io.BytesIO(key), "key.pem")})
    assert r.status_code == 302
    cfg = Config.load(box)
    key_file = Path(cfg.sip.tls_key)
    assert key_file.read_bytes() == key and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Path(cfg.sip.tls_cert).read_bytes() == cert
    assert key_file.parent == (tmp_path / "web" / "tls").resolve()  # web.state_dir, in the state directory
    assert box.read_text().startswith("# mine\n")
    assert key.decode() not in client.get("/settings/sip").get_data(as_text=True)
