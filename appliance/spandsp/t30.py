"""What every spandsp fax terminal shares: T.30 set-up, its callbacks, statistics and events.

A terminal (audio in ``audio.py``, T.38 in ``t38.py``) never touches a socket or a clock.  T.30
callbacks arrive synchronously from inside spandsp calls and are queued as events, so no Python
code runs re-entrantly inside spandsp beyond a list append.
"""

from __future__ import annotations

import collections
import itertools
import os
from dataclasses import dataclass

from appliance.fax.t30decode import log_line_kept, record_frame
from appliance.spandsp._spandsp import ffi, lib

#: T.30 result codes that mean "the far end went away": the pages so far are kept as incomplete.
CALL_DROPPED = lib.T30_ERR_CALLDROPPED
OK = lib.T30_ERR_OK

_sessions: dict[str, T30Terminal] = {}
_tags = itertools.count(1)


@dataclass(frozen=True)
class FaxStats:
    """Transfer statistics as spandsp reports them, converted to the units people read."""

    bit_rate: int
    ecm: bool
    pages_tx: int
    pages_rx: int
    x_dpi: int
    y_dpi: int
    width: int
    length: int
    bad_rows: int
    longest_bad_row_run: int
    encoding: int
    remote_ident: str
    remote_vendor: str
    remote_model: str

    @property
    def resolution(self) -> str:
        return f"{self.x_dpi}x{self.y_dpi}" if self.x_dpi else ""


@dataclass(frozen=True)
class PhaseB:
    """The far end identified itself and the session parameters are being negotiated."""

    code: int


@dataclass(frozen=True)
class PageDone:
    """Phase D: one page ended (received, or sent)."""

    stats: FaxStats
    frame: str  # MPS, EOP, EOM ...


@dataclass(frozen=True)
class PhaseE:
    """The T.30 session ended; ``code`` is T30_ERR_*, ``text`` its description."""

    code: int
    text: str
    stats: FaxStats

    @property
    def ok(self) -> bool:
        return self.code == OK


Event = PhaseB | PageDone | PhaseE


def result_text(code: int) -> str:
    return ffi.string(lib.t30_completion_code_to_str(code)).decode("ascii", "replace")


def _ppm_to_dpi(ppm: int) -> int:
    dpi = round(ppm * 0.0254)
    # T.30's nominal values: 7.7 lines/mm is 196 "dpi", 3.85 is 98, 8 pels/mm is 204
    for nominal in (98, 196, 204, 391, 200, 300, 400):
        if abs(dpi - nominal) <= 2:
            return nominal
    return dpi


def _str(p: ffi.CData) -> str:
    return "" if p == ffi.NULL else ffi.string(p).decode("latin-1")


