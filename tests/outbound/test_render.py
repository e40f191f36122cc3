"""render_pages: documents to 1-bit fax pages, in process. The documents are made here, by hand:
PDFs written object by object (our own writer, not the one under test), images with Pillow."""

from __future__ import annotations

import io
import itertools
import zipfile
import zlib

import pytest
from PIL import Image, ImageChops, ImageDraw

from appliance.fax.pages import FAX_WIDTH
from appliance.outbound.cover import Cover
from appliance.outbound.render import RenderRefused, pdf_page_grey, pdfium_session, render_pages, sniff, to_bilevel

LETTER = (612, 792)
ONLY = "only PDF, TIFF, PNG, JPEG and plain text can be faxed"
A4 = (595, 842)

# ---------------------------------------------------------------------------------------------
# documents


def pdf_objects(objs: list[bytes]) -> bytes:
    """A PDF file from its objects (1 = catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def pdf(contents: list[bytes], size: tuple[float, float] = LETTER, image: Image.Image | None = None) -> bytes:
    """Pages with the given content streams; /F1 is Helvetica, /Im an 8-bit grey image if given."""
    n = len(contents)
    font_id = 3 + 2 * n
    res = b"<< /Font << /F1 %d 0 R >> /XObject << /Im %d 0 R >> >>" % (font_id, font_id + 1)
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    objs.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(n)), n))
    for i, content in enumerate(contents):
        objs.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %g %g] /Resources %s /Contents %d 0 R >>"
            % (size[0], size[1], res, 4 + 2 * i)
        )
        objs.append(stream(content))
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    im = image if image is not None else Image.new("L", (1, 1), 255)
    objs.append(
        stream(
            zlib.compress(im.tobytes()),
            b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
            b"/BitsPerComponent 8 /Filter /FlateDecode" % im.size,
        )
    )
    return pdf_objects(objs)


def text_content(lines: int = 40, size: int = 10) -> bytes:
    words = b"Fax text renders sharp: 0123456789 The quick brown fox jumps over the lazy dog."
    return b"".join(b"BT /F1 %d Tf 72 %d Td (%s) Tj ET\n" % (size, 720 - i * (size + 4), words) for i in range(lines))


def bar(k: int) -> bytes:
    """A black bar whose x position (100 pt * k from the left) identifies page k."""
    return b"0 g %d 600 40 100 re f\n" % (40 + 50 * k)


def gradient(width: int = 600, height: int = 400) -> Image.Image:
    return Image.linear_gradient("L").rotate(90, expand=True).resize((width, height))


def png(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def bar_position(page: Image.Image) -> int:
    """The left edge (dots) of the first black column in the band where the bars are."""
    band = page.convert("L").crop((0, 200, page.width, 400))
    for x in range(band.width):
        if band.crop((x, 0, x + 1, band.height)).getextrema()[0] == 0:
            return x
    return -1


def render(files: list[tuple[str, bytes]], **kw: object) -> list[Image.Image]:
    args: dict[str, object] = {"fine": True, "cover": None, "body_text": "", "max_pages": 50, "max_bytes": 20_000_000}
    args.update(kw)
    return render_pages(files, **args)  # type: ignore[arg-type]


def darkness(im: Image.Image) -> float:
    grey = im.convert("L")
    hist = grey.histogram()
    return 1 - sum(v * n for v, n in enumerate(hist)) / (255 * grey.width * grey.height)


# ---------------------------------------------------------------------------------------------
# pages, order, size


def test_pages_in_order_cover_body_then_files():
    doc = pdf([bar(1), bar(2)])
    tiff = io.BytesIO()
    frames = []
    for k in (4, 5, 6):
        im = Image.new("L", (850, 1100), 255)
        x = round((40 + 50 * k) / 612 * 850)
        ImageDraw.Draw(im).rectangle((x, 150, x + 50, 400), fill=0)
        frames.append(im)
    frames[0].save(tiff, "TIFF", save_all=True, append_images=frames[1:])
    picture = Image.new("L", (850, 1100), 255)
    x = round((40 + 50 * 3) / 612 * 850)
    ImageDraw.Draw(picture).rectangle((x, 150, x + 50, 400), fill=0)
    pages = render(
        [("a.pdf", doc), ("b.png", png(picture)), ("c.tif", tiff.getvalue()), ("d.txt", b"plain text\n")],
        cover=Cover(from_="Alice", to="Bob"),
        body_text="The message body.",
    )
    assert len(pages) == 1 + 1 + 2 + 1 + 3 + 1
    assert all(p.mode == "1" and p.width == FAX_WIDTH for p in pages)
    positions = [bar_position(p) for p in pages[2:8]]
    expected = [round((40 + 50 * k) * FAX_WIDTH / 612) for k in range(1, 7)]
    assert all(abs(got - want) <= 3 for got, want in zip(positions, expected, strict=True)), positions


@pytest.mark.parametrize(("fine", "ydpi"), [(True, 196), (False, 98)])
def test_letter_page_fills_the_width_at_the_fax_resolution(fine: bool, ydpi: int):
    # 8.5 in at 204 dpi is 1734 dots: shrunk to 1728, the length with it
    rows = round(792 * FAX_WIDTH / 612 * ydpi / 204)
    (page,) = render([("a.pdf", pdf([b"0 g 0 0 612 792 re f"]))], fine=fine)
    assert page.size == (FAX_WIDTH, rows)
    assert page.convert("L").getextrema() == (0, 0)  # black edge to edge: scaled to the full width


def test_a4_page_keeps_its_size_centred_on_the_fax_line():
    (page,) = render([("a4.pdf", pdf([b"0 g 0 0 595 842 re f"], size=A4))])
    dots = round(595 * 204 / 72)  # 1686: A4 at 204 dpi
    left = (FAX_WIDTH - dots) // 2
    assert page.size == (FAX_WIDTH, round(842 * 196 / 72))
    grey = page.convert("L")
    assert grey.crop((0, 0, left, page.height)).getextrema() == (255, 255)
    assert grey.crop((left, 0, left + dots, page.height)).getextrema() == (0, 0)
    assert grey.crop((left + dots, 0, FAX_WIDTH, page.height)).getextrema() == (255, 255)


def test_fax_tiff_passes_unchanged_and_standard_rows_are_doubled_for_fine():
    page = Image.new("1", (FAX_WIDTH, 1100), 1)
    ImageDraw.Draw(page).text((100, 100), "a fax page", fill=0)
    ImageDraw.Draw(page).line((0, 500, FAX_WIDTH, 520), fill=0, width=3)
    fine_tif, std_tif = io.BytesIO(), io.BytesIO()
    page.save(fine_tif, "TIFF", compression="group4", dpi=(204, 196))
    page.save(std_tif, "TIFF", compression="group4", dpi=(204, 98))
    (same,) = render([("fine.tif", fine_tif.getvalue())], fine=True)
    assert ImageChops.difference(same.convert("L"), page.convert("L")).getbbox() is None
    (doubled,) = render([("std.tif", std_tif.getvalue())], fine=True)
    want = page.resize((FAX_WIDTH, 2200), Image.Resampling.NEAREST)
    assert ImageChops.difference(doubled.convert("L"), want.convert("L")).getbbox() is None


def test_jpeg_and_rgba_png_render():
    photo = Image.merge("RGB", [gradient(), gradient().transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient()])
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    clear = Image.new("RGBA", (400, 300), (0, 0, 0, 0))  # transparent: white paper, not black
    pages = render([("p.jpg", buf.getvalue()), ("t.png", png(clear))])
    assert [p.width for p in pages] == [FAX_WIDTH, FAX_WIDTH]
    assert 0.3 < darkness(pages[0]) < 0.7
    assert darkness(pages[1]) == 0.0


# ---------------------------------------------------------------------------------------------
# bilevel


def test_text_is_thresholded_pixel_for_pixel():
    doc = pdf([text_content(size=9)])
    (page,) = render([("t.pdf", doc)])
    with pdfium_session() as pdfium:
        ref = pdfium.PdfDocument(doc)
        grey = pdf_page_grey(ref[0], LETTER, FAX_WIDTH, page.height)
    assert grey.histogram()[100]  # anti-aliased grey was there...  # anti-aliased grey was there...
    sharp = grey.point([0] * 128 + [255] * 128).convert("1", dither=Image.Dither.NONE)
    assert ImageChops.difference(page.convert("L"), sharp.convert("L")).getbbox() is None  # ...and is cut


@pytest.mark.parametrize("fine", [True, False])
def test_photo_is_dithered_with_the_right_darkness(fine: bool):
    picture = gradient(1200, 800)
    (page,) = render([("g.png", png(picture))], fine=fine)  # no resolution: fills the width
    grey = picture.resize(page.size)
    assert abs(darkness(page) - darkness(grey)) < 0.02
    # a pattern, not two slabs: in the middle band every row has both colours, often alternating
    row = page.convert("L").crop((0, page.height // 2, page.width, page.height // 2 + 1))
    values = list(row.getdata())
    changes = sum(1 for a, b in itertools.pairwise(values) if a != b)
    assert changes > page.width // 4


def test_photo_and_text_on_one_page_each_get_their_rule():
    picture = gradient(200, 200)
    content = text_content(lines=10) + b"q 300 0 0 300 150 100 cm /Im Do Q"
    (page,) = render([("mixed.pdf", pdf([content], image=picture))])
    grey = page.convert("L")
    text_band = grey.crop((200, 30, 1500, 300))  # the text lines: only black and white runs
    photo = grey.crop((500, 1400, 900, 1800))  # inside the picture (150..450 pt, 100..400 pt up)
    assert 0.25 < darkness(photo) < 0.75
    with pdfium_session() as pdfium:
        ref = pdf_page_grey(pdfium.PdfDocument(pdf([text_content(lines=10)]))[0], LETTER, FAX_WIDTH, page.height)
    sharp = ref.point([0] * 128 + [255] * 128).crop((200, 30, 1500, 300))
    assert ImageChops.difference(text_band, sharp).getbbox() is None


def test_to_bilevel_of_white_and_black_is_exact():
    im = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(im).rectangle((50, 50, 100, 100), fill=0)
    out = to_bilevel(im)
    assert out.mode == "1"
    assert ImageChops.difference(out.convert("L"), im).getbbox() is None


# ---------------------------------------------------------------------------------------------
# refusals


def test_kinds_are_sniffed_not_named():
    assert sniff(pdf([b""])) == "pdf"
    assert sniff(png(Image.new("L", (2, 2)))) == "png"
    assert sniff(b"hello\n") == "text"
    assert sniff("Grüße\n".encode()) == "text"
    assert sniff(b"\x00\x01binary") is None
    assert sniff(b"<!DOCTYPE html><html>") is None
    # a PNG named .pdf renders as the PNG it is
    (page,) = render([("scan.pdf", png(Image.new("L", (100, 100), 0)))])
    assert darkness(page) == 1.0


def docx() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        (
            "report.pdf",
            docx(),
            f"report.pdf: {ONLY} (it is a ZIP archive or an Office document (.docx, .xlsx, .odt))",
        ),
        (
            "a.gif",
            b"GIF89a\x01\x00\x01\x00",
            f"a.gif: {ONLY} (it is a GIF",
        ),
        ("x.bin", b"\x00\x01\x02\x03", f"x.bin: {ONLY}"),
        (
            "page.html",
            b"<html><body>hi</body></html>",
            f"page.html: {ONLY} (it is an HTML page)",
        ),
        (
            "cut.pdf",
            pdf([text_content()])[:700],
            "cut.pdf: the PDF is incomplete (it is cut off: no end-of-file marker)",
        ),
        ("bad.pdf", b"%PDF-1.4\nthis is no pdf\n%%EOF\n", "bad.pdf: the PDF cannot be faxed: it is damaged"),
        ("bad.tif", b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 64, "bad.tif: the TIFF is damaged"),
        ("bad.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "bad.png: the PNG image is damaged"),
        ("empty.txt", b"\n\n  \n", "empty.txt: the file is empty"),
        ("evil\x1b[2J\r\nname.exe", b"\x00", "evil?[2J??name.exe: only PDF"),
    ],
)
def test_refusals_name_the_file_and_the_problem(name: str, data: bytes, says: str):
    with pytest.raises(RenderRefused) as e:
        render([("fine.txt", b"ok\n"), (name, data)])
    assert str(e.value).startswith(says), str(e.value)


def test_truncated_tiff_page_is_refused():
    good = io.BytesIO()
    gradient(800, 1000).save(good, "TIFF", compression="tiff_lzw")
    with pytest.raises(RenderRefused, match=r"^cut\.tif: .*damaged"):
        render([("cut.tif", good.getvalue()[: len(good.getvalue()) // 2])])


def test_too_many_pages_refused_before_rendering():
    kids = b" ".join([b"3 0 R"] * 100_000)
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count 100000 >>" % kids,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        stream(b"0 g 0 0 612 792 re f"),
    ]
    doc = pdf_objects(objs)
    assert len(doc) < 700_000
    import time

    t = time.perf_counter()
    with pytest.raises(RenderRefused) as e:
        render([("many.pdf", doc)], max_pages=50)
    assert time.perf_counter() - t < 5
    assert str(e.value) == (
        "many.pdf: the fax would have more than 50 pages (100,000 in this document); at most 50 can be sent at once"
    )


def test_page_count_includes_cover_and_body():
    three = pdf([b"", b"", b""])
    assert len(render([("3.pdf", three)], max_pages=3)) == 3
    with pytest.raises(RenderRefused, match=r"^3\.pdf: the fax would have more than 3 pages"):
        render([("3.pdf", three)], max_pages=3, cover=Cover(to="x"))


def test_total_size_refused():
    with pytest.raises(RenderRefused) as e:
        render([("a.txt", b"a" * 600), ("b.txt", b"b" * 600)], max_bytes=1000)
    assert str(e.value) == "b.txt: the documents are more than 0.001 MB together; at most 0.001 MB can be faxed at once"


def test_page_200_inches_long_is_refused():
    with pytest.raises(RenderRefused) as e:
        render([("long.pdf", pdf([b""], size=(612, 14400)))])
    assert str(e.value).startswith("long.pdf: page 1 is 39,064 rows long at 196 lines per inch (5.06 m); a fax page")
    assert str(e.value).endswith("(the page is 8.5 x 200.0 inches)")


def huge_png(width: int, height: int) -> bytes:
    """A PNG header claiming width x height, no pixel data: refused before anything decodes."""
    import struct

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def test_50000_square_png_is_refused():
    with pytest.raises(RenderRefused) as e:
        render([("bomb.png", huge_png(50_000, 50_000))])
    assert str(e.value) == "bomb.png: the picture is too large to fax (more than 40.8 million pixels)"


def test_picture_just_over_the_budget_is_refused_by_its_header():
    # Pillow's guard (an error outside pytest, which turns it back into a warning) or our own check
    with pytest.raises(RenderRefused) as e:
        render([("big.png", huge_png(7000, 6000))])
    assert str(e.value) in (
        "big.png: page 1 is 7,000 x 6,000 pixels; a picture may have at most 40.8 million",
        "big.png: the picture is too large to fax (more than 40.8 million pixels)",
    )


def test_narrow_strip_picture_too_long_once_scaled():
    with pytest.raises(RenderRefused, match=r"^strip\.png: page 1 is [\d,]+ rows long"):
        render([("strip.png", png(Image.new("L", (10, 2000), 255)))])


def test_text_file_pages_and_wrapping():
    text = "\n".join(f"line {n} " + "word " * 30 for n in range(60)) + "\fnext page\n"
    pages = render([("long.txt", text.encode())])
    # 60 lines of ~155 characters wrap to 2 lines each = 120 lines, 52 a page: 3 pages, then the \f
    assert len(pages) == 4
    assert all(0 < darkness(p) < 0.2 for p in pages)


def many_directory_tiff(n: int) -> bytes:
    """A TIFF of ``n`` 1 x 1 pages, 102 bytes a directory, all pointing at one byte of pixels."""
    import struct

    ifd_size = 2 + 8 * 12 + 4
    data_at = 8 + n * ifd_size
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for i in range(n):
        entries = [(256, 3, 1), (257, 3, 1), (258, 3, 1), (259, 3, 1), (262, 3, 0), (273, 4, data_at)]
        entries += [(278, 3, 1), (279, 4, 1)]
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            out += struct.pack("<HHII", tag, kind, 1, value)
        out += struct.pack("<I", 8 + (i + 1) * ifd_size if i + 1 < n else 0)
    return bytes(out + b"\x00")


def test_tiff_with_100000_directories_refused_quickly():
    import time

    doc = many_directory_tiff(100_000)
    assert len(render([("two.tif", many_directory_tiff(2))])) == 2
    t = time.perf_counter()
    with pytest.raises(RenderRefused) as e:
        render([("many.tif", doc)], max_pages=50)
    assert time.perf_counter() - t < 2
    assert str(e.value) == (
        "many.tif: the fax would have more than 50 pages (more than 50 in this document); "
        "at most 50 can be sent at once"
    )


def test_password_protected_pdf_is_refused(tmp_path):
    import pikepdf

    src = tmp_path / "plain.pdf"
    src.write_bytes(pdf([text_content()]))
    locked = tmp_path / "locked.pdf"
    with pikepdf.open(src) as doc:
        doc.save(locked, encryption=pikepdf.Encryption(user="secret", owner="owner"))
    with pytest.raises(RenderRefused) as e:
        render([("locked.pdf", locked.read_bytes())])
    assert str(e.value) == "locked.pdf: the PDF cannot be faxed: it is password-protected"
    # only an owner password (printing allowed without one): renders
    open_one = tmp_path / "owner-only.pdf"
    with pikepdf.open(src) as doc:
        doc.save(open_one, encryption=pikepdf.Encryption(user="", owner="owner"))
    assert len(render([("owner-only.pdf", open_one.read_bytes())])) == 1


def test_landscape_page_is_turned_top_to_the_left():
    # A4 landscape, a black band along its top edge and a short bar at its top left corner
    content = b"0 g 0 555 842 40 re f 0 g 0 400 40 155 re f"
    (page,) = render([("wide.pdf", pdf([content], size=(842, 595)))])
    dots = round(595 * 204 / 72)
    left = (FAX_WIDTH - dots) // 2
    assert page.size == (FAX_WIDTH, round(842 * 196 / 72))  # full size, not shrunk to 70 %
    grey = page.convert("L")
    band = round(40 * 204 / 72)
    assert grey.crop((left + 2, 0, left + band - 2, page.height)).getextrema() == (0, 0)  # the top: left
    assert grey.crop((left + band + 2, 0, FAX_WIDTH, page.height - 140)).getextrema() == (255, 255)
    # the page's top left corner lands at the bottom left: the bar is there, not at the top
    assert grey.crop((left + band + 2, page.height - 100, left + band + 100, page.height - 5)).getextrema() == (0, 0)


def _encoded(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _grad() -> Image.Image:
    return gradient(400, 300)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("rgb.jpg", lambda: _encoded(Image.merge("RGB", [_grad()] * 3), "JPEG")),
        ("16bit.png", lambda: _encoded(_grad().convert("I").point(lambda v: v * 257).convert("I;16"), "PNG")),
        ("palette.png", lambda: _encoded(_grad().convert("P"), "PNG")),
        ("alpha.png", lambda: _encoded(_grad().convert("LA"), "PNG")),
        ("int32.tif", lambda: _encoded(_grad().convert("I"), "TIFF")),
        ("int32-wide.tif", lambda: _encoded(_grad().convert("I").point(lambda v: v * 1000), "TIFF")),
        ("float.tif", lambda: _encoded(_grad().convert("F"), "TIFF")),
    ],
)
def test_every_pixel_format_becomes_the_same_grey(name, make):
    (page,) = render([(name, make())])
    assert abs(darkness(page) - 0.5) < 0.03


def test_a_picture_mentioning_pdf_is_still_a_picture():
    data = png(Image.new("L", (10, 10), 0))
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "%PDF-1.7 converted from a PDF")
    tagged = png(Image.new("L", (10, 10), 0), pnginfo=info)
    assert b"%PDF-" in tagged[:1024]
    assert sniff(tagged) == sniff(data) == "png"
