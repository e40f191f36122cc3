"""spandsp's T.30 engine with the modulation done elsewhere: the Class 1 front-end's terminal.

In ``fax_state`` spandsp's own modems sit under T.30; here a Class 1 fax modem does the
modulation, so T.30's three front-end callbacks (set the receive type, set the transmit type,
send an HDLC frame) become *requests* queued for the modem driver, and what the modem hears comes
back in through T.30's front-end entry points: HDLC frames with their FCS verdict, non-ECM data,
carrier status, "send step complete", and the passing of time.  Everything is sans-I/O: every
callback happens inside one of the calls below, and the driver drains :attr:`requests` after each.

How the calls map onto spandsp 0.0.6 (src/fax.c is the audio front-end doing the same job):

- ``SetTx`` / ``SetRx``: T.30's set_tx_type / set_rx_type handlers (modem type, bit rate,
  short training, HDLC or not).  ``T30_MODEM_CED``/``CNG`` are the modem's own answer/call tones.
- ``SendHdlc(frame)``: one frame without FCS; ``SendHdlc(None)`` ends the HDLC transmission.
  Each is acknowledged with :meth:`send_step_complete` once the modem has sent it.
- :meth:`hdlc_received` (``t30_hdlc_accept``), :meth:`hdlc_status` (carrier and training for HDLC
  reception), :meth:`data_received` / :meth:`data_status` (non-ECM data and its carrier),
  :meth:`data_to_send` (non-ECM data and TCF to transmit), :meth:`advance` (T.30's timers).
"""

from __future__ import annotations

import collections
import enum
import os
from dataclasses import dataclass

from appliance.spandsp._spandsp import ffi, lib
from appliance.spandsp.t30 import T30Terminal


class Modem(enum.IntEnum):
    """T.30's modem types (t30.h ``T30_MODEM_*``)."""

    NONE = lib.T30_MODEM_NONE
    PAUSE = lib.T30_MODEM_PAUSE
    CED = lib.T30_MODEM_CED
    CNG = lib.T30_MODEM_CNG
    V21 = lib.T30_MODEM_V21
    V27TER = lib.T30_MODEM_V27TER
    V29 = lib.T30_MODEM_V29
    V17 = lib.T30_MODEM_V17
    DONE = lib.T30_MODEM_DONE


class Signal(enum.IntEnum):
    """Carrier and training reports towards T.30 (spandsp's ``SIG_STATUS_*``)."""

    CARRIER_DOWN = lib.SIG_STATUS_CARRIER_DOWN
    CARRIER_UP = lib.SIG_STATUS_CARRIER_UP
    TRAINING_SUCCEEDED = lib.SIG_STATUS_TRAINING_SUCCEEDED
    TRAINING_FAILED = lib.SIG_STATUS_TRAINING_FAILED


@dataclass(frozen=True)
class SetRx:
    modem: Modem
    bit_rate: int
    short_train: bool
    hdlc: bool


@dataclass(frozen=True)
class SetTx:
    modem: Modem
    bit_rate: int
    short_train: int  # a flag; for PAUSE, the pause length in ms
    hdlc: bool


@dataclass(frozen=True)
class SendHdlc:
    frame: bytes | None  # None: end of the HDLC transmission (carrier off)


Request = SetRx | SetTx | SendHdlc


def _modem(value: int) -> Modem:
    try:
        return Modem(value)
    except ValueError:
        return Modem.NONE


