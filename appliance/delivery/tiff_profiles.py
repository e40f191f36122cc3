"""The received fax in the forms a mailbox wants: TIFF-F (G4), TIFF Profile S (MH) and PDF.

The spool keeps what spandsp wrote (G4, possibly several strips, any bit order).  Mail readers and
Exchange are pickier, so each page is decoded once and re-encoded here.  The CCITT coding itself
comes from libtiff through Pillow (one strip per page); the TIFF structure around it is written by
our own small writer, because RFC 3949 Profile S fixes the tag set, the IFD-before-data layout and
FillOrder=2, none of which Pillow lets us control.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, ImageSequence

FAX_WIDTH = 1728
#: bit-reversal of every byte: libtiff codes MSB-first (FillOrder 1), Profile S wants LSB-first
_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


@dataclass(frozen=True)
class Page:
    """One decoded page: 1-bit image (Pillow: 0 black) and its resolution in dpi."""
    image: Image.Image
    xdpi: float
    ydpi: float


def decode_pages(data: bytes) -> list[Page]:
    """Every page of a TIFF as 1-bit images; raises ValueError when nothing decodes."""
    pages: list[Page] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                for frame in ImageSequence.Iterator(im):
                    dpi = frame.info.get("dpi") or (204, 196)
                    pages.append(Page(frame.convert("1"), float(dpi[0]), float(dpi[1])))
    except (OSError, ValueError, EOFError, SyntaxError) as e:
        raise ValueError(f"fax image does not decode: {e}") from e
    if not pages:
        raise ValueError("fax image has no pages")
    return pages


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
        offsets = im.tag_v2[273]
        counts = im.tag_v2[279]
    if len(offsets) != 1:
        raise RuntimeError("libtiff wrote more than one strip")
    raw = buf.getvalue()
    return raw[offsets[0]: offsets[0] + counts[0]]


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
        im = _scale(im, im.width, max(1, round(im.height * target / ydpi)))
    if im.width < FAX_WIDTH:
        padded = Image.new("1", (FAX_WIDTH, im.height), 1)
        padded.paste(im, (0, 0))
        im = padded
    return im, target


def _scale(im: Image.Image, w: int, h: int) -> Image.Image:
    """Area-average then threshold, so thin strokes survive the reduction."""
    return im.convert("L").resize((w, h), Image.BOX).point(lambda v: 255 if v >= 128 else 0).convert(
        "1", dither=Image.Dither.NONE)


def to_profile_s(data: bytes) -> bytes:
    """RFC 3949 Profile S: MH (Compression 3, T4Options 0), FillOrder 2, 1728 wide, IFD first."""
    pages = decode_pages(data)
    ifds = []
    for i, page in enumerate(pages):
        im, yres = profile_s_page(page)
        strip = _ccitt_strip(im, "group3").translate(_REVERSE)
        tags = {
            254: (LONG, (2,)), 256: (SHORT, (im.width,)), 257: (LONG, (im.height,)),
            258: (SHORT, (1,)), 259: (SHORT, (3,)), 262: (SHORT, (0,)), 266: (SHORT, (2,)),
            277: (SHORT, (1,)), 278: (LONG, (im.height,)), 292: (LONG, (0,)), 296: (SHORT, (2,)),
            297: (SHORT, (i, len(pages))),
        }
        ifds.append(_Ifd(tags, strip, 204, yres))
    return _write_tiff(ifds)


def is_tiff_f(data: bytes) -> bool:
    """True when every page is already G4, bilevel and carries an inch resolution: kept as is."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                for frame in ImageSequence.Iterator(im):
                    tags = frame.tag_v2
                    if (frame.info.get("compression") != "group4" or frame.mode != "1"
                            or tags.get(296) != 2 or 282 not in tags or 283 not in tags):
                        return False
                    frame.load()
                return True
    except (OSError, ValueError, EOFError, SyntaxError):
        return False


def to_tiff_f(data: bytes) -> bytes:
    """TIFF-F (RFC 2306): G4 (T6Options 0), FillOrder 1, one strip per page, sizes as received.

    A file that already is G4 with resolution tags (what spandsp writes) is returned unchanged:
    re-encoding it would only risk the received pixels.
    """
    if is_tiff_f(data):
        return data
    pages = decode_pages(data)
    ifds = []
    for i, page in enumerate(pages):
        im = page.image
        strip = _ccitt_strip(im, "group4")
        tags = {
            254: (LONG, (2,)), 256: (LONG, (im.width,)), 257: (LONG, (im.height,)),
            258: (SHORT, (1,)), 259: (SHORT, (4,)), 262: (SHORT, (0,)), 266: (SHORT, (1,)),
            277: (SHORT, (1,)), 278: (LONG, (im.height,)), 293: (LONG, (0,)), 296: (SHORT, (2,)),
            297: (SHORT, (i, len(pages))),
        }
        ifds.append(_Ifd(tags, strip, round(page.xdpi) or 204, round(page.ydpi) or 196))
    return _write_tiff(ifds)


def _pdf_layout(w_px: float, h_px: float, ndpi: tuple[float, float]) -> tuple[float, float, float, float]:
    """img2pdf layout: page size from each page's own dpi (204x98 stays A4-tall, not squashed).

    PNG stores dots per metre, so 204 dpi comes back as 203.99: round to whole dpi.
    """
    xdpi, ydpi = (round(d) or 204 for d in ndpi)
    w = w_px * 72.0 / xdpi
    h = h_px * 72.0 / ydpi
    return w, h, w, h


def to_pdf(data: bytes) -> bytes:
    """Lossless PDF (img2pdf embeds the 1-bit pixels Flate-coded, never resampled), page per page."""
    import img2pdf  # imported late: only routes asking for PDF need it

    pngs = []
    for page in decode_pages(data):
        buf = io.BytesIO()
        page.image.save(buf, format="PNG", dpi=(page.xdpi or 204, page.ydpi or 196))
        pngs.append(buf.getvalue())
    return img2pdf.convert(pngs, layout_fun=_pdf_layout)
