"""How large a received fax page may be, and how much memory looking at one page may take.

T.4 puts no bound on a page's length (T.30 even has an "unlimited length" capability bit),
spandsp 0.0.6 grows its row buffer for as long as rows arrive, and Pillow unpacks a bilevel page
to one byte per pixel.  So 10 KB of G4, 80,000 white rows of one bit each, is a 138 MB image.
Every place that decodes a page asks this module first, from the page's size alone, before a
single row is decoded: the fax engine while a page arrives, the spool when it commits the fax,
delivery and the web pages when they render one.

Importing this module also sets Pillow's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``)
to the same budget, its warning made an error, as the backstop for any decoder that forgets to
ask.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from typing import IO, Any

from PIL import Image, TiffImagePlugin

MM_PER_INCH = 25.4

#: how the hang-up reason for a page that grew past the size limits begins (the mail names it)
PAGE_TOO_LARGE = "page too large, hung up"

#: The longest page accepted, in millimetres.  ISO A3 (420 mm) is the longest standard sheet a
#: fax carries; with the DIS "unlimited length" bit a sender may feed longer originals, and the
#: long-document modes of office machines scan up to about a metre.  1.5 m is that with half again
#: as margin (five A4 pages end to end).  Anything longer is not a sheet anyone fed into a fax
#: machine but a stream of rows, and the receivers that split long pages cap them too.
MAX_PAGE_LENGTH_MM = 1500

#: The finest vertical resolution measured: T.30's superfine (15.4 lines/mm, "391 lpi") rounded up
#: to the inch-based 400.  A page that claims more is measured as if it were 400, so a made-up
#: resolution cannot stretch the row limit.
FINEST_LPI = 400.0

#: The resolution assumed when a page states none: fine, what most fax pages are.
DEFAULT_LPI = 196.0

#: The widest row accepted: A3 (303 mm) at 16 dots/mm, the widest page our DIS offers.
MAX_PAGE_WIDTH = 4864

#: The usual fax row: A4/Letter at 8 dots/mm.
A4_WIDTH = 1728

#: Pillow holds a bilevel page at one byte per pixel while it decodes, converts or scales it.
BYTES_PER_PIXEL = 1


def max_rows(ydpi: float | None) -> int:
    """The most rows a page at ``ydpi`` lines per inch may have (MAX_PAGE_LENGTH_MM of paper)."""
    return math.ceil(MAX_PAGE_LENGTH_MM / MM_PER_INCH * effective_lpi(ydpi))


def effective_lpi(ydpi: float | None) -> float:
    """The resolution a page is measured at: its own, DEFAULT_LPI if unusable, at most FINEST_LPI."""
    try:
        y = float(ydpi) if ydpi is not None else DEFAULT_LPI
    except (TypeError, ValueError):
        y = DEFAULT_LPI
    if not math.isfinite(y) or y <= 0:
        y = DEFAULT_LPI
    return min(y, FINEST_LPI)


#: The memory one decoded page may take, in bytes: the largest page the limits above accept at
#: the usual width, 1728 dots x 23,622 rows (1.5 m at 400 lpi) = 40.8 MB.  It also holds an A3
#: page at 16 dots/mm superfine (4864 x 6,468 = 31.5 MB), the largest standard sheet a fax can
#: carry.  Every renderer decodes one page at a time and refuses a page over this before it
#: allocates, so a render costs this plus the few working copies it makes of that one page,
#: whatever the sender sent; the daemon and the web process can both do that at once on a
#: 1 GB Raspberry Pi.  (Pillow's own default, 89 million pixels, would let through twice that.)
PAGE_MEMORY_BUDGET = A4_WIDTH * max_rows(FINEST_LPI) * BYTES_PER_PIXEL

#: The same budget in pixels: what one page may decode to.
MAX_PAGE_PIXELS = PAGE_MEMORY_BUDGET // BYTES_PER_PIXEL

# Restore Pillow's guard with a limit that fits the largest legitimate page, and make its warning
# an error: above the budget Pillow refuses instead of warning and allocating.  Set once, at import
# (every decoder imports this module), because per-call warning filters are not thread-safe and
# the daemon and the web process render on several threads.
Image.MAX_IMAGE_PIXELS = MAX_PAGE_PIXELS
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
# Pillow's complaints about damaged TIFF metadata ("Corrupt EXIF data"): a partial fax is everyday
# input, and what matters (a page that does not decode) is an exception, not a warning.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")


#: What Pillow raises on a TIFF that does not decode, for every reader of received pages: a damaged
#: directory surfaces as any of these (one without ImageWidth is a TypeError, a short tag value a
#: struct.error), besides the bomb guard's error and warning (an error here) as the backstop.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    EOFError,
    SyntaxError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class PageTooLarge(ValueError):
    """A page over the limits, refused before any of it was decoded."""


def page_problem(width: int, rows: int, ydpi: float | None, page: int | None = None) -> str | None:
    """Why a page of ``width`` x ``rows`` at ``ydpi`` is refused, or None when it is acceptable."""
    name = f"page {page}" if page is not None else "the page"
    if width <= 0 or rows <= 0:
        return f"{name} has no size ({width} x {rows} dots)"
    if width > MAX_PAGE_WIDTH:
        return f"{name} is {width:,} dots wide; the widest fax page is {MAX_PAGE_WIDTH:,} (A3 at 16 dots/mm)"
    limit = max_rows(ydpi)
    lpi = effective_lpi(ydpi)
    if rows > limit:
        metres = rows / lpi * MM_PER_INCH / 1000
        return (
            f"{name} is {rows:,} rows long at {lpi:g} lines per inch ({metres:.2f} m); a fax "
            f"page is at most {MAX_PAGE_LENGTH_MM / 1000:g} m ({limit:,} rows at this resolution)"
        )
    if width * rows > MAX_PAGE_PIXELS:
        return (
            f"{name} is {width:,} x {rows:,} dots ({width * rows / 1e6:.1f} million); one page may "
            f"decode to at most {MAX_PAGE_PIXELS / 1e6:.1f} million"
        )
    return None


def check_page(width: int, rows: int, ydpi: float | None, page: int | None = None) -> None:
    """Raise PageTooLarge, naming the page and the limit, when the page is over the limits."""
    problem = page_problem(width, rows, ydpi, page)
    if problem is not None:
        raise PageTooLarge(problem)


def frame_dpi(im: Image.Image) -> tuple[float, float] | None:
    """The (x, y) resolution of the current TIFF frame in dpi, or None when it does not say."""
    dpi: Any = im.info.get("dpi")
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return None
    if not (math.isfinite(x) and math.isfinite(y)) or x <= 0 or y <= 0:
        return None
    return x, y


def frame_problem(im: Image.Image, page: int | None = None) -> str | None:
    """``page_problem`` for the frame Pillow has seeked to, from its directory alone."""
    dpi = frame_dpi(im)
    return page_problem(im.size[0], im.size[1], dpi[1] if dpi else None, page)


def check_frame(im: Image.Image, page: int | None = None) -> None:
    """Refuse the current frame (PageTooLarge) before ``load()`` would allocate it."""
    problem = frame_problem(im, page)
    if problem is not None:
        raise PageTooLarge(problem)


def open_tiff(src: str | os.PathLike[str] | IO[bytes]) -> TiffImagePlugin.TiffImageFile:
    """Open a TIFF at its first directory, decoding nothing; raises SyntaxError for anything else.

    ``Image.open`` measures only the first page and warns or refuses the whole file by it, so a
    poison first page would hide the good pages after it.  Here every page is measured on its own
    (``check_frame`` before each ``load()``), and Pillow's guard still stands behind that at load.
    """
    return TiffImagePlugin.TiffImageFile(os.fspath(src) if isinstance(src, os.PathLike) else src)
