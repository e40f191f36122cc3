"""Writing a small file so that a crash or power cut leaves the old or the new one, whole.

The one atomic writer of the appliance (configuration, secrets, keys, first boot's files) and the
fsyncs the spool's own commit order is built from.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (POSIX keeps it in the directory inode)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str, mode: int) -> None:
    """Replace ``path`` with ``data`` (temp file in the same directory, fsync, rename, directory
    fsync). ``mode`` is set before any byte is written, so a secret is never readable by others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file atomically with mode 0600 (never readable by others, even briefly),
    in a directory only the service user can enter."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, data, 0o600)
