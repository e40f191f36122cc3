"""Fax page images: making TIFFs spandsp can send, and reading received ones back.

spandsp's T.4 transmitter will not scale (a page 1700 px wide fails with "far end cannot receive
at the size of image"), so anything we send is first made into a 1728-pixel-wide, 1-bit,
G4-compressed TIFF at a fax resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from PIL import Image, ImageSequence

from appliance.fax.pagelimits import MAX_PAGE_PIXELS, PageTooLarge, check_frame, check_page, frame_dpi, open_tiff

FAX_WIDTH = 1728
FINE = (204, 196)
STANDARD = (204, 98)


def write_fax_tiff(pages: list[Image.Image], path: str | Path, dpi: tuple[int, int] = FINE) -> None:
    """Write 1-bit pages (already 1728 wide) as one multi-page G4 TIFF."""
    if not pages:
        raise ValueError("a fax needs at least one page")
    imgs = [p.convert("1") for p in pages]
    for i, im in enumerate(imgs):
        if im.width != FAX_WIDTH:
            raise ValueError(f"page {i + 1} is {im.width} px wide; fax pages are {FAX_WIDTH}")
    imgs[0].save(path, save_all=True, append_images=imgs[1:], compression="group4", dpi=dpi)


def prepare_for_sending(src: str | Path, dst: str | Path, dpi: tuple[int, int] = FINE) -> int:
    """Convert any image file Pillow reads (every page of it) into a fax TIFF; returns the page count.

    Raises PageTooLarge, before decoding or scaling it, for a page that would decode past the
    per-page memory budget or would become longer than a fax page can be (a narrow strip scaled
    to 1728 dots grows as much in length); Pillow's own errors for a file that does not decode.
    """
    pages = []
    try:
        with Image.open(src) as im:
            for n, frame in enumerate(ImageSequence.Iterator(im), 1):
                pages.append(_fax_page(frame, n, dpi))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise PageTooLarge(f"the document's first page is too large to send: {e}") from e
    write_fax_tiff(pages, dst, dpi)
    return len(pages)


def _fax_page(frame: Image.Image, n: int, dpi: tuple[int, int]) -> Image.Image:
    """One page of a document as a 1728-wide bilevel fax page at `dpi`, its size checked first."""
    width, height = frame.size
    if width <= 0 or height <= 0 or width * height > MAX_PAGE_PIXELS:
        raise PageTooLarge(
            f"page {n} is {width:,} x {height:,} pixels; one page may decode to at most "
            f"{MAX_PAGE_PIXELS / 1e6:.1f} million"
        )
    src_dpi = frame_dpi(frame) or dpi
    rows = height
    if width != FAX_WIDTH or tuple(round(d) for d in src_dpi) != dpi:
        # keep the physical aspect ratio: scale width to 1728, height by the dpi ratio
        sx = FAX_WIDTH / width
        sy = sx * (dpi[1] / dpi[0]) / (src_dpi[1] / src_dpi[0])
        scaled = height * sy  # any size, for a made-up resolution: check_page refuses it
        rows = max(1, round(scaled)) if scaled < 2**31 else 2**31
    check_page(FAX_WIDTH, rows, dpi[1], n)
    page = frame.convert("L")
    if rows != height or width != FAX_WIDTH:
        page = page.resize((FAX_WIDTH, rows), Image.Resampling.LANCZOS)
    return page.point(lambda v: 255 if v >= 128 else 0).convert("1")


def read_pages(path: str | Path | IO[bytes]) -> list[Image.Image]:
    """Every page as an 8-bit greyscale image (0 black, 255 white), whatever the TIFF's encoding.

    A page over the size limits raises PageTooLarge before it is decoded.
    """
    pages = []
    with open_tiff(path) as im:
        for n, frame in enumerate(ImageSequence.Iterator(im), 1):
            check_frame(frame, n)
            pages.append(frame.convert("L"))
    return pages
