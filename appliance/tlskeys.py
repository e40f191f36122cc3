"""Certificates and private keys: keys with a passphrase refused, never prompted for, and the
one check of an uploaded certificate and key (``pair_problem``).

``ssl.SSLContext.load_cert_chain`` without a password lets OpenSSL ask for the passphrase on the
terminal (or stdin, without one), and the process waits there for ever: a web worker after an
upload, the web process or a delivery under ``make run``. A headless box has nobody to type it,
so every key is loaded with ``password=refuse_passphrase``, which OpenSSL calls only for an
encrypted key.

Every upload (the web UI's own certificate, the SIP listener's, a restored backup's) is checked
by ``pair_problem`` before it is stored: with the certificate's and key's own facts for the
owner's words, then through the loader the listeners use, so a pair that passes also loads.
"""

from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path

#: what an upload form answers, and what a key file named in the configuration gets
UPLOAD_ADVICE = (
    "the key is encrypted: upload it without a passphrase (openssl pkey -in key.pem -out plain-key.pem removes it)"
)
FILE_ADVICE = (
    "the key is encrypted, and the box has nobody to type its passphrase: save it without one "
    "(openssl pkey -in key.pem -out plain-key.pem)"
)


class EncryptedKey(ValueError):
    """The private key is protected by a passphrase; str() says what to do about a key file."""


def refuse_passphrase() -> bytes:
    """Password callback for ``load_cert_chain``: raises EncryptedKey instead of prompting."""
    raise EncryptedKey(FILE_ADVICE)


def load_chain(ctx: ssl.SSLContext, cert: str | Path, key: str | Path | None) -> None:
    """``ctx.load_cert_chain`` as every TLS end of the box loads its certificate: an encrypted key
    raises EncryptedKey instead of OpenSSL asking a terminal nobody watches."""
    ctx.load_cert_chain(cert, key or None, password=refuse_passphrase)


def pair_problem(cert_pem: bytes, key_pem: bytes, *, refuse_expired: bool = True) -> str | None:
    """Why this certificate (chain, leaf first) and private key cannot serve TLS together, or None.
    ``refuse_expired=False``: the SIP listener's pair, which peers may accept past its date."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        cert_pem.decode("ascii"), key_pem.decode("ascii")
    except UnicodeDecodeError:
        return "both files must be PEM text"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "the certificate is not a PEM certificate"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        return UPLOAD_ADVICE
    except (ValueError, UnsupportedAlgorithm):
        return "the key is not a PEM private key"
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(serialization.Encoding.PEM, pub) != key.public_key().public_bytes(
        serialization.Encoding.PEM, pub
    ):
        return "the key does not belong to the certificate"
    if refuse_expired and cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        return "the certificate has expired"
    with tempfile.TemporaryDirectory() as d:
        c, k = Path(d) / "c.pem", Path(d) / "k.pem"
        c.write_bytes(cert_pem)
        k.write_bytes(key_pem)
        try:
            load_chain(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), c, k)
        except EncryptedKey:
            return UPLOAD_ADVICE
        except ssl.SSLError as e:
            return f"the certificate and key do not load together ({e.reason or e})"
    return None
