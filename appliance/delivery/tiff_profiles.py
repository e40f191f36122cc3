"""The received fax in the forms a mailbox wants: TIFF-F (G4), TIFF Profile S (MH) and PDF.

The spool keeps what spandsp wrote (G4, possibly several strips, any bit order).  Mail readers and
Exchange are pickier, so each page is decoded once and re-encoded here, one page at a time: only
the page being converted is ever decoded, and a page over the limits of
``appliance.fax.pagelimits`` is left out without being decoded at all (the spool has already
recorded it as refused).  The CCITT coding itself
comes from libtiff through Pillow (one strip per page); the TIFF structure around it is written by
our own small writer, because RFC 3949 Profile S fixes the tag set, the IFD-before-data layout and
FillOrder=2, none of which Pillow lets us control.
"""

from __future__ import annotations

import io
import itertools
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageOps, TiffImagePlugin

from appliance.fax.pagelimits import DECODE_ERRORS, check_page, frame_dpi, frame_problem, open_tiff

log = logging.getLogger("faxbridge.delivery")

FAX_WIDTH = 1728
#: bit-reversal of every byte: libtiff codes MSB-first (FillOrder 1), Profile S wants LSB-first
_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


@dataclass(frozen=True)
class Page:
    """One decoded page: 1-bit image (Pillow: 0 black) and its resolution in dpi."""

    image: Image.Image
    xdpi: float
    ydpi: float


#: what Pillow raises on a TIFF that does not decode (the bomb guard's warning is an error here)
_DECODE_ERRORS = DECODE_ERRORS


def oversized_pages(data: bytes) -> list[str]:
    """Why each page over the size limits is refused, read from the directories alone."""
    problems: list[str] = []
    try:
        with open_tiff(io.BytesIO(data)) as im:
            for index in itertools.count():
                try:
                    im.seek(index)
                except EOFError:
                    break
                problem = frame_problem(im, index + 1)
                if problem is not None:
                    problems.append(problem)
    except _DECODE_ERRORS:
        pass  # what cannot be walked is refused by the decoders themselves
    return problems


def iter_pages(data: bytes) -> Iterator[Page]:
    """The pages of a TIFF as 1-bit images, decoded one at a time; pages over the limits are left out.

    Raises ValueError when a page does not decode or when no page is left to deliver.
    """
    delivered = 0
    for index in itertools.count():
        try:
            page = _decode_page(data, index)
        except EOFError:
            break
        if page is None:
            continue
        delivered += 1
        yield page
        del page  # only the page being converted stays decoded
    if not delivered:
        raise ValueError("fax image has no page to deliver")


def _decode_page(data: bytes, index: int) -> Page | None:
    """Page ``index`` (0-based) decoded, None when it is over the limits; EOFError past the last."""
    try:
        with open_tiff(io.BytesIO(data)) as im:
            im.seek(index)  # EOFError past the last page: the caller's end
            problem = frame_problem(im, index + 1)
            if problem is not None:
                log.warning("%s: left out", problem)
                return None
            dpi = frame_dpi(im) or (204.0, 196.0)
            return Page(im.convert("1"), dpi[0], dpi[1])
    except EOFError:
        raise
    except _DECODE_ERRORS as e:
        raise ValueError(f"fax image does not decode: {e}") from e


def decode_pages(data: bytes) -> list[Page]:
    """Every deliverable page at once (tests and small callers); renderers use ``iter_pages``."""
    return list(iter_pages(data))


def _ccitt_strip(page: Image.Image, compression: str) -> bytes:
    """libtiff's MH ("group3", T4Options 0) or G4 coding of one page as a single strip, MSB-first.

    The page is inverted first: libtiff codes 0-bits as white runs, and our IFD says
    PhotometricInterpretation=0 (WhiteIsZero), so black pixels must be the 1-bits.
    """
    # Pillow "1": 0 is black; after this the 1-bits are black.  (Image.point on a pasted "1"
    # image does not invert reliably, so go through 8-bit, where 0/255 survive exactly.)
    inverted = ImageOps.invert(page.convert("L")).convert("1", dither=Image.Dither.NONE)
    buf = io.BytesIO()
    inverted.save(buf, format="TIFF", compression=compression, strip_size=1 << 30)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        if not isinstance(im, TiffImagePlugin.TiffImageFile):
            raise RuntimeError("Pillow did not write a TIFF")
        offsets = im.tag_v2[273]
        counts = im.tag_v2[279]
    if len(offsets) != 1:
        raise RuntimeError("libtiff wrote more than one strip")
    raw = buf.getvalue()
    return raw[offsets[0] : offsets[0] + counts[0]]


# ---------------------------------------------------------------------------------------- writer
SHORT, LONG, RATIONAL = 3, 4, 5


