"""The sealed backup file (appliance/backup/fileformat.py): round trip, every way a file can be
wrong (each with its own message, before or after the one scrypt run), and the KDF's bounds."""

from __future__ import annotations

import hashlib
import struct

import pytest

from appliance.backup import fileformat as ff
from appliance.backup.fileformat import (HEADER, MAGIC, Altered, Damaged, KdfParams, NotABackup, OtherVersion,
                                         TooLarge, Truncated, WrongPassphrase, parse, seal, unseal)

#: cheap parameters for tests (the real ones are DEFAULT_KDF; the reader accepts both)
FAST = KdfParams(log2_n=10, r=8, p=1)
PASS = "correct horse battery"
TEXT = b'{"format": "faxbridge-backup"}'


@pytest.fixture(scope="module")
def sealed() -> bytes:
    return seal(TEXT, PASS, FAST)


def _redigest(body: bytes) -> bytes:
    """What someone who edits the file on purpose does: the checksum made to match again."""
    return body + hashlib.sha256(body).digest()


def test_round_trip(sealed: bytes) -> None:
    assert unseal(sealed, PASS) == TEXT
    assert sealed.startswith(MAGIC)
    assert len(sealed) == HEADER.size + len(TEXT) + 16 + 32


def test_each_file_has_its_own_salt_and_nonce() -> None:
    a, b = seal(TEXT, PASS, FAST), seal(TEXT, PASS, FAST)
    assert a[HEADER.size:] != b[HEADER.size:] and a[14:42] != b[14:42]


def test_the_default_parameters_are_what_the_decision_says() -> None:
    assert ff.DEFAULT_KDF == KdfParams(15, 8, 1) and ff.DEFAULT_KDF.memory == 32 * 1024 * 1024
    assert ff.DEFAULT_KDF.problem() is None


def test_wrong_passphrase(sealed: bytes) -> None:
    with pytest.raises(WrongPassphrase, match="passphrase is wrong"):
        unseal(sealed, PASS + "!")


@pytest.mark.parametrize("cut", [1, 16, 17, 100])
def test_a_file_cut_short_says_so(sealed: bytes, cut: int) -> None:
    with pytest.raises(Truncated, match="cut short"):
        parse(sealed[:-cut])


@pytest.mark.parametrize("n", [1, 5, 9, 40])
def test_the_first_bytes_alone_are_cut_short(sealed: bytes, n: int) -> None:
    with pytest.raises(Truncated):
        parse(sealed[:n])


def test_bytes_after_the_end(sealed: bytes) -> None:
    with pytest.raises(Damaged, match="after the end"):
        parse(sealed + b"\n")


@pytest.mark.parametrize("where", ["salt", "nonce", "check", "ciphertext", "tag", "digest"])
def test_one_flipped_bit_anywhere_is_damage(sealed: bytes, where: str) -> None:
    at = {"salt": 14, "nonce": 30, "check": 42, "ciphertext": HEADER.size + 3, "tag": len(sealed) - 40,
          "digest": len(sealed) - 1}[where]
    bad = bytearray(sealed)
    bad[at] ^= 0x01
    with pytest.raises(Damaged, match="checksum"):
        unseal(bytes(bad), PASS)


@pytest.mark.parametrize("where", ["ciphertext", "tag", "nonce"])
def test_a_change_with_the_checksum_remade_does_not_authenticate(sealed: bytes, where: str) -> None:
    at = {"ciphertext": HEADER.size, "tag": len(sealed) - 33, "nonce": 30}[where]
    bad = bytearray(sealed[:-32])
    bad[at] ^= 0x80
    with pytest.raises(Altered, match="changed after it was made"):
        unseal(_redigest(bytes(bad)), PASS)


