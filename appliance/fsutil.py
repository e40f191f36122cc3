"""Writing a small file so that a crash or power cut leaves the old or the new one, whole."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from appliance.spool.tiffpages import fsync_dir


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
