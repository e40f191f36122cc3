"""Maildir delivery: created on demand, one file in new/, nothing left in tmp/."""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
from pathlib import Path

from appliance.delivery.maildir import deliver_maildir
from appliance.delivery.message import render_message
from appliance.spool.store import FaxRecord


def _msg(n: int, image: bytes):
    fax = FaxRecord(id=n, uid=f"{n:016x}", state="routed", created=1_700_000_000.0, complete=True, pages=2)
    return render_message(fax, "a@x", from_addr="fax@x", image=image, message_id=f"<{n:016x}.1@faxbridge>")


def test_deliver_creates_maildir_and_file(tmp_path: Path, tiff_bytes: bytes, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    md = tmp_path / "deep" / "Maildir"
    key = deliver_maildir(md, _msg(1, tiff_bytes))
    assert len(synced) >= 2  # the file and new/
    assert [p.name for p in (md / "new").iterdir()] == [key]
    assert list((md / "tmp").iterdir()) == [] and (md / "cur").is_dir()
    box = mailbox.Maildir(md, factory=None)
    (got,) = list(box)
    parsed = email.message_from_bytes(got.as_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == "<0000000000000001.1@faxbridge>"
    (att,) = parsed.iter_attachments()
    assert att.get_content() == tiff_bytes
    assert b"\r\n" not in (md / "new" / key).read_bytes()


def test_keys_are_unique(tmp_path: Path, tiff_bytes: bytes):
    keys = {deliver_maildir(tmp_path / "md", _msg(i, tiff_bytes)) for i in range(20)}
    assert len(keys) == 20 and len(list((tmp_path / "md" / "new").iterdir())) == 20
