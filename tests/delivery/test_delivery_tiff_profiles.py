"""Profile S, TIFF-F and PDF renditions: structure tag by tag, and the pixels that come back."""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageSequence

from appliance.delivery import tiff_profiles as tp
from tiff_check import check_profile_s
from tests.provided import provided, require, require_import

STANDARD, FINE = (204, 98), (204, 196)


def page(w: int = 1728, h: int = 1100, seed: int = 0) -> Image.Image:
    """A page with text, a block, a diagonal and an edge-touching run: every MH code length matters."""
    im = Image.new("1", (w, h), 1)
    d = ImageDraw.Draw(im)
    d.text((100, 60 + seed), f"page {seed} FAXBRIDGE", fill=0)
    d.rectangle((300 + seed, 300, 900, 700), fill=0)
    d.line((0, 0, w - 1, h - 1), fill=0)
    d.rectangle((w - 40, 0, w - 1, 30), fill=0)  # a black run ending at the right margin
    for x in range(0, w, 7):
        d.point((x, h - 5), fill=0)  # many short runs
    return im


def spool_tiff(pages: list[Image.Image], dpi: tuple[int, int], tmp_path: Path) -> bytes:
    """As spandsp stores it: G4, several strips per page, FillOrder 2 (rewritten by libtiff's tiffcp)."""
    plain = tmp_path / "plain.tif"
    pages[0].save(plain, save_all=True, append_images=pages[1:], compression="group4", dpi=dpi)
    require(shutil.which("tiffcp"), "libtiff-tools (tiffcp) missing: make installs it")
    out = tmp_path / "spool.tif"
    subprocess.run(["tiffcp", "-c", "g4", "-f", "lsb2msb", "-r", "64", str(plain), str(out)], check=True)
    return out.read_bytes()


def decoded(data: bytes) -> list[tuple[bytes, tuple[int, int], tuple[float, float]]]:
    with Image.open(io.BytesIO(data)) as im:
        return [(f.convert("1").tobytes(), f.size, tuple(round(x) for x in f.info["dpi"]))
                for f in ImageSequence.Iterator(im)]


def tiffdump(data: bytes, tmp_path: Path) -> list[dict[int, list[int]]]:
    """libtiff's own reading of the structure: per directory, tag -> values (offset of IFD as -1)."""
    f = tmp_path / "dump.tif"
    f.write_bytes(data)
    text = subprocess.run(["tiffdump", str(f)], check=True, capture_output=True, text=True).stdout
    dirs: list[dict[int, list[int]]] = []
    for line in text.splitlines():
        m = re.match(r"Directory \d+: offset (\d+)", line)
        if m:
            dirs.append({-1: [int(m.group(1))]})
            continue
        m = re.match(r"\w+ \((\d+)\) \w+ \(\d+\) \d+<(.*)>", line)
        if m and dirs:
            dirs[-1][int(m.group(1))] = [int(float(v)) for v in m.group(2).split()]
    return dirs


needs_libtiff_tools = provided(shutil.which("tiffdump"), "libtiff-tools (tiffdump) missing: make installs it")


@pytest.mark.parametrize("dpi", [STANDARD, FINE], ids=["standard", "fine"])
def test_profile_s_pixels_equal_the_received_pages(dpi, tmp_path):
    pages = [page(h=1100 if dpi == STANDARD else 2200, seed=s) for s in (0, 40, 80)]
    out = tp.to_profile_s(spool_tiff(pages, dpi, tmp_path))
    got = decoded(out)
    assert len(got) == 3
    for (bits, size, res), ref in zip(got, pages):
        assert size == ref.size and res == dpi
        assert bits == ref.tobytes()
    assert check_profile_s(out) == []


