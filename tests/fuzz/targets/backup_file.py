"""An uploaded backup file (appliance/backup/fileformat.py ``parse``, ``open_sealed``;
appliance/backup/contents.py ``Contents.from_bytes``).

Input: the file's bytes.  They go through both layers: the sealed file as uploaded (with the
passphrase the seeds were made with, so a seed that survives the checks reaches scrypt and GCM),
and, since no mutation gets past AES-GCM, the same bytes as the plaintext inside one.
Contract: ``parse`` raises only BackupError (a subclass, with a message) or returns a Sealed whose
parameters are within bounds; opening raises only WrongPassphrase or Altered; ``from_bytes``
raises only ContentError or returns contents whose files are the known ones, text within bounds,
with the configuration, certificates with their keys, and which write back to themselves.
"""
from __future__ import annotations

from appliance.backup import fileformat as ff
from appliance.backup.contents import FILES, MAX_TEXT, PAIRS, ContentError, Contents

MAX_LEN = 16384
DICTS = ("backup", "_text")
#: the seeds' passphrase (tests/fuzz/seeds.py backup_files)
PASSPHRASE = "fuzzing passphrase 1"


def _check_contents(c: Contents) -> None:
    assert set(c.files) <= set(FILES) and "faxbridge.toml" in c.files
    assert all(isinstance(t, str) and len(t) <= MAX_TEXT for t in c.files.values())
    assert all((a in c.files) == (b in c.files) for a, b in PAIRS)
    again = Contents.from_bytes(c.to_bytes())
    assert again.files == c.files and again.hostname == c.hostname


def TestOneInput(data: bytes) -> None:
    try:
        sealed = ff.parse(data)
    except ff.BackupError as e:
        assert str(e)
    else:
        assert sealed.params.problem() is None and len(sealed.ciphertext) >= ff.TAG_LEN
        try:
            plain = ff.open_sealed(sealed, PASSPHRASE)
        except (ff.WrongPassphrase, ff.Altered) as e:
            assert str(e)
        else:
            try:
                _check_contents(Contents.from_bytes(plain))
            except ContentError:
                pass
    try:
        contents = Contents.from_bytes(data)
    except ContentError as e:
        assert str(e)
    else:
        _check_contents(contents)
