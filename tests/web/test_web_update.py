"""The system page's Update card: the upload (raw body from update.js, or the multipart form),
its CSRF and size checks, the hand-off files it leaves for root's service, the progress and
result it reads back from status.json, and the Pi 3's refusal."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Iterator

import pytest
from flask.testing import FlaskClient
from served import ServedUI
from webauth import csrf, login

from appliance.config import Config
from appliance.update import request as handoff
from appliance.update.status import Status
from appliance.web.app import create_app

RAW = {"Content-Type": "application/octet-stream", "X-File-Name": "faxbridge-2.0.0-arm64.raucb"}
XSS = "<script>alert(1)</script>"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    m = tmp_path / "model"
    m.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\x00")
    return m


@pytest.fixture
def client(config: Config, model: Path) -> FlaskClient:
    app = create_app(config)
    app.config["FAXBRIDGE_MODEL_PATHS"] = [model]
    c = app.test_client()
    login(c)
    return c


def udir(config: Config) -> Path:
    return Path(config.base_dir) / "update"


def write_status(config: Config, **kw: object) -> None:
    udir(config).mkdir(exist_ok=True)
    (udir(config) / "status.json").write_text(Status(**kw).to_json())  # type: ignore[arg-type]


def test_the_card_offers_the_upload(client: FlaskClient) -> None:
    body = client.get("/system").get_data(as_text=True)
    assert 'id="update"' in body and 'action="/system/update"' in body and 'name="bundle"' in body
    assert 'enctype="multipart/form-data"' in body and 'name="csrf_token"' in body
    assert "No update has been installed on this box yet." in body
    assert "update.js" in body


def test_a_raw_upload_needs_the_token_and_leaves_the_bundle_and_a_request(client: FlaskClient, config: Config) -> None:
    data = b"SIGNED 2.0.0\n" + os.urandom(300_000)
    r = client.post("/system/update", data=data, headers=RAW)
    assert r.status_code == 400 and not udir(config).exists()
    r = client.post("/system/update", data=data, headers={**RAW, "X-CSRF-Token": csrf(client)})
    assert r.status_code == 200 and r.get_json() == {"ok": True, "size": len(data),
                                                     "status_url": "/system/update/status"}
    assert (udir(config) / "bundle.raucb").read_bytes() == data
    req = json.loads((udir(config) / "request").read_text())
    assert req["bundle"] == "bundle.raucb" and req["by"] == "web"
    assert sorted(p.name for p in udir(config).iterdir()) == ["bundle.raucb", "request"]
    # one at a time: the first still waits for the installer
    r = client.post("/system/update", data=b"x", headers={**RAW, "X-CSRF-Token": csrf(client)})
    assert r.status_code == 409 and "waits for the installer" in r.get_json()["error"]
    s = client.get("/system/update/status").get_json()
    assert s["pending"] is True and s["busy"] is False


def test_the_multipart_form_works_without_javascript(client: FlaskClient, config: Config) -> None:
    data = b"SIGNED 2.0.0\n" + b"z" * 100_000
    r = client.post("/system/update", data={"csrf_token": csrf(client),
                                            "bundle": (io.BytesIO(data), "faxbridge-2.0.0-arm64.raucb")},
                    content_type="multipart/form-data")
    assert r.status_code == 302 and r.headers["Location"] == "/system#update"
    assert (udir(config) / "bundle.raucb").read_bytes() == data and (udir(config) / "request").exists()
    body = client.get("/system").get_data(as_text=True)
    assert "was received and is being installed" in body
    assert 'data-busy="yes"' in body and "Waiting for the installer" in body


def test_a_file_that_is_not_a_bundle_is_refused_on_the_page(client: FlaskClient, config: Config) -> None:
    r = client.post("/system/update", data={"csrf_token": csrf(client), "bundle": (io.BytesIO(b"x"), f"{XSS}.exe")},
                    content_type="multipart/form-data")
    body = r.get_data(as_text=True)
    assert r.status_code == 400 and "is not an update bundle" in body and 'id="update-errors"' in body
    assert XSS not in body and "&lt;script&gt;" in body
    r = client.post("/system/update", data={"csrf_token": csrf(client)}, content_type="multipart/form-data")
    assert r.status_code == 400 and "Choose the update file" in r.get_data(as_text=True)
    r = client.post("/system/update", data=b"", headers={**RAW, "X-CSRF-Token": csrf(client)})
    assert r.status_code == 400 and "empty" in r.get_json()["error"]
    assert not (udir(config) / "request").exists() and not (udir(config) / "bundle.raucb").exists()


def test_progress_and_the_last_result_come_from_status_json(client: FlaskClient, config: Config) -> None:
    write_status(config, phase="installing", percent=40, message="Copying image to rootfs.1", version="2.0.0")
    s = client.get("/system/update/status").get_json()
    assert (s["phase"], s["percent"], s["busy"], s["words"]) == ("installing", 40, True, "Installing")
    body = client.get("/system").get_data(as_text=True)
    assert 'value="40"' in body and "Copying image to rootfs.1" in body
    assert 'id="update-form" hidden' in body  # no second upload while one is under way
    assert 'data-busy="yes"' in body
    write_status(config, phase="rolled_back", version="2.0.0", error=f"after 300 s on trial: {XSS}")
    body = client.get("/system").get_data(as_text=True)
    assert "The update to version 2.0.0 was rolled back: after 300 s on trial: &lt;script&gt;" in body
    assert XSS not in body and 'data-busy="no"' in body
    s = client.get("/system/update/status").get_json()
    assert s["busy"] is False and s["result"].startswith("The update to version 2.0.0 was rolled back")
    write_status(config, phase="committed", version="2.0.0")
    assert "Updated to version 2.0.0." in client.get("/system").get_data(as_text=True)


def test_a_damaged_status_file_reads_as_no_update(client: FlaskClient, config: Config) -> None:
    udir(config).mkdir()
    (udir(config) / "status.json").write_text('{"phase": "installing", "percent": "lots"')
    assert "No update has been installed" in client.get("/system").get_data(as_text=True)
    (udir(config) / "status.json").write_text('{"phase": "pwned", "percent": 900, "message": 5}')
    s = client.get("/system/update/status").get_json()
    assert s["phase"] == "idle" and s["percent"] is None and s["message"] == ""


def test_a_pi_3_is_told_why_and_offered_no_form(client: FlaskClient, config: Config, model: Path) -> None:
    model.write_bytes(b"Raspberry Pi 3 Model B Rev 1.2\x00")
    body = client.get("/system").get_data(as_text=True)
    assert 'id="update-refused"' in body and "no &#39;tryboot&#39;" in body and 'name="bundle"' not in body
    r = client.post("/system/update", data=b"SIGNED", headers={**RAW, "X-CSRF-Token": csrf(client)})
    assert r.status_code == 409 and "Updates are not possible on this box" in r.get_json()["error"]
    assert not udir(config).exists()
    assert client.get("/system/update/status").get_json()["refused"].startswith("this Raspberry Pi 3")


def test_nobody_uploads_without_logging_in(config: Config) -> None:
    c = create_app(config).test_client()
    r = c.post("/system/update", data=b"x" * 100, headers={**RAW, "X-CSRF-Token": csrf(c)})
    assert r.status_code in (302, 401, 403) and not udir(config).exists()


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[ServedUI]:
    with ServedUI(tmp_path).start() as served:
        yield served


def test_the_server_takes_a_bundle_larger_than_other_uploads_and_no_more(ui: ServedUI) -> None:
    """Over real HTTP: a 3 MiB bundle is streamed to the data partition (other uploads stop at
    2 MiB); one announced above the bundle limit, or any large body before login, is refused from
    the headers without being read."""
    from appliance.web.auth import LOGGED_IN_MAX_BYTES

    r = ui.request("POST", "/system/update", None, {**RAW, "Content-Length": str(handoff.MAX_BUNDLE)}, timeout=10)
    assert r.status == 413 and "before login" in r.text
    ui.login()
    token = ui.csrf("/system")
    data = os.urandom(LOGGED_IN_MAX_BYTES + 1024 * 1024)
    r = ui.request("POST", "/system/update", data, {**RAW, "X-CSRF-Token": token})
    assert r.status == 200, r.text[:500]
    assert (ui.workdir / "update" / "bundle.raucb").read_bytes() == data
    (ui.workdir / "update" / "request").unlink()
    r = ui.request("POST", "/system/update", None,
                   {**RAW, "X-CSRF-Token": token, "Content-Length": str(handoff.MAX_BUNDLE + 1)}, timeout=10)
    assert r.status == 413  # cheroot itself, from the headers
    r = ui.request("POST", "/settings/restore", None, {"Content-Type": "multipart/form-data; boundary=x",
                                                       "Content-Length": str(LOGGED_IN_MAX_BYTES + 1),
                                                       "X-CSRF-Token": token}, timeout=10)
    assert r.status == 413
