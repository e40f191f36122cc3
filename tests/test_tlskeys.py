"""The one check of an uploaded certificate and key, and the one way a TLS end loads its pair."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.sip.tls import TlsSettings
from appliance.tlskeys import FILE_ADVICE, UPLOAD_ADVICE, EncryptedKey, pair_problem


@pytest.fixture(scope="module")
def leaf() -> trustme.LeafCert:
    return trustme.CA().create_child_ca().issue_cert("fax.example.test")


def _encrypted(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"a passphrase"))


def _expired() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old.example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_a_chain_and_its_key_pass(leaf: trustme.LeafCert) -> None:
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)  # leaf first, then the intermediate
    assert pair_problem(chain, leaf.private_key_pem.bytes()) is None


def test_each_problem_is_named(leaf: trustme.LeafCert) -> None:
    cert, key = leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()
    other = trustme.CA().issue_cert("other.example.test").private_key_pem.bytes()
    assert pair_problem(cert + "é".encode(), key) == "both files must be PEM text"
    assert pair_problem(b"garbage", key) == "the certificate is not a PEM certificate"
    assert pair_problem(cert, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n") == \
        "the key is not a PEM private key"
    assert pair_problem(cert, _encrypted(key)) == UPLOAD_ADVICE
    assert pair_problem(cert, other) == "the key does not belong to the certificate"


def test_an_expired_certificate_is_refused_unless_asked_not_to() -> None:
    cert, key = _expired()
    assert pair_problem(cert, key) == "the certificate has expired"
    assert pair_problem(cert, key, refuse_expired=False) is None


def test_the_sip_listener_refuses_an_encrypted_key_instead_of_prompting(leaf: trustme.LeafCert,
                                                                         tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    (tmp_path / "key.pem").write_bytes(_encrypted(leaf.private_key_pem.bytes()))
    tls = TlsSettings(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    for make in (tls.server_context, tls.client_context):
        with pytest.raises(EncryptedKey, match="nobody to type its passphrase") as e:
            make()
        assert str(e.value) == FILE_ADVICE