@dataclass(frozen=True)
class _Ifd:
    tags: dict[int, tuple[int, tuple[int, ...]]]  # tag -> (type, values); strip offset patched later
    data: bytes
    xres: int
    yres: int


def _write_tiff(ifds: list[_Ifd]) -> bytes:
    """Little-endian TIFF, each page laid out as IFD, its resolution rationals, then its one strip."""
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for n, ifd in enumerate(ifds):
        start = len(out)
        tags = dict(ifd.tags)
        n_entries = len(tags) + 4  # + XResolution, YResolution, StripOffsets, StripByteCounts
        ifd_size = 2 + 12 * n_entries + 4
        rat_at = start + ifd_size
        data_at = rat_at + 16
        tags[273] = (LONG, (data_at,))
        tags[279] = (LONG, (len(ifd.data),))
        tags[282] = (RATIONAL, (rat_at,))
        tags[283] = (RATIONAL, (rat_at + 8,))
        end = data_at + len(ifd.data)
        end += end & 1  # word-aligned next IFD
        next_ifd = end if n + 1 < len(ifds) else 0
        out += struct.pack("<H", n_entries)
        for tag in sorted(tags):
            typ, vals = tags[tag]
            if typ == RATIONAL:  # value is the offset of the rational
                out += struct.pack("<HHII", tag, typ, 1, vals[0])
            elif typ == SHORT:
                packed = struct.pack(f"<{len(vals)}H", *vals).ljust(4, b"\0")
                if len(packed) > 4:
                    raise ValueError("inline values only")
                out += struct.pack("<HHI", tag, typ, len(vals)) + packed
            else:
                if len(vals) != 1:
                    raise ValueError("inline values only")
                out += struct.pack("<HHII", tag, typ, 1, vals[0])
        out += struct.pack("<I", next_ifd)
        out += struct.pack("<IIII", ifd.xres, 1, ifd.yres, 1)
        out += ifd.data
        if len(out) & 1:
            out += b"\0"
    return bytes(out)


# -------------------------------------------------------------------------------------- profiles
def profile_s_page(page: Page) -> tuple[Image.Image, int]:
    """The page as Profile S allows it: 1728 wide, 98 or 196 lines per inch.

    Wider pages (B4 2048, A3 2432, or 408-dpi pages) are scaled down to 1728 in both directions,
    keeping the aspect ratio, as a T.4 receiver reduces B4/A3 to A4; narrower pages are padded
    with white on the right.  Resolutions above 196 lpi (superfine) are scaled vertically to 196.
    Raises PageTooLarge, before scaling, for a page its resolution would stretch past a fax page.
    """
    im = page.image
    ydpi = page.ydpi
    if im.width > FAX_WIDTH:
        s = FAX_WIDTH / im.width
        im = _scale(im, FAX_WIDTH, max(1, round(im.height * s)))
        # a reduction (B4 -> A4) keeps the labels; a 408-dpi page becomes a 204-dpi one
        ydpi = ydpi * 204 / page.xdpi if page.xdpi else ydpi
    target = 98 if ydpi < 147 else 196
    if abs(ydpi - target) > 5 and ydpi > 0:
        rows = max(1, round(im.height * target / ydpi))
        check_page(FAX_WIDTH, rows, target)  # a made-up resolution (x far above y) would make it metres long
        im = _scale(im, im.width, rows)
    if im.width < FAX_WIDTH:
        padded = Image.new("1", (FAX_WIDTH, im.height), 1)
        padded.paste(im, (0, 0))
        im = padded
    return im, target


def _scale(im: Image.Image, w: int, h: int) -> Image.Image:
    """Area-average then threshold, so thin strokes survive the reduction."""
    return (
        im.convert("L")
        .resize((w, h), Image.Resampling.BOX)
        .point(lambda v: 255 if v >= 128 else 0)
        .convert("1", dither=Image.Dither.NONE)
    )


def to_profile_s(data: bytes) -> bytes:
    """RFC 3949 Profile S: MH (Compression 3, T4Options 0), FillOrder 2, 1728 wide, IFD first."""
    coded = []
    for page in iter_pages(data):  # one page decoded at a time; only its coded strip is kept
        im, yres = profile_s_page(page)
        coded.append((_ccitt_strip(im, "group3").translate(_REVERSE), im.width, im.height, yres))
        del page, im  # before the next page is decoded
    ifds = []
    for i, (strip, width, height, yres) in enumerate(coded):
        tags = {
            254: (LONG, (2,)),
            256: (SHORT, (width,)),
            257: (LONG, (height,)),
            258: (SHORT, (1,)),
            259: (SHORT, (3,)),
            262: (SHORT, (0,)),
            266: (SHORT, (2,)),
            277: (SHORT, (1,)),
            278: (LONG, (height,)),
            292: (LONG, (0,)),
            296: (SHORT, (2,)),
            297: (SHORT, (i, len(coded))),
        }
        ifds.append(_Ifd(tags, strip, 204, yres))
    return _write_tiff(ifds)


