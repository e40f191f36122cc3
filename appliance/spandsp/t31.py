"""A Class 1 fax modem emulated in software: spandsp's T.31 behind a sans-I/O API.

The DTE (efax, HylaFAX, our own Class 1 driver) talks AT commands; the modem talks 8 kHz audio.
Nothing here touches a file descriptor or a clock:

- bytes from the DTE go in with :meth:`T31Modem.at_rx` (only while :attr:`cts` is true: the
  caller leaves the rest where it is, which is the flow control spandsp 0.0.6 relies on);
- bytes for the DTE collect in :attr:`T31Modem.to_dte` (a deque of ``bytes``);
- what the modem asks of the phone line (dial, answer, hang up, CTS, ...) collects in
  :attr:`T31Modem.events` as :class:`ModemControl` values, to be handled *after* the call that
  produced them returns (spandsp calls back from inside ``t31_at_rx``/``t31_rx``/``t31_tx``);
- the line tells the modem what happens with :meth:`call_event` (``ALERTING`` shows ``RING``,
  ``ANSWERED`` after our ATA, ``CONNECTED`` when the far end answered our ATD, ``HANGUP``).

Audio: :meth:`rx_audio`/:meth:`tx_audio` move linear 16-bit samples as ``bytes`` (native
endianness), and :class:`ModemLine` moves audio between two modems entirely in C.

spandsp 0.0.6 hides the modem's ``at_state_t``: it is reachable only as the first argument of the
``at_tx`` callback, so :meth:`set_call_info` works after the modem has said something (call
:meth:`at_rx` with ``b"AT\\r"`` once if need be, as fax.md explains).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

from appliance.spandsp._spandsp import ffi, lib


class Control(enum.IntEnum):
    CALL = lib.AT_MODEM_CONTROL_CALL
    ANSWER = lib.AT_MODEM_CONTROL_ANSWER
    HANGUP = lib.AT_MODEM_CONTROL_HANGUP
    OFFHOOK = lib.AT_MODEM_CONTROL_OFFHOOK
    ONHOOK = lib.AT_MODEM_CONTROL_ONHOOK
    DTR = lib.AT_MODEM_CONTROL_DTR
    RTS = lib.AT_MODEM_CONTROL_RTS
    CTS = lib.AT_MODEM_CONTROL_CTS
    CAR = lib.AT_MODEM_CONTROL_CAR
    RNG = lib.AT_MODEM_CONTROL_RNG
    DSR = lib.AT_MODEM_CONTROL_DSR
    SETID = lib.AT_MODEM_CONTROL_SETID
    RESTART = lib.AT_MODEM_CONTROL_RESTART
    DTE_TIMEOUT = lib.AT_MODEM_CONTROL_DTE_TIMEOUT


class CallEvent(enum.IntEnum):
    ALERTING = lib.AT_CALL_EVENT_ALERTING
    CONNECTED = lib.AT_CALL_EVENT_CONNECTED
    ANSWERED = lib.AT_CALL_EVENT_ANSWERED
    BUSY = lib.AT_CALL_EVENT_BUSY
    NO_DIALTONE = lib.AT_CALL_EVENT_NO_DIALTONE
    NO_ANSWER = lib.AT_CALL_EVENT_NO_ANSWER
    HANGUP = lib.AT_CALL_EVENT_HANGUP


@dataclass(frozen=True)
class ModemControl:
    """One request from the modem to the line.  ``number`` is the dialled string for CALL;
    for CTS/RTS/DTR/CAR/... ``on`` says whether the signal is asserted (spandsp passes
    ``num`` as NULL for off and non-NULL for on)."""

    op: Control
    number: str | None = None
    on: bool = False


class T31Modem:
    """One emulated Class 1 modem."""

    def __init__(self, *, name: str = "t31") -> None:
        self.name = name
        self.to_dte: deque[bytes] = deque()
        self.events: deque[ModemControl] = deque()
        self.cts = True
        self._at: ffi.CData = ffi.NULL
        self._handle = ffi.new_handle(self)
        self._amp = ffi.new("int16_t[1024]")
        self._t31 = lib.t31_init(
            ffi.NULL,
            lib._fb_t31_at_tx,
            self._handle,
            lib._fb_t31_modem_control,
            self._handle,
            lib._fb_t31_t38_tx,
            self._handle,
        )
        if self._t31 == ffi.NULL:
            raise MemoryError("t31_init failed")
        lib.t31_set_transmit_on_idle(self._t31, 1)

    # -- DTE side --------------------------------------------------------------------------
    def at_rx(self, data: bytes) -> None:
        """Bytes from the DTE: AT commands, or DLE-stuffed data in a +FTM/+FTH phase."""
        self._check()
        if data:
            lib.t31_at_rx(self._t31, data, len(data))

    def take_output(self) -> bytes:
        """Everything the modem has said to the DTE since the last call."""
        out = b"".join(self.to_dte)
        self.to_dte.clear()
        return out

    def next_event(self) -> ModemControl | None:
        return self.events.popleft() if self.events else None

    # -- line side -------------------------------------------------------------------------
    def call_event(self, event: CallEvent | int) -> None:
        self._check()
        lib.t31_call_event(self._t31, int(event))

    def set_call_info(self, name: str, value: str | None) -> bool:
        """Caller ID for the next RING (``NMBR``, ``NAME``, ``DATE``, ``TIME``, ``NDID``).
        False if the modem has not yet called ``at_tx`` (its at_state_t is not known yet)."""
        if self._at == ffi.NULL:
            return False
        lib.at_set_call_info(
            self._at, name.encode("ascii"), ffi.NULL if value is None else value.encode("ascii", "replace")
        )
        return True

    def reset_call_info(self) -> None:
        if self._at != ffi.NULL:
            lib.at_reset_call_info(self._at)

    def rx_audio(self, samples: bytes) -> None:
        """Linear 16-bit samples (native byte order) heard from the line."""
        self._check()
        n = len(samples) // 2
        done = 0
        while done < n:
            k = min(1024, n - done)
            ffi.memmove(self._amp, samples[2 * done : 2 * (done + k)], 2 * k)
            lib.t31_rx(self._t31, self._amp, k)
            done += k

    def tx_audio(self, samples: int = 160) -> bytes:
        """The modem's next ``samples`` of audio (silence where it has nothing to send)."""
        self._check()
        samples = min(samples, 1024)
        n = max(0, lib.t31_tx(self._t31, self._amp, samples))
        out = bytes(ffi.buffer(self._amp, 2 * n))
        return out + bytes(2 * (samples - n))

    @property
    def state(self) -> ffi.CData:
        """The C ``t31_state_t*`` (for :class:`ModemLine`)."""
        self._check()
        return self._t31

    def close(self) -> None:
        if self._t31 != ffi.NULL:
            lib.t31_free(self._t31)
            self._t31 = ffi.NULL
            self._at = ffi.NULL

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a finaliser must not raise (the binding may be gone at exit)
            pass

    def _check(self) -> None:
        if self._t31 == ffi.NULL:
            raise RuntimeError(f"{self.name}: modem closed")


