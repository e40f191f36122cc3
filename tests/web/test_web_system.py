"""The system page: version, uptimes, the log (escaped), restart through the control socket, and a
diagnostics bundle without secrets."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from webfax import STANDARD, XSS, add_fax

from appliance.config import Config, SpoolConfig, SystemConfig
from appliance.logfile import log_path
from appliance.web.app import create_app
from tests.budgets import LOADED
from tests.control.harness import DaemonProcess, SpoolAppliance, serve_appliance
from webauth import csrf, login


@pytest.fixture
def config(tmp_path: Path, sockdir: Path) -> Config:
    return Config(spool=SpoolConfig(dir="spool"), system=SystemConfig(control_socket=str(sockdir / "fb.sock")),
                  base_dir=tmp_path)


def write_log(config: Config, lines: list[str]) -> None:
    p = log_path(config)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines) + "\n")


def test_system_page_shows_version_uptimes_and_the_escaped_log(client: FlaskClient, config: Config) -> None:
    write_log(config, [f"line {i}" for i in range(300)] + [f"call from {XSS}"])
    app = SpoolAppliance(config)
    try:
        with serve_appliance(config.path(config.system.control_socket), app):
            body = client.get("/system").get_data(as_text=True)
    finally:
        app.close()
    assert '<dd id="version">' in body and "running for" in body and f"process {os.getpid()}" in body
    assert "line 100\n" not in body and "line 101\n" in body and "line 299\n" in body  # the last 200
    assert XSS not in body and "call from &lt;script&gt;" in body
    assert 'name="csrf_token"' in body and 'action="/system/restart"' in body


def test_system_page_without_daemon(client: FlaskClient) -> None:
    body = client.get("/system").get_data(as_text=True)
    assert "not running" in body and "The log is empty" in body


def test_restart_needs_csrf_and_reaches_the_daemon(client: FlaskClient, config: Config) -> None:
    app = SpoolAppliance(config)
    try:
        with serve_appliance(config.path(config.system.control_socket), app) as server:
            assert client.post("/system/restart").status_code == 400  # no token
            assert not app.restart_requested.is_set()
            r = client.post("/system/restart", data={"csrf_token": csrf(client)})
            assert r.status_code == 302 and r.headers["Location"] == "/system"
            deadline = time.monotonic() + LOADED
            while not server.call(_is_set(app)) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert app.restart_requested.is_set()
            assert "is restarting" in client.get("/system").get_data(as_text=True)
    finally:
        app.close()


async def _is_set(app: SpoolAppliance) -> bool:
    return app.restart_requested.is_set()


def test_restart_without_daemon_says_why(client: FlaskClient) -> None:
    r = client.post("/system/restart", data={"csrf_token": csrf(client)}, follow_redirects=True)
    assert "The fax service could not be restarted: it is not running" in r.get_data(as_text=True)


def test_diagnostics_bundle_has_no_secrets(tmp_path: Path, sockdir: Path) -> None:
    (tmp_path / "faxbridge.toml").write_text(f"""
[spool]
dir = "spool"
[delivery]
backend = "smtp"
url = "smtp://mail.example.com:587"
username = "fax"
password = "inline-hunter2"
[[sip.registrations]]
name = "pbx"
registrar = "sip:pbx.example:5060"
user = "fax"
password = "reg-hunter2"
[system]
control_socket = "{sockdir / 'fb.sock'}"
""")
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[delivery]\npassword = "secret-hunter2"\n')
    os.chmod(secrets, 0o600)
    cfg = Config.load(tmp_path / "faxbridge.toml")
    assert cfg.delivery.password == "secret-hunter2"
    write_log(cfg, ["daemon started", "fax 1 received"])
    spool_app = SpoolAppliance(cfg)
    try:
        for i in range(25):
            add_fax(spool_app.spool, 1_700_000_000.0 + i * 60, dpis=[STANDARD], recipients=["a@example.com"],
                    result_code=0, result_text="OK", extra={"trace": [f"Rx DIS {i}"]})
        client = create_app(cfg).test_client()
        login(client)
        with serve_appliance(cfg.path(cfg.system.control_socket), spool_app):
            r = client.get("/system/diagnostics.tar.gz")
    finally:
        spool_app.close()
    assert r.status_code == 200 and r.mimetype == "application/gzip"
    assert "attachment" in r.headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(r.data), mode="r:gz") as tar:
        files = {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert set(files) == {"config.json", "log.txt", "status.json", "faxes.json", "versions.json"}
    everything = "".join(files.values())
    assert "hunter2" not in everything and '"password"' not in everything
    conf = json.loads(files["config.json"])["config"]
    assert conf["delivery"]["username"] == "fax" and conf["sip"]["registrations"][0]["user"] == "fax"
    assert "fax 1 received" in files["log.txt"]
    assert json.loads(files["status.json"])["ok"] is True
    faxes = json.loads(files["faxes.json"])
    assert len(faxes) == 20 and faxes[0]["extra"]["trace"] == ["Rx DIS 24"] and faxes[0]["result_text"] == "OK"
    assert faxes[0]["jobs"][0]["recipient"] == "a@example.com"
    versions = json.loads(files["versions.json"])
    assert versions["python"] and ("Flask" in versions["packages"] or "flask" in versions["packages"])


def test_pages_need_the_login(anon_client: FlaskClient) -> None:
    for url in ("/system", "/system/diagnostics.tar.gz"):
        assert anon_client.get(url).status_code in (302, 401)
    assert anon_client.post("/system/restart").status_code in (302, 400, 401)


@pytest.mark.slow
def test_restart_button_restarts_the_real_daemon(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path)
    d.start()
    try:
        before = d.client().request({"cmd": "status"})
        client = create_app(Config.load(d.config)).test_client()
        login(client)
        body = client.get("/system").get_data(as_text=True)
        assert f"process {before['pid']}" in body and "faxbridge.log" in body and "control socket on" in body
        client.post("/system/restart", data={"csrf_token": csrf(client)})
        after = d.wait_ready(not_started=before["started"])
        assert after["pid"] == before["pid"]
        assert "restarting:" in client.get("/system").get_data(as_text=True)
    finally:
        d.stop()