def test_the_header_is_authenticated_too(sealed: bytes) -> None:
    """Every header field is either in the key (salt, KDF), compared (check, length) or bounded
    (magic, version), so no edit of one reaches GCM alone; the header is its AAD all the same,
    so a header that differs in any byte (here the version, past ``parse``) does not open."""
    import dataclasses

    good = parse(sealed)
    header = bytearray(good.header)
    header[9] ^= 0x02
    with pytest.raises(Altered):
        ff.open_sealed(dataclasses.replace(good, header=bytes(header)), PASS)
    assert ff.open_sealed(good, PASS) == TEXT


def test_another_salt_reads_as_a_wrong_passphrase(sealed: bytes) -> None:
    body = bytearray(sealed[:-32])
    body[20] ^= 1  # the salt: another key, so the check value no longer matches
    with pytest.raises(WrongPassphrase):
        unseal(_redigest(bytes(body)), PASS)


@pytest.mark.parametrize("version, newer", [(2, True), (0, False), (0x0100, True)])
def test_another_version_is_named(sealed: bytes, version: int, newer: bool) -> None:
    body = bytearray(sealed[:-32])
    struct.pack_into(">H", body, 8, version)
    with pytest.raises(OtherVersion, match=f"format {version};") as e:
        parse(_redigest(bytes(body)))
    assert ("newer Faxbridge" in str(e.value)) is newer


def test_a_future_version_is_named_even_when_its_header_is_shorter() -> None:
    with pytest.raises(OtherVersion, match="format 7"):
        parse(MAGIC + b"\x00\x07")


@pytest.mark.parametrize("log2_n, r, p, what", [(30, 8, 1, "outside"), (9, 8, 1, "outside"), (15, 0, 1, "outside"),
                                                (15, 8, 9, "outside"), (20, 8, 1, "MiB")])
def test_kdf_parameters_a_crafted_header_could_abuse_are_refused_before_scrypt(
        sealed: bytes, log2_n: int, r: int, p: int, what: str) -> None:
    body = bytearray(sealed[:-32])
    body[11:14] = bytes([log2_n, r, p])
    with pytest.raises(OtherVersion, match=what):
        parse(_redigest(bytes(body)))


def test_an_unknown_kdf(sealed: bytes) -> None:
    body = bytearray(sealed[:-32])
    body[10] = 2
    with pytest.raises(OtherVersion, match="key derivation"):
        parse(_redigest(bytes(body)))


@pytest.mark.parametrize("data", [b"", b"[web]\nlisten = 1\n", b"\x89PNG\r\n\x1a\n" + bytes(100), b"FXBK\n\n"])
def test_not_a_backup(data: bytes) -> None:
    with pytest.raises(NotABackup):
        parse(data)


def test_a_huge_file_is_refused_unread(sealed: bytes) -> None:
    with pytest.raises(TooLarge, match="1024 KiB"):
        parse(sealed + bytes(ff.MAX_FILE))


def test_passphrase_rules() -> None:
    assert ff.passphrase_problem("short") is not None and "12 characters" in str(ff.passphrase_problem("short"))
    assert ff.passphrase_problem("aaaaaaaaaaaaaaaa") == "The passphrase needs more different characters."
    assert ff.passphrase_problem(PASS, PASS + "x") == "The two passphrases differ."
    assert ff.passphrase_problem(PASS, PASS) is None


def test_the_documented_layout_opens_without_this_module(sealed: bytes) -> None:
    """A recovery script needs only Python's hashlib and an AES-GCM: the layout in the docstring
    and decision 21 is the whole format."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    magic, version, kdf, log2_n, r, p, salt, nonce, check, length = struct.unpack(">8sHBBBB16s12s16sI",
                                                                                  sealed[:62])
    assert (magic, version, kdf) == (b"FXBK\r\n\x1a\n", 1, 1)
    out = hashlib.scrypt(PASS.encode(), salt=salt, n=1 << log2_n, r=r, p=p, dklen=48, maxmem=64 << 20)
    assert out[32:] == check
    assert hashlib.sha256(sealed[:-32]).digest() == sealed[-32:]
    assert AESGCM(out[:32]).decrypt(nonce, sealed[62:62 + length], sealed[:62]) == TEXT
