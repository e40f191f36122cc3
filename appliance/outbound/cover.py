"""Pages we write ourselves: the cover page, plain text (a mail's body, a .txt file) and the
transmit header line, each as a small PDF that the PDF renderer then draws.

Why PDF and not Pillow's text drawing: PDFium carries the 14 standard PDF fonts built in (Courier,
Helvetica, ...), so plain text gets a real monospaced font (tables and signatures in mails line
up) and the cover page a clean sans, with no font package on the box (image/packages.txt has
none) and the same pixels on a developer's machine, since the renderer never looks at system
fonts (render.py turns that off). Text is set in WinAnsi (cp1252): characters outside it become
"?". Pure: bytes out, nothing read or written.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

#: A page we write is exactly the fax width (1728 dots at 204 dpi = 8.47 in) by US Letter's 11 in,
#: so it renders to 1728 dots with no scaling and fits Letter and A4 paper alike.
PAGE_WIDTH_PT = 1728 / 204 * 72
PAGE_HEIGHT_PT = 11 * 72

#: Plain text: Courier 11 pt on 13 pt lines, 80 columns, 52 lines a page (half-inch side margins,
#: three-quarter-inch top and bottom). 11 pt keeps the x-height at 5 rows in standard resolution.
TEXT_SIZE = 11
TEXT_LEADING = 13
TEXT_COLUMNS = 80
TEXT_LINES = 52
TEXT_LEFT = 36.0
TEXT_TOP = 54.0

FONTS = {"F1": "Courier", "F2": "Helvetica", "F3": "Helvetica-Bold"}


@dataclass
class Cover:
    """What the cover page says; every field is the sender's text, shown as typed (cleaned)."""

    from_: str = ""
    to: str = ""
    subject: str = ""
    note: str = ""
    #: the date as the reader should see it ("2026-12-08 14:05 CET"); "" = today, in the
    #: renderer's local time (the daemon formats it with appliance.localtime)
    date: str = ""


def pdf_string(text: str) -> bytes:
    """``text`` as a PDF literal string in WinAnsi: unknown characters "?", controls dropped."""
    clean = "".join(c for c in text if c.isprintable())
    raw = clean.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def build_pdf(contents: list[bytes], width: float = PAGE_WIDTH_PT, height: float = PAGE_HEIGHT_PT) -> bytes:
    """A PDF with one page per content stream, all of ``width`` x ``height`` points, the fonts of
    FONTS (F1 Courier, F2 Helvetica, F3 Helvetica-Bold) available to every page."""
    n = len(contents)
    font_ids = {name: 3 + 2 * n + i for i, name in enumerate(FONTS)}
    fonts = b" ".join(b"/%s %d 0 R" % (name.encode(), oid) for name, oid in font_ids.items())
    kids = b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(n))
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n)]
    for i, content in enumerate(contents):
        objs.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.3f %.3f] /Resources << /Font << %s >> >> "
            b"/Contents %d 0 R >>" % (width, height, fonts, 4 + 2 * i)
        )
        objs.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    for base in FONTS.values():
        objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /%s /Encoding /WinAnsiEncoding >>" % base.encode())
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def _text_op(font: str, size: float, x: float, y_from_top: float, text: str) -> bytes:
    y = PAGE_HEIGHT_PT - y_from_top
    return b"BT /%s %.1f Tf %.2f %.2f Td %s Tj ET\n" % (font.encode(), size, x, y, pdf_string(text))


def text_lines(text: str, columns: int = TEXT_COLUMNS) -> list[list[str]]:
    """Plain text laid out as pages of lines: tabs to 8 columns, long lines wrapped at words (or
    cut when a word is longer than a line), a form feed starts a new page."""
    pages: list[list[str]] = []
    for chunk in text.replace("\r\n", "\n").replace("\r", "\n").split("\f"):
        lines: list[str] = []
        for line in chunk.split("\n"):
            line = line.expandtabs(8).rstrip()
            if len(line) <= columns:
                lines.append(line)
            else:
                lines.extend(textwrap.wrap(line, columns, break_long_words=True, drop_whitespace=True) or [""])
        while lines and not lines[-1]:
            lines.pop()
        pages.extend(lines[i : i + TEXT_LINES] for i in range(0, max(len(lines), 1), TEXT_LINES))
    return pages


def text_page_count(text: str) -> int:
    """How many pages ``text_pdf(text)`` has, without building it."""
    return len(text_lines(text))


def text_pdf(text: str) -> bytes:
    """Plain text as a PDF in Courier, TEXT_COLUMNS x TEXT_LINES a page."""
    contents = []
    for lines in text_lines(text):
        ops = b"".join(
            _text_op("F1", TEXT_SIZE, TEXT_LEFT, TEXT_TOP + TEXT_SIZE + n * TEXT_LEADING, line)
            for n, line in enumerate(lines)
            if line
        )
        contents.append(ops)
    return build_pdf(contents)


def cover_pdf(cover: Cover, pages: int, date: str) -> bytes:
    """The cover page: a large "Fax", then To, From, Subject, Date and Pages (the cover included),
    a rule, and the note wrapped in Helvetica. Fields are cut at 70 characters, the note at 40
    lines, so whatever a sender types stays on one page."""
    ops = [_text_op("F3", 40, 54, 100, "Fax")]
    y = 160.0
    rows = [("To", cover.to), ("From", cover.from_), ("Subject", cover.subject), ("Date", date), ("Pages", str(pages))]
    for label, value in rows:
        ops.append(_text_op("F3", 13, 54, y, label + ":"))
        ops.append(_text_op("F2", 13, 144, y, " ".join(value.split())[:70]))
        y += 24
    y += 6
    ops.append(b"2 w %.2f %.2f m %.2f %.2f l S\n" % (54, PAGE_HEIGHT_PT - y, PAGE_WIDTH_PT - 54, PAGE_HEIGHT_PT - y))
    y += 30
    note_lines: list[str] = []
    for para in cover.note.replace("\r\n", "\n").split("\n"):
        note_lines.extend(textwrap.wrap(para.expandtabs(4), 75) or [""])
    for line in note_lines[:40]:
        if line:
            ops.append(_text_op("F2", 12, 54, y, line))
        y += 15
    return build_pdf([b"".join(ops)])
