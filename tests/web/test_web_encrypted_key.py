"""A private key with a passphrase is refused with words, never prompted for: OpenSSL would ask on
the terminal (or read stdin without one) and the web process would wait there for ever. Each
process here has no controlling terminal and a stdin pipe that stays open, with a timeout."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient
from served import REPO, ServedUI
from webauth import csrf

from appliance.config import Config
from tests.conftest import free_port
from tests.budgets import LOADED

#: a real hang shows as this timeout; an answer comes in well under a second
PATIENCE = LOADED


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    """A certificate and its key, encrypted with a passphrase."""
    leaf = trustme.CA().issue_cert("fax.example.test", "127.0.0.1")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"a passphrase"))
    return leaf.cert_chain_pems[0].bytes(), encrypted


def test_the_sip_certificate_upload_refuses_an_encrypted_key(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    cert, encrypted = pair
    with ServedUI(tmp_path).start(stdin=subprocess.PIPE) as ui:
        ui.login()
        r = ui.post_files("/settings/sip/certificate", {"csrf_token": ui.csrf("/settings/sip")},
                          {"cert": ("cert.pem", cert), "key": ("key.pem", encrypted)}, timeout=PATIENCE)
        assert r.status == 302
        page = ui.request("GET", "/settings/sip").text
        assert "Not stored: the key is encrypted: upload it without a passphrase" in page
        assert "openssl pkey" in page
        assert "tls_key" not in ui.config.read_text()
        assert ui.proc.poll() is None  # type: ignore[union-attr]


def test_the_https_certificate_upload_names_an_encrypted_key(client: FlaskClient, config: Config,
                                                             pair: tuple[bytes, bytes]) -> None:
    cert, encrypted = pair
    r = client.post("/account/certificate", content_type="multipart/form-data",
                    data={"csrf_token": csrf(client), "cert": (io.BytesIO(cert), "c.pem"),
                          "key": (io.BytesIO(encrypted), "k.pem")})
    assert r.status_code == 400
    assert "Not installed: the key is encrypted: upload it without a passphrase" in r.get_data(as_text=True)
    assert not (config.path(config.web.state_dir) / "tls" / "owner-key.pem").exists()


def test_the_web_process_with_an_encrypted_key_file_stops_with_the_reason(
        tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    cert, encrypted = pair
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(encrypted)
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text(f'[spool]\ndir = "spool"\n[web]\nlisten = "127.0.0.1:{free_port("tcp")}"\n'
                   'cert_file = "cert.pem"\nkey_file = "key.pem"\n')
    for cmd in (["-m", "appliance", "web", "--config", str(cfg)], ["-m", "appliance.web", "-c", str(cfg)]):
        proc = subprocess.Popen([sys.executable, *cmd], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            proc.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{cmd}: still waiting after {PATIENCE} s: {proc.stderr.read().decode()[-500:]}")
        finally:
            proc.stdin.close()  # type: ignore[union-attr]
        err = proc.stderr.read().decode()  # type: ignore[union-attr]
        proc.stdout.close(), proc.stderr.close()  # type: ignore[union-attr,func-returns-value]
        assert proc.returncode == 1, err
        assert f"web.key_file {tmp_path / 'key.pem'}: the key is encrypted" in err and "Traceback" not in err, err
