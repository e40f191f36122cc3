"""T.4 page coding on its own, without T.30: decoding a Class 2 modem's page data into a TIFF, and
encoding TIFF pages back into T.4 (the virtual Class 2.0 modem's page data).

A Class 2/2.0 modem does T.30 itself and hands the DTE only the coded page (T.4 MH/MR or T.6
MMR, as negotiated), so the driver needs spandsp's T.4 coder without its T.30.  Both directions
work in *transmission order*: the first bit on the line is the least significant bit of the first
byte, which is what Class 2 ``+FBO=0`` delivers; :func:`reverse_bits` turns the other order round.

C lifetime follows ``t30.py``: ``close()`` frees the state and is safe twice, statistics after it
come from the last reading, and a file spandsp cannot open is an ``OSError`` at construction.

spandsp 0.0.6 holds a page's decoded rows in memory until the page ends, and a byte of T.6 can
code eight white rows, so the receiver feeds it in small slices and stops decoding a page as soon
as it grows past the longest a fax page can be (``appliance.fax.pagelimits``); that page is then
refused, not written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Self

from appliance.fax.pagelimits import page_problem
from appliance.spandsp._spandsp import ffi, lib

T4_1D = lib.T4_COMPRESSION_ITU_T4_1D
T4_2D = lib.T4_COMPRESSION_ITU_T4_2D
T6 = lib.T4_COMPRESSION_ITU_T6
ENCODINGS = {T4_1D: "T.4 1D (MH)", T4_2D: "T.4 2D (MR)", T6: "T.6 (MMR)"}

#: T.30 resolutions in pixels per metre (spandsp's units); DPI names for people
X_RES_R8 = 8031  # 8 pels/mm, "204 dpi"
Y_RES_STANDARD = 3850  # 3.85 lines/mm, "98 dpi"
Y_RES_FINE = 7700  # 7.7 lines/mm, "196 dpi"
Y_RES_SUPERFINE = 15400

_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))

#: coded bytes handed to spandsp per call: a page over the limits overshoots by at most 8x this rows
FEED_SLICE = 256


def reverse_bits(data: bytes) -> bytes:
    """Swap the bit order inside every byte (MSB-first modem data into T.4 transmission order)."""
    return data.translate(_REVERSE)


def ppm_to_dpi(ppm: int) -> int:
    """Pixels per metre to the nominal DPI people quote (7700 -> 196, 8031 -> 204)."""
    dpi = round(ppm * 0.0254)
    for nominal in (98, 196, 204, 391, 200, 300, 400):
        if abs(dpi - nominal) <= 2:
            return nominal
    return dpi


@dataclass(frozen=True)
class PageStats:
    """One page as spandsp's T.4 coder counted it."""

    width: int
    length: int
    bad_rows: int
    longest_bad_row_run: int
    x_dpi: int
    y_dpi: int
    encoding: int
    line_bytes: int  # coded size of the page on the line

    @property
    def resolution(self) -> str:
        return f"{self.x_dpi}x{self.y_dpi}" if self.x_dpi else ""


def _stats(st: ffi.CData) -> PageStats:
    return PageStats(
        width=st.width,
        length=st.length,
        bad_rows=st.bad_rows,
        longest_bad_row_run=st.longest_bad_row_run,
        x_dpi=ppm_to_dpi(st.x_resolution),
        y_dpi=ppm_to_dpi(st.y_resolution),
        encoding=st.encoding,
        line_bytes=st.line_image_size,
    )


class T4Error(RuntimeError):
    """spandsp refused an operation (bad state or bad parameters): our bug or an unusable file."""


