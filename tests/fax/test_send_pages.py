"""A document to send made into fax pages (appliance/fax/pages.py prepare_for_sending).

Any image Pillow reads becomes 1728-dot pages at a fax resolution, keeping the page's physical
proportions; a page that would decode past the per-page budget, or become longer than a fax
page can be, is refused (PageTooLarge) before any of it is decoded or scaled.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from appliance.fax import pagelimits as pl
from appliance.fax.pages import FAX_WIDTH, FINE, STANDARD, prepare_for_sending, read_pages
from tests.poisonfax import fax_tiff, good_page, poison_page


def png(path: Path, size: tuple[int, int], dpi: tuple[float, float] | None = None) -> Path:
    im = Image.new("L", size, 255)
    ImageDraw.Draw(im).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=0)
    im.save(path, format="PNG", **({"dpi": dpi} if dpi else {}))
    return path


@pytest.mark.parametrize("dpi", [STANDARD, FINE], ids=["standard", "fine"])
def test_a_letter_page_keeps_its_proportions(tmp_path: Path, dpi: tuple[int, int]) -> None:
    src = png(tmp_path / "letter.png", (850, 1100), dpi=(100, 100))  # US letter at 100 dpi
    assert prepare_for_sending(src, tmp_path / "out.tif", dpi) == 1
    (page,) = read_pages(tmp_path / "out.tif")
    assert page.width == FAX_WIDTH and page.height == round(1100 * FAX_WIDTH / 850 * dpi[1] / dpi[0])
    assert page.getextrema() == (0, 255)


def test_a_narrow_strip_is_refused_before_it_is_scaled_to_metres(tmp_path: Path) -> None:
    """Found by the tiff_pages fuzz target: 8 x 200 pixels became a 1728 x 43,200 page (4.4 m at
    fine resolution, 75 MB to scale), a fax page that our own receiver refuses."""
    src = png(tmp_path / "strip.png", (8, 200))
    with pytest.raises(pl.PageTooLarge, match=r"page 1 is 43,200 rows long .* at most 1.5 m"):
        prepare_for_sending(src, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_a_made_up_resolution_is_refused_not_an_overflow(tmp_path: Path) -> None:
    """Found by the tiff_pages fuzz target: a stated 1,000,000 x 1 dpi made Pillow's resize raise
    OverflowError (and smaller ratios allocate gigabytes)."""
    src = png(tmp_path / "odd.png", (1728, 100), dpi=(1_000_000, 1))
    with Image.open(src) as im:
        assert im.info["dpi"][1] < im.info["dpi"][0] / 1000
    with pytest.raises(pl.PageTooLarge, match="at most 1.5 m"):
        prepare_for_sending(src, tmp_path / "out.tif")


def test_a_page_past_the_memory_budget_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    """Pillow guards only the first page of a file: the second here decodes to 138 MB."""
    src = tmp_path / "two.tif"
    src.write_bytes(fax_tiff([good_page(1, rows=100)[1], poison_page()]))
    with pytest.raises(pl.PageTooLarge, match="page 2 is 1,728 x 80,000 pixels"):
        prepare_for_sending(src, tmp_path / "out.tif")


def test_pillows_bomb_guard_on_the_first_page_is_a_page_too_large(tmp_path: Path) -> None:
    src = tmp_path / "bomb.tif"
    src.write_bytes(fax_tiff([poison_page(rows=pl.MAX_PAGE_PIXELS // 1728 * 3)]))
    with pytest.raises(pl.PageTooLarge, match="first page is too large"):
        prepare_for_sending(src, tmp_path / "out.tif")
