"""A poison fax on the web pages: seen, explained, and never decoded.

The fax list and detail page show it with the reason; the refused page's preview is a card that
names the reason (drawn without decoding the page); the PDF download carries the other pages.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image, ImageChops
from webfax import T0

from appliance.fax import pagelimits as pl
from appliance.spool.store import FaxRecord, Spool
from appliance.web import render
from tests.poisonfax import REFUSED_PAGE_SLACK, fax_tiff, good_page, peak_rss, poison_page, without_width


def receive(spool: Spool, data: bytes) -> FaxRecord:
    fax = spool.begin_fax(T0, caller_number="+1 555 0100", result_text="OK")
    spool.incoming_path(fax).write_bytes(data)
    return spool.finish_fax(fax.id, T0 + 30, complete=True)


def png(client: FlaskClient, url: str) -> Image.Image:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code)
    assert r.mimetype == "image/png"
    return Image.open(io.BytesIO(r.data))


def test_the_detail_page_shows_the_fax_and_why_a_page_was_refused(client: FlaskClient, spool: Spool):
    fax = receive(spool, fax_tiff([good_page(1)[1], poison_page(), good_page(3)[1]]))
    html = client.get(f"/faxes/{fax.id}").get_data(as_text=True)
    assert "1 of 3 pages refused, not delivered: page 2 is 80,000 rows long" in html
    assert html.count('alt="Page ') == 3, "every page of the file is listed"
    assert "refused_pages" not in html, "the raw list stays out of the facts"
    listing = client.get("/faxes").get_data(as_text=True)
    assert f"/faxes/{fax.id}" in listing


def test_the_refused_page_preview_is_a_card_naming_the_reason(client: FlaskClient, spool: Spool):
    (im1, c1), (im3, c3) = good_page(1), good_page(3)
    fax = receive(spool, fax_tiff([c1, poison_page(), c3]))
    for size, width in (("thumb", render.THUMB_WIDTH), ("full", render.CARD_WIDTH["full"])):
        card = png(client, f"/faxes/{fax.id}/pages/2.png?size={size}")
        assert card.width == width and card.height < 2 * width, "a card, not the 80,000-row page"
    # the good pages around it render as they always did
    full = png(client, f"/faxes/{fax.id}/pages/3.png?size=full").convert("L")
    assert full.size == (1728, round(2287 * 204 / 196))
    direct = render.render_page(spool.image_path(fax), 3, "full").convert("L")
    assert ImageChops.difference(full, direct).getbbox() is None


def test_the_card_says_why(spool: Spool, tmp_path: Path):
    fax = receive(spool, fax_tiff([poison_page()]))
    card = render.refused_card(fax.extra["refused_pages"][0]["reason"], "full")
    assert card.getbbox() is not None
    text_rows = [y for y in range(card.height) if card.crop((0, y, card.width, y + 1)).getextrema()[0] < 128]
    assert len(text_rows) > 10, "the reason is written on the card"


def test_a_stored_file_with_a_damaged_directory_is_shown_unreadable_not_a_server_error(client: FlaskClient,
                                                                                        spool: Spool):
    """Found by the tiff_pages fuzz target: Pillow's TypeError for a directory without ImageWidth
    was not among the errors the pages catch."""
    page = good_page(1, rows=200)[1]
    fax = receive(spool, fax_tiff([page, page]))
    spool.image_path(fax).write_bytes(without_width(fax_tiff([page, page]), 2))
    r = client.get(f"/faxes/{fax.id}")
    assert r.status_code == 200 and "The fax image cannot be read." in r.get_data(as_text=True)
    preview = client.get(f"/faxes/{fax.id}/pages/1.png?size=thumb")
    assert preview.status_code == 500 and "The page image cannot be rendered." in preview.get_data(as_text=True)
    pdf = client.get(f"/faxes/{fax.id}.pdf")
    assert pdf.status_code == 500 and "cannot be converted to PDF" in pdf.get_data(as_text=True)


def test_a_page_stretched_by_its_resolution_is_shown_within_the_page_budget(tmp_path: Path):
    """Found by the tiff_pages fuzz target's contract: a page within the limits (1728 x 23,622 at
    1600 x 400 dpi) is shown 4 times as tall, 163 million pixels, four times the budget."""
    path = tmp_path / "stretched.tif"
    path.write_bytes(fax_tiff([poison_page(rows=23_622, dpi=(1600, 400))]))
    full = render.render_page(path, 1, "full")
    assert full.width * full.height <= pl.MAX_PAGE_PIXELS
    assert full.height / full.width == pytest.approx(4 * 23_622 / 1728, rel=0.01)  # in proportion
    thumb = render.render_page(path, 1, "thumb")
    assert thumb.width == render.THUMB_WIDTH and thumb.height == pytest.approx(4 * 23_622 / 1728 * 240, rel=0.01)


def test_the_pdf_download_carries_the_other_pages(client: FlaskClient, spool: Spool):
    import pikepdf

    fax = receive(spool, fax_tiff([good_page(1)[1], poison_page(), good_page(3)[1]]))
    r = client.get(f"/faxes/{fax.id}.pdf")
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    with pikepdf.open(io.BytesIO(r.data)) as pdf:
        assert len(pdf.pages) == 2
    only = receive(spool, fax_tiff([poison_page()]))
    r = client.get(f"/faxes/{only.id}.pdf")
    assert r.status_code == 422 and b"every page was refused" in r.data
    r = client.get(f"/faxes/{only.id}.tif")
    assert r.status_code == 200 and r.data == spool.image_path(only).read_bytes(), "the file as it came"


#: renders page 1 of the file named in argv[1] for the page view, as the web process does
PREVIEW = """
import sys
from pathlib import Path
from appliance.web import render
out = render.cached_page(Path(sys.argv[2]), "f", Path(sys.argv[1]), 1, sys.argv[3])
print(out.stat().st_size > 0)
"""


def test_previewing_a_poison_page_costs_no_more_memory_than_a_normal_page(tmp_path: Path):
    _, good = good_page(1)
    (tmp_path / "normal.tif").write_bytes(fax_tiff([good]))
    (tmp_path / "poison.tif").write_bytes(fax_tiff([poison_page()]))
    for size in ("thumb", "full"):
        normal, out = peak_rss(PREVIEW, str(tmp_path / "normal.tif"), str(tmp_path / f"n-{size}"), size)
        assert out == "True"
        poison, out = peak_rss(PREVIEW, str(tmp_path / "poison.tif"), str(tmp_path / f"p-{size}"), size)
        assert poison < normal + REFUSED_PAGE_SLACK, (
            f"{size} preview of the poison page peaked at {poison / 2**20:.0f} MiB, of a normal page at "
            f"{normal / 2**20:.0f} MiB")
        assert out == "True"
