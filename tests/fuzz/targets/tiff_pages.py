"""The TIFF pages of a fax, from outside: a stored fax file, a document given to send.

Input: byte 0 picks the reader (its low 3 bits), the rest is the file.
- 0, the spool (appliance/spool/tiffpages.py): scan_pages never raises, and counts at most the
  pages the chain claims; a damaged tail cut with keep_first_pages leaves exactly the readable
  pages, each decoding to the same pixels (refused ones to the same size), or raises and leaves
  the file as it was.
- 1, appliance/fax/pages.py read_pages against the IFD chain's count: each page decoded or refused
  (PageTooLarge) on its own; else only Pillow's errors for a file that does not decode
  (pagelimits.DECODE_ERRORS, the web's RENDER_ERRORS).
- 2, the previews (appliance/web/render.py): page_count, and render_page of the first pages, as
  thumbnail and full size, raise only PageNotFound, PageTooLarge or DECODE_ERRORS; what they
  return is no larger than one page may decode to (MAX_PAGE_PIXELS).
- 3, 4, 5, the mail's attachments (appliance/delivery/tiff_profiles.py): to_profile_s, to_tiff_f
  and to_pdf raise only ValueError (iter_pages' documented error), oversized_pages and is_tiff_f
  never raise; a Profile S or TIFF-F file that is made holds every deliverable page, 1728 wide
  for Profile S, and TIFF-F keeps every pixel (G4 is lossless).
- 6, a document to send (appliance/fax/pages.py prepare_for_sending, any format Pillow reads):
  raises only PageTooLarge (a page past the budget or longer than a fax page; Pillow's bomb guard
  included) or DECODE_ERRORS; a fax TIFF that is written is one the spool reads whole, no page
  refused.
- 7, the round trip: the bytes are the pixels of up to 3 pages 1728 wide (byte 1: bit 0 fine
  resolution, bits 1-2 the page count - 1), written with write_fax_tiff; read_pages, scan_pages,
  render_page, Profile S and TIFF-F give back exactly those pixels, and to_pdf makes a PDF.
Memory stays bounded by the per-page limits: libFuzzer's -rss_limit_mb (1 GB) catches a page
decoded whole; the file is at most MAX_LEN bytes.
"""
from __future__ import annotations

import io
import logging
import re
from pathlib import Path

from PIL import Image

from appliance.delivery.tiff_profiles import (decode_pages, is_tiff_f, oversized_pages, to_pdf, to_profile_s,
                                              to_tiff_f)
from appliance.fax.pagelimits import DECODE_ERRORS, MAX_PAGE_PIXELS, PageTooLarge, frame_problem, open_tiff
from appliance.fax.pages import FAX_WIDTH, FINE, STANDARD, prepare_for_sending, read_pages, write_fax_tiff
from appliance.spool.tiffpages import keep_first_pages, scan_pages
from appliance.web.render import PageNotFound, page_count, render_page
from tests.fuzz.targets import scratch

MAX_LEN = 65536
DICTS = ("tiff",)
#: what Pillow raises on a file that does not decode, as every reader catches it (the web pages'
#: RENDER_ERRORS, the spool's scan)
RENDER_ERRORS = DECODE_ERRORS
_DIR = scratch("fuzz-tiff-")
FILE, SENT = _DIR / "fax.tif", _DIR / "send.tif"
#: pages of the round trip: at most this many rows each, so a run stays fast
_ROUNDTRIP_ROWS = 96
for _name in ("appliance.delivery.tiff_profiles", "img2pdf"):  # "page left out", thousands a second
    logging.getLogger(_name).addHandler(logging.NullHandler())


def _pixels(im: Image.Image) -> bytes:
    return im.convert("L").tobytes()


def _spool(data: bytes) -> None:
    FILE.write_bytes(data)
    scan = scan_pages(FILE)
    assert 0 <= scan.deliverable <= scan.readable <= scan.claimed, scan
    assert all(1 <= r.page <= scan.readable and r.reason for r in scan.refused), scan
    if not 1 <= scan.readable < scan.claimed:
        return
    before = [_page_fingerprint(FILE, n) for n in range(scan.readable)]
    try:
        keep_first_pages(FILE, scan.readable)
    except Exception:  # noqa: BLE001 - the spool logs it and keeps the file as it was: check that
        assert FILE.read_bytes() == data
        return
    again = scan_pages(FILE)
    assert again.readable == again.claimed == scan.readable, (scan, again)
    assert [_page_fingerprint(FILE, n) for n in range(again.readable)] == before


def count_pages(path: Path) -> int:
    """The pages the IFD chain names, as Pillow counts them (the whole chain, decoding nothing)."""
    with open_tiff(path) as im:
        return int(getattr(im, "n_frames", 1))


