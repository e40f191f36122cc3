"""A TLS client key with a passphrase (a certificate-matched relay connector) is refused with
words, never prompted for: `faxbridge test-delivery` with no terminal and an open stdin pipe
answers at once instead of waiting for a passphrase nobody types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

from tests.conftest import free_port
from tests.budgets import LOADED

REPO = Path(__file__).resolve().parents[2]
#: a real hang shows as this timeout; the answer comes in a second or two
PATIENCE = LOADED


def test_an_encrypted_client_key_is_refused_not_prompted_for(tmp_path: Path) -> None:
    leaf = trustme.CA().issue_cert("fax.example.test")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    (tmp_path / "client.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    (tmp_path / "client.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"a passphrase")))
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text(f'[delivery]\nbackend = "smtp"\nurl = "smtp://127.0.0.1:{free_port("tcp")}"\n'
                   'from = "fax@example.com"\ntls_client_cert = "client.pem"\ntls_client_key = "client.key"\n'
                   '[routing]\ndefault = "faxes@example.com"\n')
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "test-delivery", "--config", str(cfg)], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        proc.wait(PATIENCE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still waiting after {PATIENCE} s: {proc.stdout.read().decode()[-500:]}")  # type: ignore[union-attr]
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
    out = proc.stdout.read().decode()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    assert proc.returncode == 1, out
    assert "FAILED: delivery.tls_client_key client.key: the key is encrypted" in out and "openssl pkey" in out, out
