"""Documents to fax pages: PDF, TIFF, PNG, JPEG and plain text become 1-bit pages 1728 dots wide.

Everything here is hostile input (a mail attachment, an upload), so the work is bounded before
it starts: the total size first, then every file's kind by its first bytes (never its name),
then the page count of everything together (a PDF's page tree, a TIFF's directory chain) against
``max_pages``, then each page's size from its header before a pixel is decoded. What these checks
cannot see (a PDF whose content stream inflates to gigabytes, a pathological font) is what
``renderjob.render_in_child`` is for: the daemon runs this module only in a child process with
memory and CPU limits.

Geometry: a page keeps its physical size at 204 dpi when it fits the fax width (A4 is 1687 dots,
centred on the 1728-dot line, as a fax machine scans it), and is shrunk to 1728 dots when wider
(US Letter, screenshots); a landscape PDF page is turned a quarter instead (see _pdf_pages).
Rows are at 196 (fine) or 98 (standard) lines per inch, so nothing is squashed. Pictures without
a usable resolution (none stated, or a screen's 72 or 96 dpi) fill the width.

Bilevel: see ``to_bilevel``.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import io
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from appliance.fax.pagelimits import (
    DECODE_ERRORS,
    MAX_PAGE_PIXELS,
    check_frame,
    frame_dpi,
    open_tiff,
    page_problem,
)
from appliance.fax.pages import FAX_WIDTH, FINE, STANDARD
from appliance.outbound.cover import Cover, cover_pdf, text_page_count, text_pdf

__all__ = [
    "ACCEPTED",
    "Cover",
    "RenderRefused",
    "fax_dpi",
    "pdf_page_grey",
    "pdfium_session",
    "preview_png",
    "iter_pages",
    "render_pages",
    "safe_name",
    "sniff",
    "to_bilevel",
]

ACCEPTED = "only PDF, TIFF, PNG, JPEG and plain text can be faxed"

#: to_bilevel's rule: a dot is "smooth grey" when it and its 8 neighbours are all between MID_LOW
#: and MID_HIGH; a TILE x TILE tile (2 mm) is a picture when at least PHOTO_SHARE of it is smooth
#: grey; picture tiles grow by GROW tiles on every side to take in a picture's darkest and
#: lightest parts and its edges.
MID_LOW = 32
MID_HIGH = 224
TILE = 16
PHOTO_SHARE = 0.25
GROW = 2
THRESHOLD = 128

#: below this a picture's stated resolution is a screen's default (72, 96), not a scan's or a
#: fax's (204 x 98 counts: its vertical half may be as low as half of this): fill the width
PLAUSIBLE_DPI = 100.0

_pdfium_lock = threading.Lock()
#: non-empty once PDFium was told to use no system fonts (once per process)
_fonts_off: list[bool] = []


class RenderRefused(ValueError):
    """A document that will not be faxed; str() names the file and the reason in plain words."""


def fax_dpi(fine: bool) -> tuple[int, int]:
    return FINE if fine else STANDARD


def safe_name(name: str) -> str:
    """The sender's file name, safe to put in a sentence: printable, at most 80 characters."""
    clean = "".join(c if c.isprintable() else "?" for c in name).strip() or "the document"
    return clean if len(clean) <= 80 else clean[:77] + "..."


#: what else people attach, by its first bytes, so the refusal can say what the file is
_OTHER_KINDS = (
    (b"PK\x03\x04", "a ZIP archive or an Office document (.docx, .xlsx, .odt)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.doc, .xls)"),
    (b"GIF8", "a GIF image"),
    (b"%!PS", "a PostScript file"),
    (b"{\\rtf", "an RTF document"),
    (b"RIFF", "a RIFF file (WebP, WAV, AVI)"),
)