def noise_amplitude(noise_dbm0: float | None) -> int:
    """Peak amplitude of uniform white noise whose power is ``noise_dbm0`` (G.711's 0 dBm0 sine
    has an RMS of about 2318 on spandsp's 16-bit scale, +3.14 dBm0 being full scale)."""
    if noise_dbm0 is None:
        return 0
    rms = 32767 / math.sqrt(2) * 10 ** ((noise_dbm0 - 3.14) / 20)
    return max(0, min(32767, round(rms * math.sqrt(3))))


class ModemLine:
    """Two modems on one line; :meth:`step` moves one block of audio both ways in one C call and
    counts pages from the T.30 frames it taps off the line (post-page command, then MCF)."""

    def __init__(
        self,
        a: T31Modem,
        b: T31Modem,
        *,
        noise_dbm0: float | None = None,
        drop: float = 0.0,
        seed: int = 1,
        delay_ms: float = 100.0,
    ) -> None:
        if not 0.0 <= drop <= 1.0:
            raise ValueError("drop must be a probability")
        self.a, self.b = a, b
        self._line = lib.fb_line_new(a.state, b.state)
        if self._line == ffi.NULL:
            raise MemoryError("fb_line_new failed")
        if lib.fb_line_set_delay(self._line, round(delay_ms * 8)) != 0:
            raise ValueError("delay_ms must be between 0 and 1000")
        lib.fb_line_set_faults(self._line, noise_amplitude(noise_dbm0), round(drop * 1_000_000), seed & 0xFFFFFFFF)

    def set_fax_end(self, end: int, fax: ffi.CData) -> None:
        """Carry fax terminal ``fax`` at end 0 (a) or 1 (b) instead of that end's T.31 modem
        (the virtual Class 2 modem's T.30); the terminal must outlive this line."""
        if lib.fb_line_set_fax_end(self._line, end, fax) != 0:
            raise ValueError("end is 0 or 1")

    def step(self, samples: int = 160) -> int:
        """Move ``samples`` both ways; the number of pages confirmed so far."""
        return lib.fb_line_step(self._line, samples)

    @property
    def pages(self) -> int:
        return lib.fb_line_pages(self._line)

    @property
    def frames(self) -> int:
        return lib.fb_line_frames(self._line)

    @property
    def dropped_blocks(self) -> int:
        return lib.fb_line_dropped(self._line)

    def close(self) -> None:
        if self._line != ffi.NULL:
            lib.fb_line_free(self._line)
            self._line = ffi.NULL

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a finaliser must not raise (the binding may be gone at exit)
            pass


@ffi.def_extern()
def _fb_t31_at_tx(at: ffi.CData, user_data: ffi.CData, buf: ffi.CData, length: int) -> int:
    modem: T31Modem = ffi.from_handle(user_data)
    modem._at = at
    if length:
        modem.to_dte.append(bytes(ffi.buffer(buf, length)))
    return int(length)


@ffi.def_extern()
def _fb_t31_modem_control(t31: ffi.CData, user_data: ffi.CData, op: int, num: ffi.CData) -> int:
    modem: T31Modem = ffi.from_handle(user_data)
    try:
        control = Control(op)
    except ValueError:
        return 0
    if control is Control.CTS:
        modem.cts = num != ffi.NULL
    if control in (Control.CALL, Control.SETID):
        number = ffi.string(num).decode("ascii", "replace") if num != ffi.NULL else ""
        modem.events.append(ModemControl(control, number=number))
    else:
        modem.events.append(ModemControl(control, on=num != ffi.NULL))
    return 0


@ffi.def_extern()
def _fb_t31_t38_tx(core: ffi.CData, user_data: ffi.CData, buf: ffi.CData, length: int, count: int) -> int:
    return 0  # audio mode only: the T.38 side of T.31 is never switched on here
