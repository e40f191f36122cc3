"""The sealed backup file (``.fxbk``): a small header, then the contents under AES-256-GCM with a
key that scrypt derives from the owner's passphrase.  Bytes in, bytes out: no files, no clock.

Layout, version 1 (all integers big-endian)::

    magic    8  b"FXBK\\r\\n\\x1a\\n"  (PNG's trick: a text-mode copy that mangles line ends is caught)
    version  2  1
    kdf      1  1 = scrypt
    log2_n   1  scrypt N = 2**log2_n
    r        1  scrypt r
    p        1  scrypt p
    salt    16  random
    nonce   12  random (one key per file: the salt is new every time)
    check   16  bytes 32..47 of the scrypt output: tells a wrong passphrase from a damaged file
    length   4  bytes of ciphertext that follow (with the 16-byte GCM tag)
    ciphertext  AES-256-GCM(key = scrypt bytes 0..31, nonce, plaintext, aad = the 62 header bytes)
    digest  32  SHA-256 of everything before it: tells damage (a bad copy) from a wrong passphrase

Reading checks, in order, the cheap things first, and names the first problem: size, magic,
version, KDF parameters (bounded, so a crafted header cannot make the box spend gigabytes),
length (cut short, or bytes after the end), digest (damaged), then the one scrypt run: check
(wrong passphrase), tag (changed on purpose: the digest was recomputed, the tag cannot be).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"FXBK\r\n\x1a\n"
VERSION = 1
KDF_SCRYPT = 1
#: magic and version: what every version of the format starts with
PREFIX = struct.Struct(">8sH")
#: the whole version 1 header (the AAD)
HEADER = struct.Struct(">8sHBBBB16s12s16sI")
DIGEST_LEN = 32
TAG_LEN = 16
#: the largest file read at all: a backup of a configuration is a few KiB
MAX_FILE = 1024 * 1024
#: the smallest passphrase accepted for a new backup (the file may be kept anywhere: offline guessing)
MIN_PASSPHRASE = 12
MAX_PASSPHRASE = 1024


@dataclass(frozen=True)
class KdfParams:
    """scrypt's cost: 128 * r * 2**log2_n bytes of memory, about linear time in it."""

    log2_n: int = 15
    r: int = 8
    p: int = 1

    @property
    def memory(self) -> int:
        return 128 * self.r * (1 << self.log2_n)

    def problem(self) -> str | None:
        """Why a file's parameters are refused (bounds a crafted header cannot exceed), or None."""
        if not (10 <= self.log2_n <= 20 and 1 <= self.r <= 32 and 1 <= self.p <= 4):
            return f"N=2^{self.log2_n}, r={self.r}, p={self.p} are outside what this box reads"
        if self.memory > MAX_KDF_MEMORY:
            return f"it would need {self.memory >> 20} MiB to open, more than this box allows"
        return None


#: what new backups use: 32 MiB (decision 21: 62 ms on the development VM, under a second on a Pi 4)
DEFAULT_KDF = KdfParams()
#: the most memory a file's parameters may ask for when it is opened
MAX_KDF_MEMORY = 128 * 1024 * 1024


class BackupError(ValueError):
    """A file that cannot be opened; ``str()`` names the problem in the owner's words."""


class TooLarge(BackupError):
    pass


class NotABackup(BackupError):
    pass


class OtherVersion(BackupError):
    pass


class Truncated(BackupError):
    pass


class Damaged(BackupError):
    pass


class WrongPassphrase(BackupError):
    pass


class Altered(BackupError):
    pass


def passphrase_problem(passphrase: str, again: str | None = None) -> str | None:
    """Why a passphrase for a new backup is refused, or None."""
    if again is not None and passphrase != again:
        return "The two passphrases differ."
    if len(passphrase) < MIN_PASSPHRASE:
        return (
            f"The passphrase must have at least {MIN_PASSPHRASE} characters (a few words are easy to "
            "type and hard to guess)."
        )
    if len(passphrase) > MAX_PASSPHRASE:
        return f"The passphrase is too long (at most {MAX_PASSPHRASE} characters)."
    if len(set(passphrase)) < 5:
        return "The passphrase needs more different characters."
    return None