def sniff(data: bytes) -> str | None:
    """The document's kind from its content: "pdf", "tiff", "png", "jpeg", "text", or None."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if b"%PDF-" in data[:1024]:  # PDF readers look this far for the header (mail gateways prepend)
        return "pdf"
    if any(data.startswith(magic) for magic, _ in _OTHER_KINDS):
        return None
    return "text" if _as_text(data) is not None else None


def _as_text(data: bytes) -> str | None:
    """Plain text in UTF-8 (a BOM allowed) or Windows-1252; None for anything with control
    characters other than tab, line breaks and form feed, or HTML."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            return None
    if any((ord(c) < 32 and c not in "\t\n\r\f") or c == "\x7f" for c in text):
        return None
    head = text.lstrip()[:15].lower()
    if head.startswith(("<!doctype html", "<html")):
        return None
    return text


def _what_it_is(data: bytes) -> str:
    for magic, what in _OTHER_KINDS:
        if data.startswith(magic):
            return f" (it is {what})"
    if data.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return " (it is an HTML page)"
    return ""


# ---------------------------------------------------------------------------------------------
# bilevel conversion


def to_bilevel(grey: Image.Image) -> Image.Image:
    """An 8-bit page to 1 bit: text cut sharp at 50 % grey, pictures dithered, decided per 2 mm tile.

    Why "smooth grey" and not just grey: anti-aliased text has grey dots only along its strokes'
    edges, one or two dots wide, and small text packs enough of them into a tile (up to 45 % at
    6-9 pt) to look like a picture by counting alone; an edge never has a whole 3x3 neighbourhood
    of grey, a photo, a scan's shading or a grey fill mostly has. Measured on PDF text of 6-30 pt
    in fine and standard: at most 11 % of a tile is smooth grey; a photo or a gradient: 60-100 %.
    So the cut is 25 %. Pictures are dithered with Floyd-Steinberg, which keeps their mean
    darkness; everything else, text and line art, is a plain threshold, pixel for pixel what the
    rendering was. A page without a picture tile is only thresholded (the common, fast case).
    """
    grey = grey if grey.mode == "L" else grey.convert("L")
    sharp = grey.point([0] * THRESHOLD + [255] * (256 - THRESHOLD)).convert("1", dither=Image.Dither.NONE)
    mid = grey.point([255 if MID_LOW <= v < MID_HIGH else 0 for v in range(256)])
    # 3x3 erosion: the 3x3 mean of a 0/255 mask is 255 only where all nine are (a box blur is
    # four times faster than a MinFilter on a whole page)
    smooth = mid.filter(ImageFilter.BoxBlur(1)).point([255 if v >= 250 else 0 for v in range(256)])
    tiles = smooth.reduce(TILE)
    cut = math.ceil(PHOTO_SHARE * 255)
    photo = tiles.point([255 if v >= cut else 0 for v in range(256)])
    if photo.getbbox() is None:
        return sharp
    photo = photo.filter(ImageFilter.MaxFilter(2 * GROW + 1))
    mask = photo.resize((tiles.width * TILE, tiles.height * TILE), Image.Resampling.NEAREST).crop(
        (0, 0, grey.width, grey.height)
    )
    dithered = grey.convert("1", dither=Image.Dither.FLOYDSTEINBERG)
    return Image.composite(dithered, sharp, mask)


