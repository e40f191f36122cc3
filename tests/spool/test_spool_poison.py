"""A poison fax at the spool: a G4 page of 1728 x 80,000 rows (10 KB) committed like any other.

The fax is kept as it came, with the reason in its record; the refused page is never decoded, so
committing it costs no more memory than committing a normal page.
"""

from __future__ import annotations

import io

import pytest
from PIL import ImageChops

from appliance.fax import pagelimits as pl
from appliance.spool.store import Spool
from tests.poisonfax import (POISON_ROWS, REFUSED_PAGE_SLACK, fax_tiff, good_page, peak_rss, poison_page,
                             white_rows_g4)

T0 = 1_700_000_000.0


def receive(spool: Spool, data: bytes, *, complete: bool = True):
    fax = spool.begin_fax(T0, caller_number="+1 555 0100")
    spool.incoming_path(fax).write_bytes(data)
    return spool.finish_fax(fax.id, T0 + 30, complete=complete, result_text="OK")


def test_a_poison_only_fax_is_kept_with_the_reason_and_nothing_to_deliver(spool: Spool):
    data = fax_tiff([poison_page()])
    done = receive(spool, data)
    assert done.state == "received", "kept: never no_fax, whose file is deleted"
    assert done.pages == 0 and not done.complete
    assert spool.image_path(done).read_bytes() == data, "the file stays exactly as it came"
    assert done.result_text.startswith("refused, not delivered: page 1 is 80,000 rows long at 196 lines")
    assert "(10.37 m)" in done.result_text and "at most 1.5 m" in done.result_text
    assert done.result_text.endswith("(OK)"), "the T.30 result is kept after the reason"
    (refused,) = done.extra["refused_pages"]
    assert refused["page"] == 1 and refused["rows"] == POISON_ROWS and refused["width"] == 1728
    assert refused["ydpi"] == 196 and "80,000 rows" in refused["reason"]
    assert spool.add_jobs(done.id, ["a@example.test"], T0 + 31), "it is routed like any fax"


def test_a_poison_page_among_good_pages_leaves_the_good_ones_to_deliver(spool: Spool):
    pages = [good_page(1), (None, poison_page()), good_page(3)]
    data = fax_tiff([coded for _, coded in pages])
    done = receive(spool, data)
    assert done.state == "received" and done.pages == 2 and not done.complete
    assert done.result_text.startswith("1 of 3 pages refused, not delivered: page 2 is 80,000 rows")
    assert [r["page"] for r in done.extra["refused_pages"]] == [2]
    assert spool.image_path(done).read_bytes() == data


def test_a_poison_first_page_does_not_hide_the_pages_after_it(spool: Spool):
    """Pillow's Image.open measures only the first page; the spool measures each."""
    _, good = good_page(2)
    done = receive(spool, fax_tiff([poison_page(POISON_ROWS * 2), good]))
    assert done.state == "received" and done.pages == 1
    assert [r["page"] for r in done.extra["refused_pages"]] == [1]


@pytest.mark.parametrize("lpi", [98, 196, 391])
def test_the_limit_is_per_resolution(spool: Spool, lpi: int):
    limit = pl.max_rows(lpi)
    at_limit = receive(spool, fax_tiff([poison_page(limit, dpi=(204, lpi))]))
    assert at_limit.pages == 1 and at_limit.complete and "refused_pages" not in at_limit.extra
    over = receive(spool, fax_tiff([poison_page(limit + 1, dpi=(204, lpi))]))
    assert over.pages == 0 and f"{limit:,} rows at this resolution" in over.result_text


def test_a_damaged_tail_after_a_poison_page_is_cut_without_decoding_anything(spool: Spool):
    image, good = good_page(1)
    tail = type(good)(1728, 3000, (204, 196), bytes(400))  # zeroed coded data: does not decode
    data = fax_tiff([good, poison_page(), tail])
    assert scan_pages_of(data).readable == 2
    done = receive(spool, data, complete=False)
    assert done.pages == 1 and [r["page"] for r in done.extra["refused_pages"]] == [2]
    kept = spool.image_path(done).read_bytes()
    with pl.open_tiff(io.BytesIO(kept)) as im:
        assert im.n_frames == 2
        im.load()
        assert ImageChops.difference(im.convert("L"), image.convert("L")).getbbox() is None
        im.seek(1)
        assert im.size == (1728, POISON_ROWS)
        assert im.tag_v2[279][0] == len(white_rows_g4(POISON_ROWS)), "strip copied byte for byte"


def scan_pages_of(data: bytes):
    import tempfile
    from pathlib import Path

    from appliance.spool.tiffpages import scan_pages

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.tif"
        path.write_bytes(data)
        return scan_pages(path)


def test_trimming_copies_the_kept_pages_exactly(tmp_path):
    from appliance.spool.tiffpages import keep_first_pages

    images, coded = zip(*(good_page(n) for n in (1, 2, 3)))
    path = tmp_path / "f.tif"
    path.write_bytes(fax_tiff(list(coded)))
    keep_first_pages(path, 2)
    with pl.open_tiff(path) as im:
        assert im.n_frames == 2
        for n in range(2):
            im.seek(n)
            assert im.tag_v2[297] == (n, 2) and im.info["dpi"] == (204, 196)
            assert ImageChops.difference(im.convert("L"), images[n].convert("L")).getbbox() is None


#: commits one fax from the file named in argv[1], the way the daemon does
COMMIT = """
import sys
from pathlib import Path
from appliance.spool.store import Spool
spool = Spool(Path(sys.argv[1]) / "spool")
fax = spool.begin_fax(0.0)
spool.incoming_path(fax).write_bytes(Path(sys.argv[2]).read_bytes())
done = spool.finish_fax(fax.id, 1.0, complete=True)
print(done.state, done.pages)
"""


def test_committing_a_poison_page_costs_no_more_memory_than_a_normal_one(tmp_path):
    _, good = good_page(1)
    (tmp_path / "normal.tif").write_bytes(fax_tiff([good]))
    (tmp_path / "poison.tif").write_bytes(fax_tiff([poison_page()]))
    normal, out = peak_rss(COMMIT, str(tmp_path / "a"), str(tmp_path / "normal.tif"))
    assert out == "received 1"
    poison, out = peak_rss(COMMIT, str(tmp_path / "b"), str(tmp_path / "poison.tif"))
    assert poison < normal + REFUSED_PAGE_SLACK, (
        f"committing the poison page peaked at {poison / 2**20:.0f} MiB, a normal page at {normal / 2**20:.0f} MiB")
    assert out == "received 0"
