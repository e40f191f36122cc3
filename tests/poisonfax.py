"""Poison fax pages for the tests: real G4 TIFFs whose pages are far longer than paper.

A T.6 (G4) row that is all white, under an all-white row, is one vertical-mode code, a single
bit, so a page of 1728 x 80,000 white rows is 10 KB of coded data that decodes to 138 million
pixels.  The TIFF around it is written here by hand (the fields spandsp writes for a page), so
building one costs nothing; good pages come from Pillow's own G4 coder and can share a file with
a poison page.  ``peak_rss`` measures what decoding costs, in a fresh interpreter.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

REPO = Path(__file__).resolve().parents[1]

#: the page of issue 10: 1728 x 80,000 at fine resolution
POISON_ROWS = 80_000
FINE = (204, 196)


@dataclass(frozen=True)
class CodedPage:
    """One page as the TIFF holds it: size, resolution and one G4 strip (FillOrder 1)."""

    width: int
    rows: int
    dpi: tuple[int, int]
    strip: bytes


def white_rows_g4(rows: int) -> bytes:
    """T.6 data for ``rows`` all-white rows (one V0 bit each), then EOFB, padded to a byte."""
    bits = "1" * rows + "000000000001" * 2
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def poison_page(rows: int = POISON_ROWS, width: int = 1728, dpi: tuple[int, int] = FINE) -> CodedPage:
    return CodedPage(width, rows, dpi, white_rows_g4(rows))


def good_page(n: int, dpi: tuple[int, int] = FINE, rows: int = 2287) -> tuple[Image.Image, CodedPage]:
    """A 1728-wide page with a numbered box, and the same page coded by libtiff's G4 coder.

    Coded with black as the 1-bits (the page inverted first), which is what WhiteIsZero, the
    photometric spandsp writes and ``fax_tiff`` declares, means.
    """
    im = Image.new("1", (1728, rows), 1)
    draw = ImageDraw.Draw(im)
    draw.rectangle((100 + 60 * n, 100, 900, 500), fill=0)
    draw.text((200, 700), f"page {n}", fill=0)
    inverted = ImageOps.invert(im.convert("L")).convert("1", dither=Image.Dither.NONE)
    buf = io.BytesIO()
    inverted.save(buf, format="TIFF", compression="group4", strip_size=1 << 30)
    with Image.open(io.BytesIO(buf.getvalue())) as coded:
        (offset,), (count,) = coded.tag_v2[273], coded.tag_v2[279]
        assert coded.tag_v2.get(266, 1) == 1
    return im, CodedPage(1728, rows, dpi, buf.getvalue()[offset:offset + count])


def fax_tiff(pages: list[CodedPage]) -> bytes:
    """A little-endian multi-page TIFF as a fax receiver writes one: G4, one strip per page."""
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for n, page in enumerate(pages):
        tags = [(254, 4, 2), (256, 4, page.width), (257, 4, page.rows), (258, 3, 1), (259, 3, 4),
                (262, 3, 0), (266, 3, 1), (273, 4, 0), (277, 3, 1), (278, 4, page.rows),
                (279, 4, len(page.strip)), (282, 5, 0), (283, 5, 0), (293, 4, 0), (296, 3, 2)]
        start = len(out)
        rationals = start + 2 + 12 * len(tags) + 4
        data_at = rationals + 16
        end = data_at + len(page.strip) + (data_at + len(page.strip)) % 2
        out += struct.pack("<H", len(tags))
        for tag, typ, value in tags:
            value = {273: data_at, 282: rationals, 283: rationals + 8}.get(tag, value)
            packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, typ, 1) + packed
        out += struct.pack("<I", end if n + 1 < len(pages) else 0)
        out += struct.pack("<IIII", page.dpi[0], 1, page.dpi[1], 1)
        out += page.strip
        if len(out) % 2:
            out += b"\0"
    return bytes(out)


def without_width(data: bytes, page: int) -> bytes:
    """A little-endian TIFF whose page ``page`` (1-based) has lost its ImageWidth entry (renamed to
    a private tag), as a damaged directory does: Pillow raises TypeError ("Missing dimensions")."""
    out = bytearray(data)
    (offset,) = struct.unpack_from("<I", out, 4)
    for _ in range(page - 1):
        (count,) = struct.unpack_from("<H", out, offset)
        (offset,) = struct.unpack_from("<I", out, offset + 2 + 12 * count)
    (count,) = struct.unpack_from("<H", out, offset)
    for entry in range(offset + 2, offset + 2 + 12 * count, 12):
        if struct.unpack_from("<H", out, entry)[0] == 256:
            struct.pack_into("<H", out, entry, 65000)
    return bytes(out)


def peak_rss(code: str, *args: str) -> tuple[int, str]:
    """Run ``code`` in a fresh interpreter; return (its peak RSS in bytes, what it printed).

    The peak is the child's own VmHWM, read by the child at its end.  Not ``ru_maxrss``: Linux
    carries that over fork and exec, so a child's would start at the size of the test process
    that started it, and RUSAGE_CHILDREN is the maximum over every child so far.
    """
    prog = textwrap.dedent(code) + textwrap.dedent("""
        import json as _json, re as _re
        _hwm = _re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
        print("PEAK " + _json.dumps(int(_hwm) * 1024))
    """)
    out = subprocess.run([sys.executable, "-c", prog, *args], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    peak = json.loads(lines[-1].removeprefix("PEAK "))
    return peak, "\n".join(lines[:-1])


#: what a refused page may add to a render's peak over rendering a normal one-page fax the same
#: way: nothing of it is decoded, so this is only allocator noise.  Decoding the poison page would
#: add 138 MB at least (Pillow holds it at one byte per pixel).
REFUSED_PAGE_SLACK = 24 * 1024 * 1024
