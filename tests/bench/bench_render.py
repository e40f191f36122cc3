"""`make bench`: what rendering a document for sending costs, per page.

Three kinds of page, each in fine and standard resolution: a PDF page of text (50 lines of 10 pt
Helvetica), a PDF page that is one full-page photo (a 2550 x 3300 grey JPEG, a 300 dpi scan of
Letter) and a 12-megapixel phone photo as a JPEG attachment. Prints the median time per page in
process (render_pages: decode, scale, bilevel) and through the child process the daemon uses
(render_in_child: interpreter start, limits, render, G4 TIFF), with the child's peak memory.
"""

from __future__ import annotations

import io
import logging
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageFilter

from appliance.outbound.render import render_pages
from appliance.outbound.renderjob import render_in_child
from tests.outbound.test_render import pdf_objects, stream

PAGES = 10
RUNS = 3


def text_pdf(pages: int) -> bytes:
    words = b"Fax text renders sharp: 0123456789 The quick brown fox jumps over the lazy dog."
    content = b"".join(b"BT /F1 10 Tf 72 %d Td (%s) Tj ET\n" % (740 - i * 13, words) for i in range(50))
    return _pdf(
        [content] * pages, b"<< /Font << /F1 %d 0 R >> >>", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    )


def photo(width: int, height: int) -> Image.Image:
    """Something like a photo: smooth shading with texture, in every grey."""
    base = Image.radial_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 60).filter(ImageFilter.GaussianBlur(3))
    return Image.blend(base, noise, 0.5)


def photo_pdf(pages: int) -> bytes:
    buf = io.BytesIO()
    photo(2550, 3300).save(buf, "JPEG", quality=85)
    jpeg = buf.getvalue()
    image = stream(
        jpeg,
        b"/Type /XObject /Subtype /Image /Width 2550 /Height 3300 /ColorSpace /DeviceGray /BitsPerComponent 8 "
        b"/Filter /DCTDecode",
    )
    return _pdf([b"q 612 0 0 792 0 0 cm /Im Do Q"] * pages, b"<< /XObject << /Im %d 0 R >> >>", image)


def _pdf(contents: list[bytes], resources: bytes, shared: bytes) -> bytes:
    n = len(contents)
    shared_id = 3 + 2 * n
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(n))
    objs.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n))
    for i, content in enumerate(contents):
        objs.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources %s /Contents %d 0 R >>"
            % (resources % shared_id, 4 + 2 * i)
        )
        objs.append(stream(content))
    objs.append(shared)
    return pdf_objects(objs)


def phone_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.merge("RGB", [photo(4000, 3000)] * 3).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def in_process(name: str, data: bytes, pages: int, fine: bool) -> float:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        got = render_pages([(name, data)], fine=fine, cover=None, body_text="", max_pages=100, max_bytes=10**8)
        times.append((time.perf_counter() - t) / pages)
        assert len(got) == pages
    return statistics.median(times)


def in_child(name: str, data: bytes, pages: int, fine: bool, tmp: Path) -> tuple[float, int]:
    src = tmp / "doc"
    src.write_bytes(data)
    peak = 0
    times = []
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("faxbridge.outbound")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for _ in range(RUNS):
            t = time.perf_counter()
            n = render_in_child(
                [src], [name], tmp / "out.tif", fine=fine, cover=None, body_text="", max_pages=100, max_bytes=10**8
            )
            times.append((time.perf_counter() - t) / pages)
            assert n == pages
    finally:
        logger.removeHandler(handler)
    for r in records:
        if r.args and isinstance(r.args, tuple) and len(r.args) == 2:
            peak = max(peak, int(r.args[1]))
    return statistics.median(times), peak


def main() -> None:
    docs = [
        ("PDF text page", "text.pdf", text_pdf(PAGES), PAGES),
        ("PDF photo page (300 dpi scan)", "photo.pdf", photo_pdf(PAGES), PAGES),
        ("JPEG 12 MP phone photo", "photo.jpg", phone_jpeg(), 1),
    ]
    print(f"render cost per page (median of {RUNS} runs; child: whole job incl. start and G4 TIFF)")
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, data, pages in docs:
            for fine in (True, False):
                res = "fine" if fine else "standard"
                own = in_process(name, data, pages, fine)
                child, peak = in_child(name, data, pages, fine, Path(tmp))
                print(
                    f"  {label:30s} {res:8s} {own * 1000:7.1f} ms/page in process, "
                    f"{child * 1000:7.1f} ms/page in the child ({pages} pages/job), child peak {peak / 1024:.0f} MB"
                )


if __name__ == "__main__":
    main()
