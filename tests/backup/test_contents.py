"""What a backup may hold (appliance/backup/contents.py): only the known files, as text, with the
configuration and certificates with their keys, so a restore can only write those places."""

from __future__ import annotations

import json

import pytest

from appliance.backup.contents import FILES, ContentError, Contents

MAIN = '[routing]\ndefault = "faxes@example.com"\n'


def _raw(files: object, **meta: object) -> bytes:
    return json.dumps({"format": "faxbridge-backup", "files": files, **meta}).encode()


def test_round_trip_and_words() -> None:
    c = Contents({"faxbridge.toml": MAIN, "secrets.toml": "", "tls/sip-cert.pem": "c", "tls/sip-key.pem": "k"},
                 hostname="frontdesk", created="2026-12-07T17:00:00+00:00", made_by="faxbridge 0.1.0")
    again = Contents.from_bytes(c.to_bytes())
    assert again == c
    assert again.described() == [FILES["faxbridge.toml"], FILES["secrets.toml"], FILES["tls/sip-cert.pem"],
                                  FILES["tls/sip-key.pem"]]


@pytest.mark.parametrize("raw, said", [
    (b"\xff", "not readable"),
    (b"[]", "not a Faxbridge backup's"),
    (json.dumps({"format": "other", "files": {}}).encode(), "not a Faxbridge backup's"),
    (_raw([]), "list no files"),
    (_raw({}), "no configuration"),
    (_raw({"faxbridge.toml": MAIN, "web/admin.json": "{}"}), "does not restore: 'web/admin.json'"),
    (_raw({"faxbridge.toml": MAIN, "../../etc/passwd": "x"}), "does not restore"),
    (_raw({"faxbridge.toml": 7}), "not text"),
    (_raw({"faxbridge.toml": "x" * (256 * 1024 + 1)}), "not text of at most 256 KiB"),
    (_raw({"faxbridge.toml": MAIN, "tls/owner-cert.pem": "c"}), "without tls/owner-key.pem"),
    (_raw({"faxbridge.toml": MAIN}, hostname=["x"]), "not text"),
    # found by fuzzing (backup_file): JSON's \ud800 is a string no file can hold; writing it failed
    # with UnicodeEncodeError (a 500 on the page) instead of a message
    (b'{"format": "faxbridge-backup", "files": {"faxbridge.toml": "\\ud800"}}', "not text"),
    (b'{"format": "faxbridge-backup", "files": {"faxbridge.toml": ""}, "hostname": "\\udfff"}', "not text"),
])
def test_anything_else_is_refused_with_a_reason(raw: bytes, said: str) -> None:
    with pytest.raises(ContentError, match=said.replace("(", r"\(").replace(".", r"\.")):
        Contents.from_bytes(raw)
