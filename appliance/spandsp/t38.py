"""A fax terminal on T.38: spandsp's ``t38_terminal`` behind the same sans-I/O shape as audio.

IFP packets come in with ``receive_ifp``; time moves on with ``advance(samples)`` (spandsp counts
time in 8 kHz samples), and what spandsp wants sent is collected by the transmit callback and
drained with ``packets_to_send`` *after* the call returns: never sent from inside the callback,
and always copied, because spandsp reuses its buffer.
"""

from __future__ import annotations

import collections
import os

from appliance.spandsp._spandsp import ffi, lib
from appliance.spandsp.t30 import T30Terminal

RATE_MANAGEMENT = {
    "transferredtcf": lib.T38_DATA_RATE_MANAGEMENT_TRANSFERRED_TCF,
    "localtcf": lib.T38_DATA_RATE_MANAGEMENT_LOCAL_TCF,
}


class T38FaxTerminal(T30Terminal):
    """One fax call's T.38 terminal: answering (``rx_file``) or calling (``tx_file``)."""

    def __init__(
        self,
        *,
        calling: bool,
        ident: str = "",
        ecm: bool = True,
        rx_file: str | os.PathLike[str] | None = None,
        tx_file: str | os.PathLike[str] | None = None,
        trace: bool = True,
        version: int = 0,
        max_bitrate: int = 14400,
        rate_management: str = "transferredTCF",
        max_datagram: int = 400,
        pacing: bool = True,
    ) -> None:
        super().__init__()
        self._t38 = ffi.NULL
        if calling and tx_file is None:
            raise ValueError("a calling terminal needs tx_file")
        method = RATE_MANAGEMENT.get(rate_management.lower())
        if method is None:
            raise ValueError(f"unknown T38FaxRateManagement {rate_management!r}")
        self.calling = calling
        #: (IFP bytes, copies wanted) in the order spandsp produced them
        self.outgoing: collections.deque[tuple[bytes, int]] = collections.deque()
        self._t38 = lib.t38_terminal_init(ffi.NULL, 1 if calling else 0, lib._fb_t38_tx, self._handle)
        if self._t38 == ffi.NULL:
            raise MemoryError("t38_terminal_init failed")
        core = self._core = lib.t38_terminal_get_t38_core_state(self._t38)
        lib.t38_set_t38_version(core, version)
        lib.t38_set_fastest_image_data_rate(core, max_bitrate)
        lib.t38_set_data_rate_management_method(core, method)
        lib.t38_set_max_datagram_size(core, max_datagram)
        # pacing: spandsp spreads image data over time as a real modem would; tests may turn it off
        lib.t38_terminal_set_config(self._t38, 0 if pacing else lib.T38_TERMINAL_OPTION_NO_PACING)
        lib.t38_terminal_set_tep_mode(self._t38, 0)
        self._setup_t30(
            lib.t38_terminal_get_t30_state(self._t38),
            calling=calling,
            ident=ident,
            ecm=ecm,
            rx_file=rx_file,
            tx_file=tx_file,
            trace=trace,
            logs=[lib.t38_core_get_logging_state(core)],
        )

    def receive_ifp(self, seq: int, ifp: bytes) -> None:
        """One IFP packet, unframed from UDPTL, in sequence order (recovered ones included)."""
        if self.alive and ifp:
            lib.t38_core_rx_ifp_packet(self._core, ifp, len(ifp), seq & 0xFFFF)

    def advance(self, samples: int) -> None:
        """Let ``samples`` (at 8 kHz) of time pass: timers run and paced packets come due."""
        if self.alive:
            lib.t38_terminal_send_timeout(self._t38, samples)

    def packets_to_send(self) -> list[tuple[bytes, int]]:
        out = list(self.outgoing)
        self.outgoing.clear()
        return out

    def _free(self) -> None:
        lib.t38_terminal_free(self._t38)
        self._t38 = ffi.NULL


@ffi.def_extern()
def _fb_t38_tx(core: ffi.CData, user_data: ffi.CData, buf: ffi.CData, length: int, count: int) -> int:
    term: T38FaxTerminal = ffi.from_handle(user_data)
    term.outgoing.append((bytes(ffi.buffer(buf, length)), max(1, count)))
    return 0