class T30Terminal:
    """The T.30 half of a terminal; subclasses create the front end and call ``_setup_t30``."""

    def __init__(self) -> None:
        self.events: collections.deque[Event] = collections.deque()
        self.trace: collections.deque[str] = collections.deque(maxlen=2000)
        self.finished: PhaseE | None = None
        self._handle = ffi.new_handle(self)
        self._t30 = ffi.NULL
        self._tag = ""
        self._last_stats = FaxStats(0, False, 0, 0, 0, 0, 0, 0, 0, 0, 0, "", "", "")

    def _setup_t30(
        self,
        t30: ffi.CData,
        *,
        calling: bool,
        ident: str,
        ecm: bool,
        rx_file: str | os.PathLike[str] | None,
        tx_file: str | os.PathLike[str] | None,
        trace: bool,
        logs: list[ffi.CData],
    ) -> None:
        self._t30 = t30
        if ident:
            lib.t30_set_tx_ident(t30, ident.encode("ascii"))
        lib.t30_set_ecm_capability(t30, 1 if ecm else 0)
        lib.t30_set_supported_modems(t30, lib.T30_SUPPORT_V27TER | lib.T30_SUPPORT_V29 | lib.T30_SUPPORT_V17)
        lib.t30_set_supported_compressions(
            t30, lib.T30_SUPPORT_T4_1D_COMPRESSION | lib.T30_SUPPORT_T4_2D_COMPRESSION | lib.T30_SUPPORT_T6_COMPRESSION
        )
        lib.t30_set_supported_resolutions(
            t30,
            lib.T30_SUPPORT_STANDARD_RESOLUTION
            | lib.T30_SUPPORT_FINE_RESOLUTION
            | lib.T30_SUPPORT_SUPERFINE_RESOLUTION
            | lib.T30_SUPPORT_R8_RESOLUTION
            | lib.T30_SUPPORT_R16_RESOLUTION,
        )
        lib.t30_set_supported_image_sizes(
            t30,
            lib.T30_SUPPORT_US_LETTER_LENGTH
            | lib.T30_SUPPORT_US_LEGAL_LENGTH
            | lib.T30_SUPPORT_UNLIMITED_LENGTH
            | lib.T30_SUPPORT_215MM_WIDTH
            | lib.T30_SUPPORT_255MM_WIDTH
            | lib.T30_SUPPORT_303MM_WIDTH
            | lib.T30_SUPPORT_A4_LENGTH
            | lib.T30_SUPPORT_B4_LENGTH,
        )
        if rx_file is not None:
            lib.t30_set_rx_encoding(t30, lib.T4_COMPRESSION_ITU_T6)
            lib.t30_set_rx_file(t30, os.fsencode(rx_file), -1)
        if tx_file is not None:
            lib.t30_set_tx_file(t30, os.fsencode(tx_file), -1, -1)
        lib.t30_set_phase_b_handler(t30, lib._fb_phase_b, self._handle)
        lib.t30_set_phase_d_handler(t30, lib._fb_phase_d, self._handle)
        lib.t30_set_phase_e_handler(t30, lib._fb_phase_e, self._handle)
        if trace:
            self._tag = f"fb{next(_tags)}"
            # span_log_set_tag keeps the pointer, not a copy: the string must live as long as the C state
            self._tag_c = ffi.new("char[]", self._tag.encode())
            _sessions[self._tag] = self
            lib.t30_set_real_time_frame_handler(t30, lib._fb_frame, self._handle)
            # T.30's own log at FLOW; the layers below (the T.38 core logs every IFP in hex at FLOW,
            # the page again) only their protocol warnings and errors
            levels = [(lib.t30_get_logging_state(t30), lib.SPAN_LOG_FLOW)]
            levels += [(log, lib.SPAN_LOG_PROTOCOL_WARNING) for log in logs]
            for log, level in levels:
                lib.span_log_set_tag(log, self._tag_c)
                lib.span_log_set_level(log, lib.SPAN_LOG_SHOW_TAG | lib.SPAN_LOG_SHOW_SEVERITY | level)
                lib.span_log_set_message_handler(log, lib._fb_log)

    def next_event(self) -> Event | None:
        return self.events.popleft() if self.events else None

    def stats(self) -> FaxStats:
        """Live statistics; after ``close()`` the last ones seen (never a read of freed C state)."""
        if not self.alive:
            return self._last_stats
        st = ffi.new("t30_stats_t *")
        lib.t30_get_transfer_statistics(self._t30, st)
        return FaxStats(
            bit_rate=st.bit_rate,
            ecm=bool(st.error_correcting_mode),
            pages_tx=st.pages_tx,
            pages_rx=st.pages_rx,
            x_dpi=_ppm_to_dpi(st.x_resolution),
            y_dpi=_ppm_to_dpi(st.y_resolution),
            width=st.width,
            length=st.length,
            bad_rows=st.bad_rows,
            longest_bad_row_run=st.longest_bad_row_run,
            encoding=st.encoding,
            remote_ident=_str(lib.t30_get_rx_ident(self._t30)).strip(),
            remote_vendor=_str(lib.t30_get_rx_vendor(self._t30)),
            remote_model=_str(lib.t30_get_rx_model(self._t30)),
        )

    @property
    def alive(self) -> bool:
        return self._t30 != ffi.NULL

    def terminate(self) -> None:
        """End the T.30 session now (the call is gone): spandsp closes the file and reports phase E."""
        if self.alive and self.finished is None:
            lib.t30_terminate(self._t30)

    def close(self) -> None:
        """Free the C state.  Safe to call twice; the rx file is complete once this returns."""
        if self.alive:
            self.terminate()
            self._last_stats = self.stats()
            self._free()
            self._t30 = ffi.NULL
        _sessions.pop(self._tag, None)

    def _free(self) -> None:
        raise NotImplementedError

    def __del__(self) -> None:
        if getattr(self, "_t30", ffi.NULL) != ffi.NULL:
            self.close()


def _self(user_data: ffi.CData) -> T30Terminal:
    return ffi.from_handle(user_data)


@ffi.def_extern()
def _fb_phase_b(t30: ffi.CData, user_data: ffi.CData, result: int) -> int:
    _self(user_data).events.append(PhaseB(result))
    return OK


@ffi.def_extern()
def _fb_phase_d(t30: ffi.CData, user_data: ffi.CData, result: int) -> int:
    term = _self(user_data)
    term.events.append(PageDone(term.stats(), _str(lib.t30_frametype(result & 0xFF))))
    return OK


@ffi.def_extern()
def _fb_phase_e(t30: ffi.CData, user_data: ffi.CData, code: int) -> None:
    term = _self(user_data)
    ev = PhaseE(code, result_text(code), term.stats())
    term.finished = ev
    term.events.append(ev)


@ffi.def_extern()
def _fb_frame(t30: ffi.CData, user_data: ffi.CData, direction: int, msg: ffi.CData, length: int) -> None:
    if length >= 3:  # image frames are counted, not kept: a page's data would crowd out the handshake
        record_frame(_self(user_data).trace, bool(direction), bytes(ffi.buffer(msg, length)))


@ffi.def_extern()
def _fb_log(level: int, text: ffi.CData) -> None:
    line = _str(text).rstrip()
    # 0.0.6's log callback has no user data: route by the tag we gave each session
    for word in line.split()[:3]:
        term = _sessions.get(word)
        if term is not None:
            if log_line_kept(line):
                term.trace.append(line)
            return