def _derive(passphrase: str, salt: bytes, params: KdfParams) -> tuple[bytes, bytes]:
    out = Scrypt(salt=salt, length=48, n=1 << params.log2_n, r=params.r, p=params.p).derive(passphrase.encode("utf-8"))
    return out[:32], out[32:]


def seal(
    plaintext: bytes,
    passphrase: str,
    params: KdfParams = DEFAULT_KDF,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """The sealed file for ``plaintext`` (salt and nonce random unless a test gives them)."""
    salt = os.urandom(16) if salt is None else salt
    nonce = os.urandom(12) if nonce is None else nonce
    assert len(salt) == 16 and len(nonce) == 12 and params.problem() is None
    key, check = _derive(passphrase, salt, params)
    header = HEADER.pack(
        MAGIC, VERSION, KDF_SCRYPT, params.log2_n, params.r, params.p, salt, nonce, check, len(plaintext) + TAG_LEN
    )
    body = header + AESGCM(key).encrypt(nonce, plaintext, header)
    if len(body) + DIGEST_LEN > MAX_FILE:
        raise ValueError(f"the backup would be larger than {MAX_FILE // 1024} KiB")
    return body + hashlib.sha256(body).digest()


@dataclass(frozen=True)
class Sealed:
    """A file whose structure and digest are right; only the passphrase can open it."""

    params: KdfParams
    salt: bytes
    nonce: bytes
    check: bytes
    header: bytes
    ciphertext: bytes


def looks_sealed(data: bytes) -> bool:
    """Whether ``data`` starts like a backup file (of any version)."""
    return data.startswith(MAGIC)


def parse(data: bytes) -> Sealed:
    """Every check that needs no passphrase; the first problem as a BackupError."""
    if len(data) > MAX_FILE:
        raise TooLarge(f"larger than {MAX_FILE // 1024} KiB: a Faxbridge backup is a few KiB, so this is not one")
    if not data.startswith(MAGIC[: len(data)]) or not data:
        raise NotABackup("not a Faxbridge backup (.fxbk file): it does not start like one")
    if len(data) < PREFIX.size:
        raise Truncated(f"cut short: only {len(data)} bytes; copy the whole file again")
    _, version = PREFIX.unpack_from(data)
    if version != VERSION:
        newer = " (made by a newer Faxbridge: update this box first)" if version > VERSION else ""
        raise OtherVersion(f"a backup in format {version}; this Faxbridge reads format {VERSION}{newer}")
    if len(data) < HEADER.size + DIGEST_LEN:
        raise Truncated(f"cut short: only {len(data)} bytes; copy the whole file again")
    _, _, kdf, log2_n, r, p, salt, nonce, check, length = HEADER.unpack_from(data)
    if kdf != KDF_SCRYPT:
        raise OtherVersion(f"its key derivation (number {kdf}) is not one this Faxbridge knows")
    params = KdfParams(log2_n, r, p)
    problem = params.problem()
    if problem:
        raise OtherVersion(f"its key derivation parameters are not ones this Faxbridge uses: {problem}")
    if length < TAG_LEN:
        raise Damaged("damaged: its header is not consistent; use another copy")
    expected = HEADER.size + length + DIGEST_LEN
    if len(data) < expected:
        raise Truncated(f"cut short: it has {len(data)} bytes of {expected}; copy the whole file again")
    if len(data) > expected:
        raise Damaged(f"damaged: {len(data) - expected} bytes after the end of the backup; use another copy")
    body, digest = data[:-DIGEST_LEN], data[-DIGEST_LEN:]
    if not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
        raise Damaged("damaged: its checksum does not match (a copy went wrong?); use another copy")
    return Sealed(params, salt, nonce, check, data[: HEADER.size], body[HEADER.size :])


def open_sealed(sealed: Sealed, passphrase: str) -> bytes:
    """The plaintext; WrongPassphrase or Altered (one scrypt run: the caller bounds how many at once)."""
    key, check = _derive(passphrase, sealed.salt, sealed.params)
    if not hmac.compare_digest(check, sealed.check):
        raise WrongPassphrase("the passphrase is wrong (or this backup was made with another one)")
    try:
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, sealed.header)
    except InvalidTag:
        raise Altered(
            "the file was changed after it was made (it does not authenticate); use an untouched copy"
        ) from None


def unseal(data: bytes, passphrase: str) -> bytes:
    """``parse`` then ``open_sealed``."""
    return open_sealed(parse(data), passphrase)
