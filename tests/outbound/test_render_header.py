"""The transmit header line and the preview."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from appliance.fax.pagelimits import frame_dpi, open_tiff
from appliance.fax.pages import FAX_WIDTH, FINE, STANDARD, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.outbound.header import header_strip, header_text, stamp_header, strip_rows, template_problem
from appliance.outbound.render import preview_png

WHEN = dt.datetime(2026, 12, 8, 14, 5, tzinfo=dt.UTC)
TEMPLATE = "{ident} {date} {time} page {page}/{pages} {name}"


@pytest.mark.parametrize("dpi", [FINE, STANDARD])
def test_every_page_gets_its_line_and_nothing_below_it_changes(tmp_path: Path, dpi: tuple[int, int]):
    pages = demo_pages(3, dpi=dpi)
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_fax_tiff(pages, src, dpi)
    assert stamp_header(src, out, template=TEMPLATE, ident="+1 555 1000", name="ACME", when=WHEN) == 3
    rows = strip_rows(dpi[1])
    assert rows == (32 if dpi == FINE else 16)
    got = read_pages(out)
    for n, (page, before) in enumerate(zip(got, pages, strict=True), 1):
        line = header_text(TEMPLATE, ident="+1 555 1000", name="ACME", when=WHEN, page=n, pages=3)
        assert line == f"+1 555 1000 2026-12-08 14:05 page {n}/3 ACME"
        strip = header_strip(line, dpi[1])
        assert strip.size == (FAX_WIDTH, rows)
        assert strip.convert("L").histogram()[0] > 0  # there is text in it
        assert ImageChops.difference(page.crop((0, 0, FAX_WIDTH, rows)), strip.convert("L")).getbbox() is None
        below = (0, rows, FAX_WIDTH, page.height)
        assert ImageChops.difference(page.crop(below), before.convert("L").crop(below)).getbbox() is None
    with open_tiff(out) as im:
        assert frame_dpi(im) == dpi


def test_lines_differ_per_page(tmp_path: Path):
    one = header_strip(header_text(TEMPLATE, ident="1", name="", when=WHEN, page=1, pages=2), 196)
    two = header_strip(header_text(TEMPLATE, ident="1", name="", when=WHEN, page=2, pages=2), 196)
    assert ImageChops.difference(one, two).getbbox() is not None


def test_header_overwrites_content_in_the_strip(tmp_path: Path):
    black = Image.new("1", (FAX_WIDTH, 2000), 0)
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_fax_tiff([black], src)
    stamp_header(src, out, template="{ident}", ident="12345", name="", when=WHEN)
    (page,) = read_pages(out)
    strip = page.crop((0, 0, FAX_WIDTH, strip_rows(196)))
    assert strip.histogram()[255] > strip.width * strip.height * 0.8  # cleared to white around the text


def test_empty_template_leaves_pages_alone(tmp_path: Path):
    pages = demo_pages(1)
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    write_fax_tiff(pages, src)
    assert stamp_header(src, out, template="", ident="1", name="", when=WHEN) == 1
    assert ImageChops.difference(read_pages(out)[0], pages[0].convert("L")).getbbox() is None


def test_values_are_cleaned_and_bounded():
    line = header_text(
        "{name}|{ident}",
        ident="+1\x1b[31m 555\r\n\u00e9" + "9" * 40,
        name="Ünïcode\tCo " * 10,
        when=WHEN,
        page=1,
        pages=1,
    )
    assert line.isascii() and line.isprintable()
    name, ident = line.split("|")
    assert len(name) <= 40 and len(ident) <= 20
    assert ident.startswith("+1 [31m 555")
    assert len(header_text("x" * 500, ident="", name="", when=WHEN, page=1, pages=1)) == 100


@pytest.mark.parametrize("template", ["{ident.__class__}", "{foo}", "{page!r}", "{page:>10}", "{0}", "{", "{pages[0]}"])
def test_template_placeholders_are_only_the_known_ones(template: str):
    with pytest.raises(ValueError, match=r"header template"):
        header_text(template, ident="1", name="", when=WHEN, page=1, pages=1)
    assert (template_problem(template) or "").startswith("the header template")


def test_the_default_template_is_fine():
    assert template_problem("{ident} {date} {time} page {page}/{pages}") is None
    assert template_problem("") is None


def test_preview_png(tmp_path: Path):
    src = tmp_path / "f.tif"
    write_fax_tiff(demo_pages(2, dpi=STANDARD), src, STANDARD)
    png = preview_png(src, 2, width=600)
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.width == 600
    # 11 in at 98 lpi, shown with square pixels: 600 * 11 / 8.47 = 779 rows
    assert abs(im.height - round(600 * 1078 * (204 / 98) / FAX_WIDTH)) <= 1
    with pytest.raises(IndexError):
        preview_png(src, 3)