class _CState:
    """Owns one C state (``_s``): closed once, by ``close()``, ``with`` or the collector."""

    _s: ffi.CData

    def close(self) -> None:
        raise NotImplementedError

    def _check(self) -> None:
        if self._s == ffi.NULL:
            raise T4Error(f"{type(self).__name__} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a finaliser must not raise (the binding may be gone at exit)
            pass


class T4Receiver(_CState):
    """Coded pages in, a multi-page TIFF out; each page is in the file once :meth:`end_page` returns."""

    def __init__(self, path: str | os.PathLike[str], output_encoding: int = T6, far_ident: str = "") -> None:
        self.path = os.fspath(path)
        self.pages: list[PageStats] = []
        self.in_page = False
        #: why the page in progress is refused (over the size limits), once it is
        self.refused: str | None = None
        self._ended_by_rtc = False
        self._s = lib.t4_rx_init(ffi.NULL, os.fsencode(self.path), output_encoding)
        if self._s == ffi.NULL:
            raise OSError(f"spandsp cannot create {self.path}")
        if far_ident:
            lib.t4_rx_set_far_ident(self._s, far_ident.encode("ascii", "replace"))

    @property
    def alive(self) -> bool:
        return self._s != ffi.NULL

    def start_page(
        self, encoding: int = T4_1D, width: int = 1728, x_res: int = X_RES_R8, y_res: int = Y_RES_FINE
    ) -> None:
        """Begin a page coded as ``encoding`` (T4_1D/T4_2D/T6), ``width`` pixels, resolutions in pixels/m."""
        self._check()
        if encoding not in ENCODINGS:
            raise T4Error(f"unknown T.4 encoding {encoding}")
        if self.in_page:
            raise T4Error("start_page inside a page")
        lib.t4_rx_set_rx_encoding(self._s, encoding)
        lib.t4_rx_set_image_width(self._s, width)
        lib.t4_rx_set_x_resolution(self._s, x_res)
        lib.t4_rx_set_y_resolution(self._s, y_res)
        if lib.t4_rx_start_page(self._s) != 0:
            raise T4Error("t4_rx_start_page failed")
        self.in_page = True
        self.refused = None
        self._ended_by_rtc = False

    def put(self, data: bytes) -> bool:
        """Feed coded bytes (transmission order); True once the page's RTC has been seen.

        Once the page is over the size limits (``refused``), further data is dropped undecoded.
        """
        self._check()
        if not self.in_page:
            raise T4Error("page data outside a page")
        for at in range(0, len(data), FEED_SLICE):
            if self._ended_by_rtc or self.refused is not None:
                break
            chunk = data[at : at + FEED_SLICE]
            self._ended_by_rtc = bool(lib.t4_rx_put_chunk(self._s, chunk, len(chunk)))
            self.refused = self._oversized()
        return self._ended_by_rtc

    @property
    def rows(self) -> int:
        """Rows decoded so far of the page in progress (of the last page, between pages)."""
        self._check()
        st = ffi.new("t4_stats_t *")
        lib.t4_rx_get_transfer_statistics(self._s, st)
        return int(st.length)

    def _oversized(self) -> str | None:
        st = ffi.new("t4_stats_t *")
        lib.t4_rx_get_transfer_statistics(self._s, st)
        if st.length <= 0:
            return None
        return page_problem(st.width, st.length, ppm_to_dpi(st.y_resolution), len(self.pages) + 1)

    @property
    def saw_rtc(self) -> bool:
        return self._ended_by_rtc

    def end_page(self) -> PageStats:
        """Write the page to the TIFF (whatever arrived of it) and return its statistics.

        A page over the size limits is not written: its rows are dropped and T4Error says why.
        """
        self._check()
        if not self.in_page:
            raise T4Error("end_page outside a page")
        self.in_page = False
        if self.refused is not None:
            lib.t4_rx_start_page(self._s)  # empties spandsp's row buffer: the page is not written
            raise T4Error(f"page refused, not kept: {self.refused}")
        if lib.t4_rx_end_page(self._s) != 0:
            raise T4Error("t4_rx_end_page failed (no rows decoded?)")
        st = ffi.new("t4_stats_t *")
        lib.t4_rx_get_transfer_statistics(self._s, st)
        stats = _stats(st)
        self.pages.append(stats)
        return stats

    def close(self) -> None:
        """Close the TIFF.  A page still open is ended first: a partial page is kept, not lost."""
        if self._s == ffi.NULL:
            return
        try:
            if self.in_page:
                try:
                    self.end_page()
                except T4Error:
                    pass
        finally:
            lib.t4_rx_free(self._s)
            self._s = ffi.NULL


class T4Transmitter(_CState):
    """A TIFF's pages out as coded T.4/T.6 data (transmission order), one page at a time."""

    def __init__(self, path: str | os.PathLike[str], start_page: int = 0, stop_page: int = -1) -> None:
        self.path = os.fspath(path)
        self._s = lib.t4_tx_init(ffi.NULL, os.fsencode(self.path), start_page, stop_page)
        if self._s == ffi.NULL:
            raise OSError(f"spandsp cannot read {self.path} (missing, not a TIFF, or no such page)")

    @property
    def pages_in_file(self) -> int:
        self._check()
        return int(lib.t4_tx_get_pages_in_file(self._s))

    @property
    def width(self) -> int:
        self._check()
        return int(lib.t4_tx_get_image_width(self._s))

    @property
    def x_resolution(self) -> int:
        self._check()
        return int(lib.t4_tx_get_x_resolution(self._s))

    @property
    def y_resolution(self) -> int:
        self._check()
        return int(lib.t4_tx_get_y_resolution(self._s))

    def encode_page(self, encoding: int = T4_1D, chunk: int = 4096) -> bytes:
        """The next page of the file, coded as ``encoding`` and ending in RTC (EOFB for T.6)."""
        self._check()
        if encoding not in ENCODINGS:
            raise T4Error(f"unknown T.4 encoding {encoding}")
        lib.t4_tx_set_tx_encoding(self._s, encoding)
        lib.t4_tx_set_min_bits_per_row(self._s, 0)
        if lib.t4_tx_start_page(self._s) != 0:
            raise T4Error(f"{self.path}: no further page to send")
        buf = ffi.new("uint8_t[]", chunk)
        out = bytearray()
        while True:
            n = lib.t4_tx_get_chunk(self._s, buf, chunk)
            if n > 0:
                out += ffi.buffer(buf, n)
            if n < chunk:
                break
        lib.t4_tx_end_page(self._s)
        return bytes(out)

    def stats(self) -> PageStats:
        self._check()
        st = ffi.new("t4_stats_t *")
        lib.t4_tx_get_transfer_statistics(self._s, st)
        return _stats(st)

    def close(self) -> None:
        if self._s != ffi.NULL:
            lib.t4_tx_free(self._s)
            self._s = ffi.NULL