def _page_fingerprint(path: Path, index: int) -> tuple:
    """Page `index`'s size and, when within the limits, its pixels."""
    with open_tiff(path) as im:
        im.seek(index)
        if frame_problem(im) is not None:
            return im.size, None
        return im.size, _pixels(im)


def _pages(data: bytes) -> None:
    try:
        pages = read_pages(io.BytesIO(data))
    except PageTooLarge:
        pages = None
    except RENDER_ERRORS:
        return
    FILE.write_bytes(data)
    try:
        n = count_pages(FILE)
    except RENDER_ERRORS:
        return  # read_pages stops at the first bad IFD; the count walks the whole chain
    assert pages is None or len(pages) == n, (len(pages), n)
    for page in pages or ():
        assert page.mode == "L" and page.width * page.height <= MAX_PAGE_PIXELS, (page.mode, page.size)


def _previews(data: bytes) -> None:
    FILE.write_bytes(data)
    try:
        n = page_count(FILE)
    except RENDER_ERRORS:
        n = 1
    for page in range(1, min(n, 3) + 1):
        for size in ("thumb", "full"):
            try:
                image = render_page(FILE, page, size)
            except (PageNotFound, PageTooLarge, *RENDER_ERRORS):
                continue
            assert image.width * image.height <= MAX_PAGE_PIXELS, (page, size, image.size)


def _deliverable(data: bytes) -> list:
    try:
        return decode_pages(data)
    except ValueError:
        return []


def _attachment(kind: int, data: bytes) -> None:
    oversized_pages(data)
    ready = is_tiff_f(data)
    try:
        out = (to_profile_s, to_tiff_f, to_pdf)[kind](data)
    except ValueError:
        return
    pages = _deliverable(data)
    if kind == 2:
        assert out.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", out)) == len(pages), len(pages)
        return
    made = decode_pages(out)
    assert len(made) == len(pages) and scan_pages_of(out) == (len(pages), len(pages)), (len(made), len(pages))
    if kind == 0:
        assert all(p.image.width == FAX_WIDTH and p.ydpi in (98, 196) for p in made)
    else:
        assert not ready or out == data
        assert [_pixels(p.image) for p in made] == [_pixels(p.image) for p in pages]


def scan_pages_of(data: bytes) -> tuple[int, int]:
    FILE.write_bytes(data)
    scan = scan_pages(FILE)
    assert not scan.refused, scan
    return scan.readable, scan.claimed


def _send(data: bytes) -> None:
    FILE.write_bytes(data)
    SENT.unlink(missing_ok=True)
    try:
        n = prepare_for_sending(FILE, SENT)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise AssertionError(f"Pillow's bomb guard escaped, not a PageTooLarge: {e}") from e
    except (PageTooLarge, *RENDER_ERRORS):
        return
    assert n >= 1
    scan = scan_pages(SENT)
    assert scan.readable == scan.claimed == n and not scan.refused, (n, scan)


def _round_trip(data: bytes) -> None:
    if len(data) < 2:
        return
    dpi = FINE if data[0] & 1 else STANDARD
    count = 1 + (data[0] >> 1 & 3) % 3
    body = data[1:]
    row = FAX_WIDTH // 8
    per_page = max(1, len(body) // count)
    originals = []
    for n in range(count):
        chunk = body[n * per_page:(n + 1) * per_page]
        rows = min(_ROUNDTRIP_ROWS, max(1, -(-len(chunk) // row)))
        raw = chunk[:rows * row].ljust(rows * row, b"\xff")
        originals.append(Image.frombytes("1", (FAX_WIDTH, rows), raw))
    write_fax_tiff(originals, FILE, dpi)
    want = [_pixels(im) for im in originals]
    assert [_pixels(p) for p in read_pages(FILE)] == want
    assert count_pages(FILE) == page_count(FILE) == count
    scan = scan_pages(FILE)
    assert scan.readable == scan.claimed == count and not scan.refused, scan
    full = render_page(FILE, count, "full")
    assert full.size == (FAX_WIDTH, round(originals[-1].height * dpi[0] / dpi[1])), full.size
    stored = FILE.read_bytes()
    assert to_tiff_f(stored) == stored  # already TIFF-F: passed on untouched
    profile_s = decode_pages(to_profile_s(stored))
    assert [(p.image.width, p.ydpi) for p in profile_s] == [(FAX_WIDTH, dpi[1])] * count
    assert [_pixels(p.image) for p in profile_s] == want
    assert to_pdf(stored).startswith(b"%PDF")


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    kind, body = data[0] & 7, data[1:]
    if kind == 0:
        _spool(body)
    elif kind == 1:
        _pages(body)
    elif kind == 2:
        _previews(body)
    elif kind in (3, 4, 5):
        _attachment(kind - 3, body)
    elif kind == 6:
        _send(body)
    else:
        _round_trip(body)
