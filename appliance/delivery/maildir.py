"""Deliver into a local Maildir, durably.

``mailbox.Maildir.add`` never fsyncs, so a power cut can leave an empty file in new/ after the
spool already marked the job delivered.  We write tmp/ ourselves, fsync, rename into new/, and
fsync new/ before returning.
"""

from __future__ import annotations

import itertools
import mailbox
import os
import socket
import time
from email.message import EmailMessage
from pathlib import Path

_counter = itertools.count()


def _unique_name() -> str:
    now = time.time()
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    return f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.{host}"


def deliver_maildir(path: Path, msg: EmailMessage) -> str:
    """Write ``msg`` into the Maildir at ``path`` (created if missing); return its key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mailbox.Maildir(path, create=True)  # creates tmp/, new/, cur/ only when path is new
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(mode=0o700, exist_ok=True)
    data = msg.as_bytes(policy=msg.policy.clone(linesep="\n"))
    key = _unique_name()
    tmp = path / "tmp" / key
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path / "new" / key)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path / "new", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return key
