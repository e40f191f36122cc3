"""The transmit header line ("TTI"): our identity, the date and time, page n of m on every page.

Overlaid, not shifted: the line is drawn over the top HEADER_MM (4.2 mm) of each page, whose
strip is first cleared to white, and the page keeps its length. Why: that is where fax machines
print their own header (the top ~4 mm, which a printed document leaves as margin: A4 and Letter
documents have at least 10 mm), every row below it stays exactly the rendered page (what the
far end receives can be compared with what we sent pixel for pixel below the strip), and a page
made longer by a shifted header would spill onto a second sheet at a receiver that prints at
1:1. The cost: content a full-bleed scan has in that strip is overwritten, as on any fax
machine. The line is Helvetica 9 pt (PDFium's built-in, as for the cover page), bold enough at
standard resolution to read: the strip is rendered directly at the page's own resolution and cut
darker than 50 % so thin strokes survive 98 lines per inch.
"""

from __future__ import annotations

import datetime as dt
import string
from pathlib import Path

from PIL import Image

from appliance.fax.pagelimits import check_frame, frame_dpi, open_tiff
from appliance.fax.pages import FAX_WIDTH, FINE, write_fax_tiff
from appliance.outbound.cover import PAGE_WIDTH_PT, build_pdf, pdf_string
from appliance.outbound.render import pdf_page_grey, pdfium_session

__all__ = ["HEADER_MM", "PLACEHOLDERS", "header_strip", "header_text", "stamp_header", "template_problem"]

HEADER_MM = 4.2
PLACEHOLDERS = frozenset({"ident", "date", "time", "page", "pages", "name"})
#: the longest line drawn (about 95 Helvetica 9 pt characters fit the width); longer is cut
MAX_LINE = 100
_MAX_VALUE = {"ident": 20, "name": 40}
#: grey level below which a dot of the rendered line is black (above 128: strokes stay whole)
_CUT = 176


def clean(value: str, limit: int) -> str:
    """Printable ASCII only, runs of blanks as one space, at most ``limit`` characters: the
    header goes on paper at the far end and into nobody's parser, but a name from a form or a
    configuration could hold anything."""
    text = "".join(c if 32 <= ord(c) < 127 else " " for c in value)
    return " ".join(text.split())[:limit]


def header_text(template: str, *, ident: str, name: str, when: dt.datetime, page: int, pages: int) -> str:
    """The line for one page. Placeholders: {ident} {date} {time} {page} {pages} {name}, plain
    (no format specs, conversions, attributes or indexes); ValueError for anything else."""
    values = {
        "ident": clean(ident, _MAX_VALUE["ident"]),
        "name": clean(name, _MAX_VALUE["name"]),
        "date": when.strftime("%Y-%m-%d"),
        "time": when.strftime("%H:%M"),
        "page": str(page),
        "pages": str(pages),
    }
    out = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"the header template is not valid: {e}") from e
    for literal, field, spec, conversion in parsed:
        out.append(literal)
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            raise ValueError(
                f"the header template has {{{field}}}; the placeholders are " + ", ".join(sorted(PLACEHOLDERS))
            )
        out.append(values[field])
    return clean("".join(out), MAX_LINE)


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot be a header line, in words for check-config, or None when it can."""
    try:
        header_text(template, ident="", name="", when=dt.datetime(2000, 1, 1, tzinfo=dt.UTC), page=1, pages=1)
    except ValueError as e:
        return str(e)
    return None


def strip_rows(ydpi: float) -> int:
    """How many rows the header strip takes at ``ydpi`` lines per inch (32 fine, 16 standard)."""
    return max(8, round(HEADER_MM / 25.4 * ydpi))


def header_strip(text: str, ydpi: float) -> Image.Image:
    """The header line alone: a FAX_WIDTH x strip_rows(ydpi) 1-bit strip, white with the text."""
    rows = strip_rows(ydpi)
    height_pt = HEADER_MM / 25.4 * 72
    content = b"BT /F2 9 Tf 18 %.2f Td %s Tj ET" % (height_pt - 9.5, pdf_string(text))
    data = build_pdf([content], PAGE_WIDTH_PT, height_pt)
    with pdfium_session() as pdfium:
        pdf = pdfium.PdfDocument(data)
        try:
            page = pdf[0]
            try:
                grey = pdf_page_grey(page, (PAGE_WIDTH_PT, height_pt), FAX_WIDTH, rows)
            finally:
                page.close()
        finally:
            pdf.close()
    return grey.point([0] * _CUT + [255] * (256 - _CUT)).convert("1", dither=Image.Dither.NONE)


def stamp_header(tiff_in: Path, tiff_out: Path, *, template: str, ident: str, name: str, when: dt.datetime) -> int:
    """Write ``tiff_in``'s pages to ``tiff_out`` with the header line over the top of each (an
    empty template: unchanged); returns the page count. The pages are ours (renderjob wrote
    them) but are size-checked before decoding all the same."""
    pages: list[Image.Image] = []
    dpi: tuple[int, int] = FINE
    with open_tiff(tiff_in) as im:
        count = int(getattr(im, "n_frames", 1))
        for n in range(1, count + 1):
            im.seek(n - 1)
            check_frame(im, n)
            got = frame_dpi(im)
            if n == 1 and got is not None:
                dpi = (round(got[0]), round(got[1]))
            page = im.convert("1") if im.mode != "1" else im.copy()
            if template:
                line = header_text(template, ident=ident, name=name, when=when, page=n, pages=count)
                page.paste(header_strip(line, dpi[1]), (0, 0))
            pages.append(page)
    write_fax_tiff(pages, tiff_out, dpi)
    return len(pages)
