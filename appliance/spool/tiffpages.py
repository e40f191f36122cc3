"""Count the readable pages of a received TIFF and cut off a damaged tail.

The fax engine writes one IFD per page as each page ends, so a call that drops mid-page (or a
crash) leaves a file whose last page may be missing or undecodable.  The spool trusts only what
these functions can decode.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import UnidentifiedImageError

from appliance.fax.pagelimits import DECODE_ERRORS, frame_dpi, frame_problem, open_tiff
from appliance.fsutil import fsync_dir
from appliance.spool.crashpoint import crash_point

_DECODE_ERRORS = DECODE_ERRORS


@dataclass(frozen=True)
class RefusedPage:
    """A page kept in the file but not decoded: larger than a fax page can be."""

    page: int  # 1-based
    width: int
    rows: int
    ydpi: float | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"page": self.page, "width": self.width, "rows": self.rows, "ydpi": self.ydpi, "reason": self.reason}


@dataclass(frozen=True)
class PageScan:
    """What a received TIFF holds, found one page at a time.

    ``readable`` counts the leading pages that are whole: each decodes, or is refused by its size
    (``refused``) before a row of it is decoded.  ``claimed`` counts the pages the IFD chain
    names; more claimed than readable means a damaged tail.
    """

    readable: int
    claimed: int
    refused: tuple[RefusedPage, ...] = ()

    @property
    def deliverable(self) -> int:
        return self.readable - len(self.refused)


def readable_pages(path: Path) -> tuple[int, int]:
    """Return (whole pages, pages the IFD chain claims); (0, 0) for a missing/garbage file."""
    scan = scan_pages(path)
    return scan.readable, scan.claimed


def scan_pages(path: Path) -> PageScan:
    """Check every page of ``path``; only pages within the limits are decoded, one at a time."""
    good = 0
    claimed = 0
    refused: list[RefusedPage] = []
    try:
        with open_tiff(path) as im:
            if im.format != "TIFF":
                return PageScan(0, 0)
            while True:
                try:
                    im.seek(claimed)
                except EOFError:
                    break
                except _DECODE_ERRORS:
                    break
                claimed += 1
                problem = frame_problem(im, claimed)
                if problem is not None:  # kept as it came, never decoded
                    dpi = frame_dpi(im)
                    refused.append(RefusedPage(claimed, im.size[0], im.size[1], dpi[1] if dpi else None, problem))
                    good += 1
                    continue
                try:
                    im.load()
                except _DECODE_ERRORS:
                    break
                if im.size[0] <= 0 or im.size[1] <= 0:
                    break
                good += 1
            return PageScan(good, max(claimed, good), tuple(refused))
    except (FileNotFoundError, UnidentifiedImageError):
        return PageScan(0, 0)
    except _DECODE_ERRORS:
        return PageScan(0, 0)


def keep_first_pages(path: Path, pages: int) -> None:
    """Rewrite ``path`` atomically with only its first ``pages`` pages.

    Used only when the tail of a partial fax cannot be decoded.  The kept pages' coded strips are
    copied byte for byte with the tags that describe them, so nothing is decoded: the pixels stay
    exactly as received, and a page refused for its size is kept without being expanded.  A crash
    during the rewrite leaves the original file in place, so the next attempt starts over.
    """
    tmp = path.with_name(path.name + ".trim")
    data = _copy_pages(path, pages)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    crash_point("trim.written")
    os.replace(tmp, path)
    fsync_dir(path.parent)


SHORT, LONG, RATIONAL = 3, 4, 5
#: the tags a bilevel fax page needs to be decoded and measured, by the type they are written as
_COPIED = {
    254: LONG,
    256: LONG,
    257: LONG,
    258: SHORT,
    259: SHORT,
    262: SHORT,
    266: SHORT,
    277: SHORT,
    278: LONG,
    282: RATIONAL,
    283: RATIONAL,
    284: SHORT,
    292: LONG,
    293: LONG,
    296: SHORT,
    317: SHORT,
}


def _copy_pages(src: Path, pages: int) -> bytes:
    """A little-endian TIFF of the first ``pages`` pages of ``src``: each page's strips, then its IFD."""
    if pages < 1:
        raise ValueError("a fax file needs at least one page")
    out = bytearray(b"II*\x00\0\0\0\0")
    link = 4  # where the offset of the next IFD is patched in
    with open_tiff(src) as im, open(src, "rb") as raw:
        for i in range(pages):
            im.seek(i)
            tags = im.tag_v2
            counts = tuple(int(n) for n in _values(tags[279]))
            offsets = []
            for off, n in zip(_values(tags[273]), counts, strict=True):
                raw.seek(int(off))
                strip = raw.read(n)
                if len(strip) != n:
                    raise ValueError(f"page {i + 1}: a strip runs past the end of the file")
                offsets.append(len(out))
                out += strip
                if len(out) & 1:
                    out += b"\0"
            entries = [(tag, typ, _values(tags[tag])) for tag, typ in _COPIED.items() if tag in tags]
            entries += [(273, LONG, tuple(offsets)), (279, LONG, counts), (297, SHORT, (i, pages))]
            struct.pack_into("<I", out, link, len(out))
            link = _append_ifd(out, sorted(entries, key=lambda e: e[0]))
    return bytes(out)


def _values(value: object) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _pack(typ: int, values: tuple) -> bytes:
    if typ == SHORT:
        return struct.pack(f"<{len(values)}H", *(int(v) for v in values))
    if typ == LONG:
        return struct.pack(f"<{len(values)}I", *(int(v) for v in values))
    pairs = [(int(v.numerator), int(v.denominator)) for v in values]  # Pillow's IFDRational
    return struct.pack(f"<{2 * len(pairs)}I", *(x for pair in pairs for x in pair))


def _append_ifd(out: bytearray, entries: list[tuple[int, int, tuple]]) -> int:
    """Append one IFD, values too long for their entry right after it; return its next-IFD slot."""
    extra_at = len(out) + 2 + 12 * len(entries) + 4
    body = bytearray(struct.pack("<H", len(entries)))
    extra = bytearray()
    for tag, typ, values in entries:
        packed = _pack(typ, values)
        if len(packed) <= 4:
            body += struct.pack("<HHI", tag, typ, len(values)) + packed.ljust(4, b"\0")
        else:
            body += struct.pack("<HHII", tag, typ, len(values), extra_at + len(extra))
            extra += packed
    link = len(out) + len(body)
    out += body + b"\0\0\0\0" + extra
    if len(out) & 1:
        out += b"\0"
    return link