def _on_fax_line(page: Image.Image) -> Image.Image:
    """A page narrower than the fax line centred on it, white either side (mode kept)."""
    if page.width == FAX_WIDTH:
        return page
    line = Image.new(page.mode, (FAX_WIDTH, page.height), 255 if page.mode == "L" else 1)
    line.paste(page, ((FAX_WIDTH - page.width) // 2, 0))
    return line


def _geometry(
    width: float, height: float, src_dpi: tuple[float, float] | None, dpi: tuple[int, int], *, physical: bool = False
) -> tuple[int, int]:
    """The dots x rows a source of ``width`` x ``height`` (pixels at ``src_dpi``; for a PDF,
    ``physical``, points at 72 dpi) becomes at the fax ``dpi``: physical size when it fits, else
    shrunk to the fax width; a picture without a usable resolution: the fax width. Aspect kept."""
    usable = src_dpi is not None and (physical or (src_dpi[0] >= PLAUSIBLE_DPI and src_dpi[1] >= PLAUSIBLE_DPI / 2))
    if src_dpi is not None and usable:
        sx = dpi[0] / src_dpi[0]
        sy = dpi[1] / src_dpi[1]
        if width * sx > FAX_WIDTH:
            shrink = FAX_WIDTH / (width * sx)
            sx, sy = sx * shrink, sy * shrink
    else:
        sx = FAX_WIDTH / width
        sy = sx * dpi[1] / dpi[0]
    dots = max(1, min(FAX_WIDTH, round(width * sx)))
    rows_f = height * sy
    rows = max(1, round(rows_f)) if rows_f < 2**31 else 2**31
    return dots, rows


# ---------------------------------------------------------------------------------------------
# the kinds


@contextmanager
def pdfium_session() -> Iterator[Any]:
    """PDFium, one caller at a time (it is not thread-safe), never looking at system fonts."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    with _pdfium_lock:
        if not _fonts_off:
            # no system font scan: the same pixels everywhere, and the box has no fonts anyway;
            # PDFium draws non-embedded fonts with its built-in standard fonts
            pdfium_c.FPDF_SetSystemFontInfo(None)
            _fonts_off.append(True)
        yield pdfium


def pdf_page_grey(
    page: Any, size_pt: tuple[float, float], dots: int, rows: int, *, turned: bool = False
) -> Image.Image:
    """One PDF page (a pypdfium2 PdfPage) drawn at exactly ``dots`` x ``rows``, 8-bit grey, white
    behind (the x and y scales differ: fax dots are not square). ``turned``: a quarter turn
    anticlockwise, the page's top along the left edge, as printers put a landscape page on paper."""
    import pypdfium2.raw as pdfium_c

    w, h = size_pt
    if turned:
        sx, sy = dots / h, rows / w
        matrix = pdfium_c.FS_MATRIX(0, -sy, sx, 0, 0, w * sy)
    else:
        sx, sy = dots / w, rows / h
        matrix = pdfium_c.FS_MATRIX(sx, 0, 0, sy, 0, 0)
    bitmap = pdfium_c.FPDFBitmap_CreateEx(dots, rows, pdfium_c.FPDFBitmap_Gray, None, 0)
    if not bitmap:
        raise MemoryError(f"no memory for a page of {dots} x {rows} dots")
    try:
        pdfium_c.FPDFBitmap_FillRect(bitmap, 0, 0, dots, rows, 0xFFFFFFFF)
        clip = pdfium_c.FS_RECTF(0, 0, dots, rows)
        pdfium_c.FPDF_RenderPageBitmapWithMatrix(bitmap, page, matrix, clip, pdfium_c.FPDF_ANNOT)
        stride = pdfium_c.FPDFBitmap_GetStride(bitmap)
        pixels = (ctypes.c_ubyte * (stride * rows)).from_address(pdfium_c.FPDFBitmap_GetBuffer(bitmap))
        # copied out before the bitmap is freed
        return Image.frombuffer("L", (dots, rows), pixels, "raw", "L", stride, 1).copy()
    finally:
        pdfium_c.FPDFBitmap_Destroy(bitmap)


@dataclass
class _Doc:
    """One input file, sniffed and counted, ready to render."""

    name: str
    kind: str
    data: bytes
    pages: int
    text: str = ""


_PDF_ERRORS = {
    1: "it is damaged or not a PDF (PDFium: unknown error)",
    2: "it could not be read",
    3: "it is damaged (PDFium cannot parse it)",
    4: "it is password-protected",
    5: "it is protected by a security handler",
}


def _open_pdf(pdfium: Any, doc: _Doc) -> Any:
    tail = doc.data[-1024:]
    if b"%%EOF" not in tail:
        raise RenderRefused(f"{doc.name}: the PDF is incomplete (it is cut off: no end-of-file marker)")
    try:
        return pdfium.PdfDocument(doc.data)
    except pdfium.PdfiumError as e:
        code = getattr(e, "err_code", None)
        reason = _PDF_ERRORS.get(code, "it cannot be read") if isinstance(code, int) else "it cannot be read"
        raise RenderRefused(f"{doc.name}: the PDF cannot be faxed: {reason}") from e


def _count(doc: _Doc, cap: int) -> int:
    """Pages of one document, from its structure only (a PDF's page count, a TIFF's directories,
    walked no further than ``cap`` + 1: a TIFF of 200,000 tiny directories is refused at once)."""
    if doc.kind == "pdf":
        with pdfium_session() as pdfium:
            pdf = _open_pdf(pdfium, doc)
            try:
                return len(pdf)
            finally:
                pdf.close()
    if doc.kind == "tiff":
        try:
            with open_tiff(io.BytesIO(doc.data)) as im:
                n = 1
                while n <= cap:
                    try:
                        im.seek(n)
                    except EOFError:
                        break
                    n += 1
                return n
        except DECODE_ERRORS as e:
            raise RenderRefused(f"{doc.name}: the TIFF is damaged ({_why(e)})") from e
    if doc.kind == "text":
        return text_page_count(doc.text)
    return 1


def _why(e: BaseException) -> str:
    text = " ".join(str(e).split())[:160]
    return text or type(e).__name__


def _pdf_pages(doc: _Doc, dpi: tuple[int, int], what: str = "PDF") -> Iterator[Image.Image]:
    with pdfium_session() as pdfium:
        pdf = _open_pdf(pdfium, doc)
        try:
            for i in range(len(pdf)):
                w, h = pdf.get_page_size(i)
                if not (math.isfinite(w) and math.isfinite(h)) or w <= 0 or h <= 0:
                    raise RenderRefused(f"{doc.name}: page {i + 1} of the {what} has no size")
                # a landscape page wider than the fax line is turned rather than shrunk: its text
                # stays at full size (a quarter turn of the sheet to read, as on any printer)
                turned = w > h and w / 72 * dpi[0] > FAX_WIDTH
                dots, rows = _geometry(*((h, w) if turned else (w, h)), (72.0, 72.0), dpi, physical=True)
                problem = page_problem(FAX_WIDTH, rows, dpi[1], i + 1)
                if problem is not None:
                    inches = f"{w / 72:.1f} x {h / 72:.1f} inches"
                    raise RenderRefused(f"{doc.name}: {problem} (the page is {inches})")
                page = _load_page(pdfium, pdf, i, f"{doc.name}: page {i + 1} of the {what} cannot be read")
                try:
                    grey = pdf_page_grey(page, (w, h), dots, rows, turned=turned)
                finally:
                    page.close()
                yield to_bilevel(_on_fax_line(grey))
        finally:
            pdf.close()


def _load_page(pdfium: Any, pdf: Any, index: int, refusal: str) -> Any:
    try:
        return pdf[index]
    except pdfium.PdfiumError as e:
        raise RenderRefused(refusal) from e


def _image_pages(doc: _Doc, dpi: tuple[int, int]) -> Iterator[Image.Image]:
    what = doc.kind.upper()
    try:
        im = open_tiff(io.BytesIO(doc.data)) if doc.kind == "tiff" else Image.open(io.BytesIO(doc.data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        limit = f"{MAX_PAGE_PIXELS / 1e6:.1f} million pixels"
        raise RenderRefused(f"{doc.name}: the picture is too large to fax (more than {limit})") from e
    except DECODE_ERRORS as e:
        raise RenderRefused(f"{doc.name}: the {what} image is damaged ({_why(e)})") from e
    with im:
        if im.format != what:
            raise RenderRefused(f"{doc.name}: the {what} image is damaged (it reads as {im.format})")
        for n in range(1, doc.pages + 1):
            try:
                im.seek(n - 1)
                yield _image_page(doc.name, im, n, dpi)
            except RenderRefused:
                raise
            except DECODE_ERRORS as e:
                raise RenderRefused(f"{doc.name}: page {n} of the {what} image is damaged ({_why(e)})") from e


def _image_page(name: str, frame: Image.Image, n: int, dpi: tuple[int, int]) -> Image.Image:
    """One image frame: its size checked from the header, then decoded, scaled and made bilevel."""
    width, height = frame.size
    if width <= 0 or height <= 0 or width * height > MAX_PAGE_PIXELS:
        raise RenderRefused(
            f"{name}: page {n} is {width:,} x {height:,} pixels; a picture may have at most "
            f"{MAX_PAGE_PIXELS / 1e6:.1f} million"
        )
    src_dpi = frame_dpi(frame)
    dots, rows = _geometry(width, height, src_dpi, dpi)
    problem = page_problem(FAX_WIDTH, rows, dpi[1], n)
    if problem is not None:
        raise RenderRefused(f"{name}: {problem} (the picture is {width:,} x {height:,} pixels)")
    if frame.mode == "1" and (dots, rows) == (width, height):
        return _on_fax_line(frame.copy())  # a fax page already: taken as it is
    if frame.mode == "1" and dots == width:
        # a fax page at another vertical resolution: rows repeated or dropped, nothing greyed
        return _on_fax_line(frame.resize((dots, rows), Image.Resampling.NEAREST))
    if frame.format == "JPEG":
        frame.draft("L", (dots, rows))  # decode at 1/2, 1/4, 1/8 when that is still large enough
    if frame.format == "JPEG" and frame.getexif().get(0x0112, 1) != 1:
        oriented = ImageOps.exif_transpose(frame)  # a phone photo taken sideways: turned upright
        if oriented.size != frame.size:
            dots, rows = _geometry(oriented.width, oriented.height, src_dpi, dpi)
            problem = page_problem(FAX_WIDTH, rows, dpi[1], n)
            if problem is not None:
                raise RenderRefused(f"{name}: {problem}")
        frame = oriented
    grey = _grey(frame)
    if grey.size != (dots, rows):
        grey = grey.resize((dots, rows), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return to_bilevel(_on_fax_line(grey))


def _grey(im: Image.Image) -> Image.Image:
    """Any mode to 8-bit grey, transparency over white paper."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("L")
    if im.mode.startswith("I;16"):
        return im.point(lambda v: v / 256).convert("L")
    if im.mode in ("I", "F"):  # integers or floats of any range: the brightest is white or less
        hi = im.getextrema()[1]
        scale = 255 / float(hi) if isinstance(hi, int | float) and hi > 255 else 1.0
        return im.point(lambda v: v * scale).convert("L")
    return im.convert("L")


# ---------------------------------------------------------------------------------------------
# the whole fax


def _inspect(name: str, data: bytes, cap: int) -> _Doc:
    label = safe_name(name)
    kind = sniff(data)
    if kind is None:
        raise RenderRefused(f"{label}: {ACCEPTED}{_what_it_is(data)}")
    text = ""
    if kind == "text":
        text = _as_text(data) or ""
        if not text.strip():
            raise RenderRefused(f"{label}: the file is empty")
    doc = _Doc(label, kind, data, 0, text)
    doc.pages = _count(doc, cap)
    if doc.pages < 1:
        raise RenderRefused(f"{label}: the document has no pages")
    return doc


def render_pages(
    files: list[tuple[str, bytes]],
    *,
    fine: bool,
    cover: Cover | None,
    body_text: str,
    max_pages: int,
    max_bytes: int,
) -> list[Image.Image]:
    """Every page of the fax, in order: the cover, the body text (if any), then each file's pages;
    1-bit, FAX_WIDTH wide, at FINE or STANDARD (``fax_dpi(fine)``). See ``iter_pages``."""
    return list(
        iter_pages(files, fine=fine, cover=cover, body_text=body_text, max_pages=max_pages, max_bytes=max_bytes)
    )


def iter_pages(
    files: list[tuple[str, bytes]],
    *,
    fine: bool,
    cover: Cover | None,
    body_text: str,
    max_pages: int,
    max_bytes: int,
    on_file: Callable[[int], None] | None = None,
) -> Iterator[Image.Image]:
    """``render_pages`` one page at a time, so that a 50-page fax never has to be in memory at once
    (the child writes each page to the TIFF as it comes: 3.7 MB a page decoded).

    Refuses (RenderRefused, naming the file) before the first page: over ``max_bytes``
    together, a kind that is not accepted, a damaged or truncated file, more than ``max_pages``
    in all. While rendering: a page over the size limits. ``on_file(i)`` is called before file
    ``i`` (0-based; -1 for the cover and body) is rendered, so the child can say which file it
    was on if a limit kills it.
    """
    dpi = fax_dpi(fine)
    total = len(body_text.encode("utf-8", "surrogatepass"))
    for name, data in files:
        total += len(data)
        if total > max_bytes:
            raise RenderRefused(
                f"{safe_name(name)}: the documents are more than {max_bytes / 1e6:g} MB together; at most "
                f"{max_bytes / 1e6:g} MB can be faxed at once"
            )
    body = body_text.strip("\n\r ")
    docs = [_inspect(name, data, max_pages) for name, data in files]
    pages = (1 if cover is not None else 0) + (text_page_count(body) if body else 0)
    for doc in docs:
        pages += doc.pages
        if pages > max_pages:
            # a TIFF's directories are walked only just past the limit
            these = f"more than {max_pages}" if doc.kind == "tiff" and doc.pages > max_pages else f"{doc.pages:,}"
            raise RenderRefused(
                f"{doc.name}: the fax would have more than {max_pages} pages ({these} in this "
                f"document); at most {max_pages} can be sent at once"
            )
    if pages == 0:
        raise RenderRefused("the fax has no pages: no documents, no text")
    if on_file is not None:
        on_file(-1)
    if cover is not None:
        date = cover.date or dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M")
        cover_doc = _Doc("the cover page", "pdf", cover_pdf(cover, pages, date), 1)
        yield from _pdf_pages(cover_doc, dpi)
    if body:
        yield from _pdf_pages(_Doc("the message text", "pdf", text_pdf(body), 0), dpi)
    for i, doc in enumerate(docs):
        if on_file is not None:
            on_file(i)
        if doc.kind == "pdf":
            yield from _pdf_pages(doc, dpi)
        elif doc.kind == "text":
            yield from _pdf_pages(_Doc(doc.name, "pdf", text_pdf(doc.text), doc.pages), dpi, "text")
        else:
            yield from _image_pages(doc, dpi)


def preview_png(tiff: Path, page: int, width: int = 600) -> bytes:
    """Page ``page`` (1-based) of a fax TIFF as a PNG ``width`` pixels wide, its height corrected
    for the fax's non-square dots, for the web page's preview of what will be sent. IndexError
    for a page the TIFF does not have; the page's size is checked before it is decoded."""
    width = max(16, min(width, FAX_WIDTH))
    with open_tiff(tiff) as im:
        if not 1 <= page <= int(getattr(im, "n_frames", 1)):
            raise IndexError(f"the fax has no page {page}")
        im.seek(page - 1)
        check_frame(im, page)
        dpi = frame_dpi(im) or (FINE[0], FINE[1])
        height = max(1, round(im.height * (dpi[0] / dpi[1]) * width / im.width))
        small = im.convert("L").resize((width, height), Image.Resampling.BOX)
    buf = io.BytesIO()
    small.save(buf, "PNG", optimize=True)
    return buf.getvalue()
