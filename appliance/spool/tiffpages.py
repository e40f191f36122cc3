"""Count the readable pages of a received TIFF and cut off a damaged tail.

The fax engine writes one IFD per page as each page ends, so a call that drops mid-page (or a
crash) leaves a file whose last page may be missing or undecodable.  The spool trusts only what
these functions can decode.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image

from appliance.spool.crashpoint import crash_point

_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, IndexError, KeyError,
                  TypeError, ZeroDivisionError, Image.DecompressionBombError)


def readable_pages(path: Path) -> tuple[int, int]:
    """Return (pages that decode, pages the IFD chain claims); (0, 0) for a missing/garbage file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about every truncated file; that is our input
        return _readable_pages(path)


def _readable_pages(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            if im.format != "TIFF":
                return 0, 0
            good = 0
            claimed = 0
            while True:
                try:
                    im.seek(claimed)
                except EOFError:
                    break
                except _DECODE_ERRORS:
                    break
                claimed += 1
                try:
                    im.load()
                except _DECODE_ERRORS:
                    break
                if im.size[0] <= 0 or im.size[1] <= 0:
                    break
                good += 1
            return good, max(claimed, good)
    except (FileNotFoundError, Image.UnidentifiedImageError):
        return 0, 0
    except _DECODE_ERRORS:
        return 0, 0


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


def keep_first_pages(path: Path, pages: int) -> None:
    """Rewrite ``path`` atomically with only its first ``pages`` pages (re-encoded bilevel).

    Used only when the tail of a partial fax cannot be decoded; a crash during the rewrite leaves
    the original file in place, so the next attempt starts over.
    """
    tmp = path.with_name(path.name + ".trim")
    frames: list[Image.Image] = []
    with Image.open(path) as im:
        compression = im.info.get("compression")
        dpi = im.info.get("dpi") or (204, 196)
        for i in range(pages):
            im.seek(i)
            frame = im.convert("1") if im.mode != "1" else im.copy()
            frames.append(frame)
    if compression not in ("group3", "group4"):
        compression = "group4"
    first, rest = frames[0], frames[1:]
    with open(tmp, "w+b") as f:  # Pillow reads back while appending pages
        first.save(f, format="TIFF", save_all=True, append_images=rest, compression=compression,
                   dpi=tuple(float(x) for x in dpi))
        f.flush()
        os.fsync(f.fileno())
    crash_point("trim.written")
    os.replace(tmp, path)
    fsync_dir(path.parent)

