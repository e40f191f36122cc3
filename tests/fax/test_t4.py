"""spandsp's T.4 coder on its own: TIFF pages -> t4_tx -> coded data -> t4_rx -> TIFF, pixel for pixel."""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance.fax.pages import STANDARD, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.spandsp.t4 import (T4_1D, T4_2D, T6, T4Error, T4Receiver, T4Transmitter, ppm_to_dpi,
                                  reverse_bits)


def _same(a, b) -> bool:
    return a.size == b.size and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("encoding", [T4_1D, T4_2D, T6], ids=["MH", "MR", "MMR"])
def test_pages_survive_encode_and_decode_pixel_for_pixel(tmp_path: Path, encoding: int) -> None:
    pages = demo_pages(3)
    write_fax_tiff(pages, tmp_path / "src.tif")
    with T4Transmitter(tmp_path / "src.tif") as tx, T4Receiver(tmp_path / "out.tif") as rx:
        assert tx.pages_in_file == 3 and tx.width == 1728
        for _ in range(3):
            data = tx.encode_page(encoding)
            rx.start_page(encoding, tx.width, tx.x_resolution, tx.y_resolution)
            ended = rx.put(data)
            assert ended or encoding == T6  # RTC ends a T.4 page; 0.0.6 does not always flag T.6's EOFB
            st = rx.end_page()
            assert (st.width, st.length, st.bad_rows, st.resolution) == (1728, 2156, 0, "204x196")
    got = read_pages(tmp_path / "out.tif")
    assert len(got) == 3
    for n, (sent, received) in enumerate(zip(pages, got), 1):
        assert _same(sent.convert("L"), received), f"page {n} differs"


def test_standard_resolution_and_chunked_feeding(tmp_path: Path) -> None:
    pages = demo_pages(1, dpi=STANDARD)
    write_fax_tiff(pages, tmp_path / "src.tif", dpi=STANDARD)
    with T4Transmitter(tmp_path / "src.tif") as tx:
        data = tx.encode_page(T4_1D)
        y = tx.y_resolution
    with T4Receiver(tmp_path / "out.tif") as rx:
        rx.start_page(T4_1D, 1728, y_res=y)
        for i in range(0, len(data), 7):  # the modem hands data over in arbitrary pieces
            rx.put(data[i:i + 7])
        st = rx.end_page()
    assert st.resolution == "204x98" and st.length == pages[0].height
    assert _same(pages[0].convert("L"), read_pages(tmp_path / "out.tif")[0])


def test_reversed_bit_order_is_turned_round(tmp_path: Path) -> None:
    assert reverse_bits(b"\x01\x80\xf0\x00") == b"\x80\x01\x0f\x00"
    assert reverse_bits(reverse_bits(bytes(range(256)))) == bytes(range(256))
    pages = demo_pages(1)
    write_fax_tiff(pages, tmp_path / "src.tif")
    with T4Transmitter(tmp_path / "src.tif") as tx:
        msb_first = reverse_bits(tx.encode_page(T4_1D))  # what a +FBO=1 modem delivers
    with T4Receiver(tmp_path / "out.tif") as rx:
        rx.start_page(T4_1D)
        rx.put(reverse_bits(msb_first))
        assert rx.end_page().bad_rows == 0
    assert _same(pages[0].convert("L"), read_pages(tmp_path / "out.tif")[0])


def test_corrupted_data_counts_bad_rows_and_a_cut_page_is_kept(tmp_path: Path) -> None:
    pages = demo_pages(2)
    write_fax_tiff(pages, tmp_path / "src.tif")
    with T4Transmitter(tmp_path / "src.tif") as tx:
        first, second = tx.encode_page(T4_1D), tx.encode_page(T4_1D)
    damaged = bytearray(first)
    for i in range(len(damaged) // 3, len(damaged) // 3 + 400, 20):
        damaged[i] ^= 0xFF  # line noise in the middle of the page
    with T4Receiver(tmp_path / "out.tif") as rx:
        rx.start_page(T4_1D)
        rx.put(bytes(damaged))
        st = rx.end_page()
        assert 0 < st.bad_rows < 200 and st.length > 2000
        rx.start_page(T4_1D)
        assert not rx.put(second[:len(second) // 2])  # the call drops mid-page: no RTC
        assert not rx.saw_rtc
    # close() ended the open page: the half page is in the file too
    got = read_pages(tmp_path / "out.tif")
    assert len(got) == 2 and 500 < got[1].height < 2156


def test_misuse_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        T4Transmitter(tmp_path / "missing.tif")
    with pytest.raises(OSError):
        T4Receiver(tmp_path / "no" / "such" / "dir.tif")
    rx = T4Receiver(tmp_path / "out.tif")
    with pytest.raises(T4Error):
        rx.put(b"\x00")
    with pytest.raises(T4Error):
        rx.start_page(99)
    rx.close()
    rx.close()
    with pytest.raises(T4Error):
        rx.start_page()
    assert ppm_to_dpi(7700) == 196 and ppm_to_dpi(3850) == 98 and ppm_to_dpi(8031) == 204