@needs_libtiff_tools
def test_profile_s_tag_by_tag_as_libtiff_reads_it(tmp_path):
    pages = [page(seed=s) for s in (0, 40)]
    out = tp.to_profile_s(spool_tiff(pages, STANDARD, tmp_path))
    dirs = tiffdump(out, tmp_path)
    assert len(dirs) == 2
    assert out[:8] == b"II*\x00\x08\x00\x00\x00"
    prev_end = 8
    for i, d in enumerate(dirs):
        (ifd_at,) = d.pop(-1)
        assert set(d) == {254, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 282, 283, 292, 296, 297}
        assert d[254] == [2] and d[256] == [1728] and d[257] == [1100] and d[258] == [1]
        assert d[259] == [3] and d[292] == [0] and d[262] == [0] and d[266] == [2]
        assert d[277] == [1] and d[278] == [1100] and d[296] == [2] and d[297] == [i, 2]
        assert d[282] == [204] and d[283] == [98]
        assert len(d[273]) == 1 and len(d[279]) == 1  # one strip
        assert prev_end <= ifd_at < d[273][0]  # IFD first, then its data, then the next page
        prev_end = d[273][0] + d[279][0]
    info = subprocess.run(["tiffinfo", str(tmp_path / "dump.tif")], capture_output=True, text=True)
    assert info.returncode == 0 and "Error" not in info.stderr
    assert "FillOrder: lsb-to-msb" in info.stdout and "min-is-white" in info.stdout


def test_profile_s_strip_is_mh_with_eols_lsb_first(tmp_path):
    """The first code of an MH page is EOL (000000000001); written LSB-first its 1-bit is bit 3 of byte 1."""
    out = tp.to_profile_s(spool_tiff([page()], STANDARD, tmp_path))
    (off,) = struct.unpack("<I", out[8 + 2 + 12 * 7 + 8: 8 + 2 + 12 * 7 + 12])  # StripOffsets, 8th entry
    first = out[off] | out[off + 1] << 8  # LSB-first bit stream as an integer
    assert first & 0xFFF == 0x800  # eleven 0s then a 1


def test_wide_page_is_scaled_to_1728_keeping_aspect(tmp_path):
    """B4 (2048 px) is reduced by 27/32 in both directions: blocks on 32-px boundaries land exactly."""
    wide = Image.new("1", (2048, 1280), 1)
    ImageDraw.Draw(wide).rectangle((0, 320, 1023, 959), fill=0)
    want = Image.new("1", (1728, 1080), 1)
    ImageDraw.Draw(want).rectangle((0, 270, 863, 809), fill=0)
    out = tp.to_profile_s(spool_tiff([wide], STANDARD, tmp_path))
    ((bits, size, res),) = decoded(out)
    assert size == (1728, 1080) and res == STANDARD
    assert bits == want.tobytes()
    assert check_profile_s(out) == []


def test_narrow_page_is_padded_white(tmp_path):
    narrow = Image.new("1", (1000, 200), 0)
    out = tp.to_profile_s(spool_tiff([narrow], FINE, tmp_path))
    ((bits, size, _),) = decoded(out)
    want = Image.new("1", (1728, 200), 1)
    want.paste(narrow, (0, 0))
    assert size == (1728, 200) and bits == want.tobytes()


def test_tiff_f_pixels_and_tags(tmp_path):
    """A page that did not arrive as G4 (a Class 2 modem's MH file) is re-encoded to G4 TIFF-F."""
    pages = [page(seed=s) for s in (0, 40)]
    mh = tmp_path / "mh.tif"
    pages[0].save(mh, save_all=True, append_images=pages[1:], compression="group3", dpi=STANDARD)
    src = mh.read_bytes()
    assert not tp.is_tiff_f(src)
    out = tp.to_tiff_f(src)
    got = decoded(out)
    assert [b for b, _, _ in got] == [p.tobytes() for p in pages]
    assert all(res == STANDARD for _, _, res in got)
    with Image.open(io.BytesIO(out)) as im:
        for i in range(2):
            im.seek(i)
            assert im.tag_v2[259] == 4 and im.tag_v2[296] == 2 and im.tag_v2[297] == (i, 2)


def test_tiff_f_already_g4_is_kept_byte_for_byte(tmp_path):
    plain = tmp_path / "p.tif"
    page().save(plain, compression="group4", dpi=FINE)
    assert tp.to_tiff_f(plain.read_bytes()) == plain.read_bytes()


def test_checker_finds_what_is_not_profile_s(tmp_path):
    g4 = tmp_path / "g4.tif"
    page().save(g4, compression="group4", dpi=STANDARD)
    problems = check_profile_s(g4.read_bytes())
    assert any("Compression" in p for p in problems)
    assert any("292" in p for p in problems)
    assert check_profile_s(b"MM\x00*" + b"\0" * 8) != []
    good = bytearray(tp.to_profile_s(g4.read_bytes()))
    good[8 + 2 + 12 * 1 + 8: 8 + 2 + 12 * 1 + 10] = struct.pack("<H", 2048)  # ImageWidth entry
    assert any("ImageWidth" in p for p in check_profile_s(bytes(good)))