def is_tiff_f(data: bytes) -> bool:
    """True when every page is already G4, bilevel, with an inch resolution, within the size limits,
    and decodes: kept as is.  Pages are decoded one at a time, and none over the limits."""
    try:
        with open_tiff(io.BytesIO(data)) as im:
            for index in itertools.count():
                try:
                    im.seek(index)
                except EOFError:
                    return index > 0
                tags = im.tag_v2
                if (
                    im.info.get("compression") != "group4"
                    or im.mode != "1"
                    or tags.get(296) != 2
                    or 282 not in tags
                    or 283 not in tags
                    or frame_problem(im) is not None
                ):
                    return False
                im.load()
    except _DECODE_ERRORS:
        return False
    return False


def _whole_dpi(dpi: float, default: int) -> int:
    """A resolution as our IFD writes it (a whole number, 32 bits); one it cannot hold is made up."""
    whole = round(dpi)
    return whole if 1 <= whole < 2**32 else default


def to_tiff_f(data: bytes) -> bytes:
    """TIFF-F (RFC 2306): G4 (T6Options 0), FillOrder 1, one strip per page, sizes as received.

    A file that already is G4 with resolution tags (what spandsp writes) is returned unchanged:
    re-encoding it would only risk the received pixels.  One with a page over the size limits is
    re-encoded without that page (G4 is lossless, so the other pages keep every pixel).
    """
    if is_tiff_f(data):
        return data
    coded = []
    for page in iter_pages(data):
        coded.append(
            (
                _ccitt_strip(page.image, "group4"),
                page.image.width,
                page.image.height,
                _whole_dpi(page.xdpi, 204),
                _whole_dpi(page.ydpi, 196),
            )
        )
        del page  # before the next page is decoded
    ifds = []
    for i, (strip, width, height, xres, yres) in enumerate(coded):
        tags = {
            254: (LONG, (2,)),
            256: (LONG, (width,)),
            257: (LONG, (height,)),
            258: (SHORT, (1,)),
            259: (SHORT, (4,)),
            262: (SHORT, (0,)),
            266: (SHORT, (1,)),
            277: (SHORT, (1,)),
            278: (LONG, (height,)),
            293: (LONG, (0,)),
            296: (SHORT, (2,)),
            297: (SHORT, (i, len(coded))),
        }
        ifds.append(_Ifd(tags, strip, xres, yres))
    return _write_tiff(ifds)


#: the sizes a PDF page may have, in points (pikepdf, after ISO 32000's implementation limits)
PDF_MIN_POINTS, PDF_MAX_POINTS = 3.0, 14400.0
#: the resolutions handed to the PNG of a page, in dpi: a PNG states pixels per metre in 32 bits,
#: and fax resolutions are 100 to 1200; anything further out is made up, and only lays out the page
PNG_DPI_RANGE = (1.0, 100_000.0)


def _pdf_layout(w_px: float, h_px: float, ndpi: tuple[float, float]) -> tuple[float, float, float, float]:
    """img2pdf layout: page size from each page's own dpi (204x98 stays A4-tall, not squashed).

    PNG stores dots per metre, so 204 dpi comes back as 203.99: round to whole dpi.  A page outside
    the sizes a PDF page may have would cost the whole PDF: the stub of a page cut off after a few
    rows sits on the smallest page, one with a made-up resolution is scaled down to the largest.
    """
    xdpi, ydpi = (round(d) or 204 for d in ndpi)
    w = w_px * 72.0 / xdpi
    h = h_px * 72.0 / ydpi
    scale = min(1.0, PDF_MAX_POINTS / w, PDF_MAX_POINTS / h)
    w, h = w * scale, h * scale
    return max(w, PDF_MIN_POINTS), max(h, PDF_MIN_POINTS), w, h


def to_pdf(data: bytes) -> bytes:
    """Lossless PDF (img2pdf embeds the 1-bit pixels Flate-coded, never resampled), page per page.

    Each page is decoded, made a PNG and let go before the next; pages over the limits are left out.
    """
    import img2pdf  # imported late: only routes asking for PDF need it

    pngs = []
    for page in iter_pages(data):
        buf = io.BytesIO()
        dpi = tuple(min(max(d, PNG_DPI_RANGE[0]), PNG_DPI_RANGE[1]) for d in (page.xdpi or 204, page.ydpi or 196))
        page.image.save(buf, format="PNG", dpi=dpi)
        pngs.append(buf.getvalue())
        del page  # before the next page is decoded
    return img2pdf.convert(pngs, layout_fun=_pdf_layout)