class FrontEndTerminal(T30Terminal):
    """T.30 whose modems are an external Class 1 modem; requests queue in :attr:`requests`."""

    def __init__(
        self,
        *,
        calling: bool,
        ident: str = "",
        ecm: bool = True,
        rx_file: str | os.PathLike[str] | None = None,
        tx_file: str | os.PathLike[str] | None = None,
        trace: bool = True,
    ) -> None:
        super().__init__()
        if calling and tx_file is None:
            raise ValueError("a calling terminal needs tx_file")
        self.calling = calling
        self.requests: collections.deque[Request] = collections.deque()
        self._buf = ffi.new("uint8_t[4096]")
        self._ecm_rx = ffi.NULL
        # t30_init restarts T.30 at once, so the first requests (CED or CNG) arrive during it
        t30 = lib.t30_init(
            ffi.NULL,
            1 if calling else 0,
            lib._fb_fe_set_rx,
            self._handle,
            lib._fb_fe_set_tx,
            self._handle,
            lib._fb_fe_send_hdlc,
            self._handle,
        )
        if t30 == ffi.NULL:
            raise MemoryError("t30_init failed")
        self._setup_t30(
            t30, calling=calling, ident=ident, ecm=ecm, rx_file=rx_file, tx_file=tx_file, trace=trace, logs=[]
        )

    # -- what the modem did -----------------------------------------------------------------
    def send_step_complete(self) -> None:
        """The last transmit request is done (tone played, frame sent, carrier off, data sent)."""
        if self.alive:
            lib.t30_front_end_status(self._t30, lib.T30_FRONT_END_SEND_STEP_COMPLETE)

    def hdlc_received(self, frame: bytes, ok: bool) -> None:
        """One HDLC frame, FCS already removed; ``ok`` is the modem's FCS verdict (OK/ERROR)."""
        if self.alive:
            lib.t30_hdlc_accept(self._t30, frame, len(frame), 1 if ok else 0)

    def hdlc_status(self, status: Signal) -> None:
        """Carrier/training of an HDLC reception (V.21, or ECM at the image rate)."""
        if self.alive:
            lib.t30_hdlc_accept(self._t30, ffi.NULL, int(status), 1)

    def data_status(self, status: Signal) -> None:
        """Carrier/training of a non-ECM reception (TCF or a page)."""
        if self.alive:
            lib.t30_non_ecm_put_bit(self._t30, int(status))

    def data_received(self, data: bytes) -> None:
        """Non-ECM data (TCF or page), bytes with the first bit received in the LSB."""
        if self.alive and data:
            lib.t30_non_ecm_put_chunk(self._t30, data, len(data))

    def data_to_send(self, max_len: int) -> bytes:
        """Up to ``max_len`` bytes of TCF or page to transmit; fewer means this is the end."""
        if not self.alive:
            return b""
        n = lib.t30_non_ecm_get_chunk(self._t30, self._buf, min(max_len, 4096))
        return bytes(ffi.buffer(self._buf, max(0, n)))

    def ecm_rx_start(self) -> None:
        """A new ECM burst: a fresh HDLC receiver whose frames go straight to T.30."""
        if self.alive:
            if self._ecm_rx != ffi.NULL:
                lib.hdlc_rx_free(self._ecm_rx)
            self._ecm_rx = lib.fb_ecm_rx_new(self._t30)

    def ecm_rx_data(self, data: bytes) -> None:
        """The +FRM bit stream of an ECM burst (first bit in the LSB); HDLC deframed in C."""
        if self.alive and self._ecm_rx != ffi.NULL and data:
            lib.fb_ecm_rx_put(self._ecm_rx, data, len(data))

    def advance(self, samples: int) -> None:
        """Time passed (8 kHz samples): T.30's timers (T1, T2, T4 ...) run on this."""
        if self.alive and samples > 0:
            lib.t30_timer_update(self._t30, samples)

    def _free(self) -> None:
        if self._ecm_rx != ffi.NULL:
            lib.hdlc_rx_free(self._ecm_rx)
            self._ecm_rx = ffi.NULL
        lib.t30_free(self._t30)


def _term(user_data: ffi.CData) -> FrontEndTerminal:
    return ffi.from_handle(user_data)


@ffi.def_extern()
def _fb_fe_set_rx(user_data: ffi.CData, type_: int, bit_rate: int, short_train: int, use_hdlc: int) -> None:
    _term(user_data).requests.append(SetRx(_modem(type_), bit_rate, bool(short_train), bool(use_hdlc)))


@ffi.def_extern()
def _fb_fe_set_tx(user_data: ffi.CData, type_: int, bit_rate: int, short_train: int, use_hdlc: int) -> None:
    # for T30_MODEM_PAUSE, spandsp passes the pause in ms through short_train
    _term(user_data).requests.append(SetTx(_modem(type_), bit_rate, short_train, bool(use_hdlc)))


@ffi.def_extern()
def _fb_fe_send_hdlc(user_data: ffi.CData, msg: ffi.CData, length: int) -> None:
    frame = None if msg == ffi.NULL or length <= 0 else bytes(ffi.buffer(msg, length))
    _term(user_data).requests.append(SendHdlc(frame))
