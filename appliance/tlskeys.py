"""Private keys with a passphrase: refused, never prompted for.

``ssl.SSLContext.load_cert_chain`` without a password lets OpenSSL ask for the passphrase on the
terminal (or stdin, without one), and the process waits there for ever: a web worker after an
upload, the web process or a delivery under ``make run``. A headless box has nobody to type it,
so every key is loaded with ``password=refuse_passphrase``, which OpenSSL calls only for an
encrypted key.
"""

from __future__ import annotations


#: what an upload form answers, and what a key file named in the configuration gets
UPLOAD_ADVICE = ("the key is encrypted: upload it without a passphrase "
                 "(openssl pkey -in key.pem -out plain-key.pem removes it)")
FILE_ADVICE = ("the key is encrypted, and the box has nobody to type its passphrase: save it without one "
               "(openssl pkey -in key.pem -out plain-key.pem)")


class EncryptedKey(ValueError):
    """The private key is protected by a passphrase; str() says what to do about a key file."""


def refuse_passphrase() -> bytes:
    """Password callback for ``load_cert_chain``: raises EncryptedKey instead of prompting."""
    raise EncryptedKey(FILE_ADVICE)