def _pdf_pages(data: bytes) -> list[tuple[Image.Image, float, float]]:
    pikepdf = require_import("pikepdf", "pikepdf, of the test extra")
    pdf = pikepdf.open(io.BytesIO(data))
    out = []
    for p in pdf.pages:
        (img,) = [pikepdf.PdfImage(v) for v in p.get_images().values()]
        box = [float(x) for x in p.mediabox]
        out.append((img.as_pil_image(), box[2] - box[0], box[3] - box[1]))
    return out


@pytest.mark.parametrize("dpi", [STANDARD, FINE], ids=["standard", "fine"])
def test_pdf_pages_pixel_equal_and_a4_sized(dpi, tmp_path):
    h = 1143 if dpi == STANDARD else 2286  # A4 length at 98 / 196 lpi
    pages = [page(h=h, seed=s) for s in (0, 40)]
    got = _pdf_pages(tp.to_pdf(spool_tiff(pages, dpi, tmp_path)))
    assert len(got) == 2
    for (img, w_pt, h_pt), ref in zip(got, pages):
        assert img.size == ref.size
        assert img.convert("1").tobytes() == ref.tobytes()
        assert w_pt == pytest.approx(1728 / 204 * 72, abs=0.5)  # 8.47 in: A4/Letter width
        assert h_pt == pytest.approx(h / dpi[1] * 72, abs=0.5)
        assert 820 < h_pt < 850  # ~11.66 in, A4 tall, not squashed to half


def test_a_page_of_a_few_rows_still_makes_a_pdf(tmp_path):
    """Found by the tiff_pages fuzz target: a page under 3 points tall (4 rows at standard
    resolution, the stub of a call cut off just after a page began) made img2pdf refuse the
    whole PDF, so the mail went out without the PDF its route asked for."""
    pages = [page(h=1143, seed=0), page(h=4, seed=1)]
    got = _pdf_pages(tp.to_pdf(spool_tiff(pages, STANDARD, tmp_path)))
    assert len(got) == 2
    for (img, w_pt, h_pt), ref in zip(got, pages):
        assert img.convert("1").tobytes() == ref.tobytes()  # every pixel, the stub's too
        assert w_pt == pytest.approx(1728 / 204 * 72, abs=0.5)
    assert got[1][2] == pytest.approx(3.0)  # the smallest page a PDF may have


def test_a_resolution_no_png_can_state_still_makes_a_pdf():
    """Found by the tiff_pages fuzz target: a page at 204 x 4,000,000,000 dpi made Pillow's PNG
    writer raise OverflowError (pixels per metre past 32 bits), which is no ValueError: it went
    past delivery's except clause and failed the whole delivery pass."""
    from tests.poisonfax import fax_tiff, good_page

    im, coded = good_page(1, dpi=(204, 4_000_000_000), rows=100)
    got = _pdf_pages(tp.to_pdf(fax_tiff([coded])))
    assert len(got) == 1 and got[0][0].convert("1").tobytes() == im.tobytes()


def test_a_resolution_no_tiff_rational_can_hold_still_makes_a_tiff_f():
    """The TIFF-F sibling of the PNG case above (found while fixing it, now a tiff_pages regression
    input): an XResolution written as a double (1e300 per cm) made our IFD writer raise
    struct.error, which went past delivery's except clause."""
    from tests.poisonfax import fax_tiff, good_page

    im, coded = good_page(1, rows=100)
    data = bytearray(fax_tiff([coded]))
    (ifd,) = struct.unpack_from("<I", data, 4)
    for entry in range(ifd + 2, ifd + 2 + 12 * struct.unpack_from("<H", data, ifd)[0], 12):
        tag = struct.unpack_from("<H", data, entry)[0]
        if tag == 282:  # XResolution: a DOUBLE at the end of the file
            struct.pack_into("<HHII", data, entry, 282, 12, 1, len(data))
        elif tag == 296:  # ResolutionUnit: centimetre
            struct.pack_into("<HHIHH", data, entry, 296, 3, 1, 3, 0)
    data += struct.pack("<d", 1e300)
    got = list(ImageSequence.Iterator(Image.open(io.BytesIO(tp.to_tiff_f(bytes(data))))))
    assert len(got) == 1 and got[0].convert("1").tobytes() == im.tobytes()
    assert got[0].info["dpi"][0] == pytest.approx(204)  # the made-up one replaced
