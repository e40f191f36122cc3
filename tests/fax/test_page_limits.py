"""Page size limits while a fax arrives: the limits themselves, the T.30 session, the T.4 receiver.

A page that grows past the longest a fax page can be must stop costing memory while it arrives:
spandsp 0.0.6 keeps every decoded row of a page until the page ends.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from appliance.config import FaxConfig
from appliance.fax import pagelimits as pl
from appliance.fax.pages import read_pages
from appliance.fax.session import ReceiveSession
from appliance.spandsp.audio import AudioFaxTerminal
from appliance.spandsp import t4
from appliance.spandsp.t4 import T6, T4Error, T4Receiver, Y_RES_FINE
from tests.fax.test_audio_terminal import run_pair
from tests.poisonfax import POISON_ROWS, fax_tiff, good_page, poison_page, white_rows_g4

#: sheets a fax carries, in mm (width, length)
SHEETS = {"A4": (210, 297), "Letter": (215.9, 279.4), "Legal": (215.9, 355.6), "B4": (257, 364),
          "A3": (297, 420)}
#: T.30's vertical resolutions: standard, fine, superfine
LPI = (98, 196, 391)


def rows_for(mm: float, lpi: float) -> int:
    return math.ceil(mm / pl.MM_PER_INCH * lpi)


@pytest.mark.parametrize("lpi", LPI)
@pytest.mark.parametrize("sheet", SHEETS)
def test_every_real_sheet_is_accepted_with_room_to_spare(sheet: str, lpi: int) -> None:
    _, length = SHEETS[sheet]
    rows = rows_for(length, lpi)
    assert pl.page_problem(1728, rows, lpi) is None
    assert pl.max_rows(lpi) >= 3 * rows, "the margin over a real sheet is at least three sheets"
    # the widest row we offer, A3 at 16 dots/mm, fits the memory budget at every resolution
    assert pl.page_problem(pl.MAX_PAGE_WIDTH, rows, lpi) is None


@pytest.mark.parametrize("lpi", LPI)
def test_a_page_longer_than_one_and_a_half_metres_is_refused_at_its_resolution(lpi: int) -> None:
    limit = pl.max_rows(lpi)
    assert limit == rows_for(pl.MAX_PAGE_LENGTH_MM, lpi)
    assert pl.page_problem(1728, limit, lpi) is None
    problem = pl.page_problem(1728, limit + 1, lpi, page=2)
    assert problem is not None and problem.startswith("page 2 is ") and f"{limit:,} rows" in problem
    with pytest.raises(pl.PageTooLarge, match="1.5 m"):
        pl.check_page(1728, POISON_ROWS, lpi)


def test_a_made_up_resolution_cannot_stretch_the_limit() -> None:
    assert pl.max_rows(1_000_000) == pl.max_rows(pl.FINEST_LPI)
    for nonsense in (None, 0, -5, float("nan"), float("inf"), "x"):
        assert pl.max_rows(nonsense) == pl.max_rows(pl.DEFAULT_LPI), nonsense


def test_width_and_memory_budget() -> None:
    assert "dots wide" in (pl.page_problem(pl.MAX_PAGE_WIDTH + 1, 100, 196) or "")
    assert pl.page_problem(0, 100, 196) is not None
    # a 16 dots/mm page that is short enough but would decode past the budget
    rows = pl.MAX_PAGE_PIXELS // 3456 + 1
    assert rows <= pl.max_rows(391)
    assert "million" in (pl.page_problem(3456, rows, 391) or "")
    # the budget holds the largest page the length limit accepts at the usual width, and an A3 page
    # at 16 dots/mm superfine; Pillow's guard is restored at the same number
    assert pl.MAX_PAGE_PIXELS >= 1728 * pl.max_rows(pl.FINEST_LPI)
    assert pl.MAX_PAGE_PIXELS >= 4864 * rows_for(420, 391)
    assert pl.PAGE_MEMORY_BUDGET == pl.MAX_PAGE_PIXELS * pl.BYTES_PER_PIXEL
    assert Image.MAX_IMAGE_PIXELS == pl.MAX_PAGE_PIXELS


def test_t4_receiver_stops_decoding_an_over_long_page_and_does_not_write_it(tmp_path: Path) -> None:
    """The Class 2 path: 10 KB of T.6 for 80,000 rows, handed over in one piece."""
    limit = pl.max_rows(196)
    good_image, good = good_page(1)
    with T4Receiver(tmp_path / "out.tif") as rx:
        rx.start_page(T6, 1728, y_res=Y_RES_FINE)
        rx.put(white_rows_g4(POISON_ROWS))
        assert rx.refused is not None and "80,000" not in rx.refused
        decoded = rx.rows
        assert limit < decoded <= limit + 8 * t4.FEED_SLICE, "decoding stopped just past the limit"
        with pytest.raises(T4Error, match=r"page refused, not kept: page 1 is [\d,]+ rows long"):
            rx.end_page()
        # the next page arrives as usual
        rx.start_page(T6, 1728, y_res=Y_RES_FINE)
        rx.put(_t6_of(good_image, tmp_path))
        assert rx.end_page().length == good_image.height
    got = read_pages(tmp_path / "out.tif")
    assert len(got) == 1
    assert ImageChops.difference(got[0], good_image.convert("L")).getbbox() is None


def _t6_of(image: Image.Image, tmp_path: Path) -> bytes:
    from appliance.fax.pages import write_fax_tiff
    from appliance.spandsp.t4 import T4Transmitter

    write_fax_tiff([image], tmp_path / "one.tif")
    with T4Transmitter(tmp_path / "one.tif") as tx:
        return tx.encode_page(T6)


def test_session_hangs_up_on_a_page_that_grows_past_the_limit_and_keeps_no_part_of_it(tmp_path: Path) -> None:
    """Without ECM the rows arrive as they are sent: the call ends just past the limit."""
    (tmp_path / "tx.tif").write_bytes(fax_tiff([poison_page()]))
    tx = AudioFaxTerminal(calling=True, ecm=False, tx_file=tmp_path / "tx.tif")
    rx = AudioFaxTerminal(calling=False, ecm=False, rx_file=tmp_path / "rx.tif")
    session = ReceiveSession(rx, started=0.0, cfg=FaxConfig(no_signal_timeout=30))
    limit = pl.max_rows(196)
    reason = None
    seconds = 0.0
    while reason is None and seconds < 200 and rx.finished is None:
        seconds += run_pair(tx, rx, seconds=0.25)  # the daemon polls every 0.25 s
        reason = session.poll(seconds)
    assert reason is not None and reason.startswith("page too large, hung up: page 1 is "), reason
    assert f"{limit:,} rows at this resolution" in reason
    assert rx.stats().length <= limit + 14400 // 4, "at most a poll interval of rows past the limit"
    rx.terminate()
    facts = session.facts(seconds)
    assert facts.result_text.startswith("page too large, hung up: page 1 is ")
    rx.close(), tx.close()
    assert not (tmp_path / "rx.tif").exists(), "the over-long page is not written"


def test_a_whole_over_long_page_in_ecm_is_left_to_the_spool_and_the_call_goes_on(tmp_path: Path) -> None:
    """With ECM the poison page arrives whole in one block: the call carries on to the next page."""
    first, good1 = good_page(1)
    third, good3 = good_page(3)
    (tmp_path / "tx.tif").write_bytes(fax_tiff([good1, poison_page(), good3]))
    tx = AudioFaxTerminal(calling=True, ecm=True, tx_file=tmp_path / "tx.tif")
    rx = AudioFaxTerminal(calling=False, ecm=True, rx_file=tmp_path / "rx.tif")
    session = ReceiveSession(rx, started=0.0, cfg=FaxConfig(no_signal_timeout=30))
    seconds = 0.0
    while rx.finished is None and seconds < 300:
        seconds += run_pair(tx, rx, seconds=0.25)
        assert session.poll(seconds) is None
    session.poll(seconds)
    assert session.complete and [p.length for p in session.pages] == [2287, POISON_ROWS, 2287]
    rx.close(), tx.close()
    with pl.open_tiff(tmp_path / "rx.tif") as im:
        assert im.n_frames == 3
        im.seek(1)
        assert pl.frame_problem(im, 2) is not None  # what the spool will refuse


GUARD = """
import io, sys
sys.path.insert(0, ".")
from PIL import Image
import appliance.fax.pagelimits  # what every decoder of the appliance imports
from tests.poisonfax import fax_tiff, poison_page
for rows in (20_000, 30_000, 80_000):  # 35, 52 and 138 million pixels; the budget is 40.8 million
    try:
        with Image.open(io.BytesIO(fax_tiff([poison_page(rows)]))) as im:
            im.load()
        print(rows, "decoded")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        print(rows, "refused", type(e).__name__)
"""


def test_pillows_guard_is_restored_for_a_decoder_that_forgets_to_ask() -> None:
    """Pillow alone, in a process as the daemon runs it: refused above the budget, not warned about."""
    import subprocess
    import sys

    from tests.poisonfax import REPO

    out = subprocess.run([sys.executable, "-c", GUARD], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["20000 decoded", "30000 refused DecompressionBombWarning",
                                          "80000 refused DecompressionBombError"], out.stdout + out.stderr
