"""Class 1 / 1.0 rules, sans-I/O: spandsp's T.30 (the same engine as the SIP path) over a modem
that only modulates.

The T.30 engine (:class:`FrontEndTerminal`) asks for modem types and frames; this front-end turns
each request into the Class 1 command that does it (T.31 section 8):

================================  =========================================================
T.30 asks                         the modem is told
================================  =========================================================
transmit CED (answering)          ``ATA`` (the modem plays CED, then V.21 HDLC: CONNECT)
transmit CNG (calling)            ``ATD<number>`` (the modem plays CNG; CONNECT = V.21 rx)
transmit V.21 HDLC                ``AT+FTH=3``, each frame DLE-stuffed ending <DLE><ETX>;
                                  CONNECT after a non-final frame, OK after the final one
transmit image data (non-ECM)     ``AT+FTM=<mod>``, TCF or page data, <DLE><ETX>, OK
transmit ECM frames               ``AT+FTM=<mod>``, the frames HDLC-framed here (``hdlc.py``)
receive V.21 HDLC                 ``AT+FRH=3``: frame + FCS, <DLE><ETX>, OK (FCS good) or ERROR
receive image data / ECM frames   ``AT+FRM=<mod>`` (ECM deframed by spandsp's HDLC receiver)
pause                             a local wait (the modem is silent when not transmitting)
================================  =========================================================

Carrier and training reports that spandsp's own modems would give T.30 come from the modem's
answers: CONNECT is "trained, carrier up", <DLE><ETX> plus NO CARRIER is "carrier down", and
the final frame of a V.21 burst is followed by "carrier down" (T.30 queues its phase changes
until then).  TCF is judged by T.30 itself from the bytes ``+FRM`` delivers (the longest run of
zeros; too short and it answers FTT).  ``+FCERROR`` on ``+FRM`` means the modem heard V.21
instead of the image carrier (the sender repeated its DCS): the frame is fetched with
``AT+FRH=3`` and handed to T.30 like any other, as HylaFAX does.

A receive command waits for carrier indefinitely, so when T.30's timers decide to transmit
(a repeated command, DCN) the waiting command is aborted by sending a byte, as T.31 allows.

Timing (T.30 wants a response to a command within 3 s, and the image carrier follows CFR after
75 ms) is met by issuing each receive command as soon as the previous step ends; the modem
buffers frames and trains on its own, so Python's latency on a Raspberry Pi (a few ms per step)
is far inside the limits.  T.30's timers advance every 20 ms (:data:`TICK`) of the ``now`` given.

Shape.  :class:`Class1FrontEnd` takes modem events with ``receive(event, now)`` and hands out
:class:`SendCommand` / :class:`WriteData` / :class:`EndDataPhase` with ``commands_to_send()``;
``next_timer()`` is when it wants ``receive(TimePassed(), now)`` at the latest.  It reads no
clock and does no I/O: time is only the ``now`` given.  The rules read top to bottom as T.31
tells them, each step a generator that yields what it waits for (a command's outcome, a write
taken, the next modem event, T.30 wanting to talk, a moment of silence); the front-end resumes it
when that has happened (decision 22).  ``class1.py`` is the asyncio adapter.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import cast

from appliance.modem.at import CommandDone, DataReceived, DataResult, DeviceGone, ModemError, Unsolicited
from appliance.modem.at import Event as AtEvent
from appliance.modem.dle import DLE, ETX, dle_stuff
from appliance.modem.hdlc import HdlcEncoder
from appliance.sip.errors import LocalProtocolError
from appliance.spandsp.frontend import FrontEndTerminal, Modem, SendHdlc, SetRx, SetTx, Signal

log = logging.getLogger("faxbridge.modem.class1")

TICK = 0.02
#: bytes of image data written per chunk (the serial flow control paces the rest)
CHUNK = 512
ABORT = b"\x18"  # any character aborts +FRH/+FRM (T.31 8.3.4); CAN is what nobody sends by accident
_RX_RESULTS = ("CONNECT", "OK", "NO CARRIER", "ERROR", "+FCERROR")
_HDLC_TX_END = ("OK", "ERROR", "NO CARRIER")

#: T.30 5.3.2.2: 75 +-20 ms of silence between signals (waited here only with the no_frs quirk)
GAP = 0.075
#: "needs_ftm_delay" (Lucent): let the modem train this long after +FTM's CONNECT
FTM_TRAIN_DELAY = 0.4
#: after a receive command heard nothing: T.30's timers decide what comes next
NOTHING_HEARD_PAUSE = 0.05
#: with nothing to send or receive, look again at least this often
IDLE_WAIT = 0.5
#: hang-up of a modem left in a data phase: the abort byte, then this long for the modem to stop
HANGUP_ABORT_WAIT = 0.2
#: how long a receive command waits for carrier (T.30's own timers abort it long before)
RX_COMMAND_TIMEOUT = 60.0
#: an aborted receive command's answer, and the data phase it may still have opened
ABORT_WAIT = 5.0
#: a data phase's closing answer: after a V.21 frame, after image data, after an ECM burst
FRAME_RESULT_WAIT, DATA_RESULT_WAIT, ECM_RESULT_WAIT = 10.0, 30.0, 60.0
#: silence inside a received frame or data phase before it is given up
FRAME_SILENCE, DATA_SILENCE = 10.0, 30.0

#: T.31 table 4: Class 1 modulation codes; V.17 has (long training, short training)
_CODES: dict[tuple[Modem, int], tuple[int, int]] = {
    (Modem.V21, 300): (3, 3),
    (Modem.V27TER, 2400): (24, 24),
    (Modem.V27TER, 4800): (48, 48),
    (Modem.V29, 7200): (72, 72),
    (Modem.V29, 9600): (96, 96),
    (Modem.V17, 7200): (73, 74),
    (Modem.V17, 9600): (97, 98),
    (Modem.V17, 12000): (121, 122),
    (Modem.V17, 14400): (145, 146),
}
_RX_MODEMS = (Modem.V21, Modem.V27TER, Modem.V29, Modem.V17)


def modulation_code(modem: Modem, bit_rate: int, short_train: bool = False) -> int:
    """The +FTM/+FRM/+FTH/+FRH code for a T.30 modem type and rate."""
    try:
        long_code, short_code = _CODES[(modem, bit_rate)]
    except KeyError:
        raise ValueError(f"no Class 1 modulation for {modem.name} at {bit_rate} bit/s") from None
    return short_code if short_train else long_code


class CallGone(Exception):
    """The modem went away or the line dropped in a way that ends the call at once."""


# -- what goes out ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SendCommand:
    """Run an AT command (after those already queued); answer with :class:`CommandEnded`."""

    tag: int
    cmd: str
    timeout: float
    expect: tuple[str, ...]


@dataclass(frozen=True)
class WriteData:
    """Write raw (already stuffed) bytes; answer with :class:`WriteEnded` once the port took them."""

    tag: int
    data: bytes


@dataclass(frozen=True)
class EndDataPhase:
    """Give up on a data phase whose final result never came (``AtChannel.end_data_phase``)."""


Command = SendCommand | WriteData | EndDataPhase


# -- what comes in, besides the AT channel's own events --------------------------------------


@dataclass(frozen=True)
class CommandEnded:
    """A :class:`SendCommand`'s outcome: its final result, or why it failed."""

    tag: int
    done: CommandDone | None = None
    error: ModemError | None = None


@dataclass(frozen=True)
class WriteEnded:
    tag: int
    error: ModemError | None = None


@dataclass(frozen=True)
class TimePassed:
    """Nothing happened but the clock moved (a timer of :meth:`Class1FrontEnd.next_timer`)."""


FrontEndEvent = AtEvent | CommandEnded | WriteEnded | TimePassed


class Direction(enum.Enum):
    """Which way the line carried the last signal: decides +FRS or +FTS for the gap."""

    RX = "rx"
    TX = "tx"


class Stage(enum.Enum):
    """The front-end's life: the call, then (after the caller closed T.30) the hang-up."""

    CALL = "call"
    ENDED = "ended"
    HANGING_UP = "hanging up"
    DONE = "done"


STAGE_MOVES: frozenset[tuple[Stage, Stage]] = frozenset(
    {
        (Stage.CALL, Stage.ENDED),
        (Stage.ENDED, Stage.HANGING_UP),
        (Stage.ENDED, Stage.DONE),
        (Stage.HANGING_UP, Stage.DONE),
    }
)


@dataclass
class _Wait:
    """What a step waits for; the first of these to happen resumes it."""

    deadline: float | None = None  # resumes with None
    command: int | None = None  # a command's tag: resumes with its CommandEnded
    write: int | None = None  # a write's tag: resumes with its WriteEnded
    event: bool = False  # resumes with the next modem event
    wake: bool = False  # resumes with _WOKEN when a T.30 tick left it something to do


_WOKEN = object()
Step = Generator[_Wait, object, None]


class Class1FrontEnd:
    """One fax call through a Class 1 modem, in either direction; see the module docstring.

    ``connect`` is the command that starts the call: ``ATA`` (answering: afterwards the modem
    transmits V.21) or ``ATD<number>`` (calling: afterwards it receives V.21).  ``quirks`` from
    the quirks table: "no_frs" (wait locally, +FRS resets the modem: USR), "needs_ftm_delay"
    (let the modem train 400 ms after +FTM's CONNECT: Lucent).
    """

    def __init__(
        self,
        term: FrontEndTerminal,
        connect: str,
        now: float,
        *,
        max_duration: float = 900.0,
        connect_timeout: float = 60.0,
        quirks: frozenset[str] = frozenset(),
    ) -> None:
        self.term = term
        self.connect = connect
        self.quirks = quirks
        self.max_duration = max_duration
        self.connect_timeout = connect_timeout
        self.rx = SetRx(Modem.NONE, 0, False, False)
        self.hdlc_tx_open = False
        self.tx_hdlc: tuple[Modem, int, bool] = (Modem.V21, 300, False)
        self.end_reason = ""
        #: the modem error that ended the call, if one did (the adapter logs the port's history)
        self.error: ModemError | None = None
        self.stats = {
            "frames_rx": 0,
            "frames_bad": 0,
            "frames_tx": 0,
            "aborts": 0,
            "fcerror": 0,
            "data_rx": 0,
            "data_tx": 0,
        }
        self.stage = Stage.CALL
        self._ecm_tx: HdlcEncoder | None = None  # set while an ECM burst (+FTM, our framing) is open
        self._v21_instead = False
        self._first_rx_connected = False  # ATD's CONNECT stands for the first +FRH=3's
        self._last_dir = Direction.TX
        self._now = now
        self._started = now
        self._last_tick, self._next_tick, self._carry = now, now + TICK, 0.0
        self._woken = False
        self._out: list[Command] = []
        self._tags = 0
        self._ended: dict[int, CommandEnded | WriteEnded] = {}
        self._forgotten: set[int] = set()  # commands whose outcome nobody waits for any more
        self._events: deque[AtEvent] = deque()
        self._step: Step | None = self._call()
        self._wait: _Wait = _Wait()
        self._resume(None)

    # -- the interface ------------------------------------------------------------------------
    def receive(self, event: FrontEndEvent, now: float) -> None:
        """Something happened at ``now``: a modem event, a command's or write's end, or time."""
        self._now = now
        if self.stage is Stage.CALL and now >= self._next_tick:
            self._tick(now)
        if isinstance(event, (CommandEnded, WriteEnded)):
            if event.tag in self._forgotten:
                self._forgotten.discard(event.tag)
            else:
                self._ended[event.tag] = event
        elif not isinstance(event, TimePassed):
            self._events.append(event)
        self._run()

    def commands_to_send(self) -> list[Command]:
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        """When to call ``receive(TimePassed(), now)`` at the latest; None when nothing waits."""
        times = [
            t
            for t in (
                self._next_tick if self.stage is Stage.CALL else None,
                self._wait.deadline if self._step is not None else None,
            )
            if t is not None
        ]
        return min(times) if times else None

    @property
    def running(self) -> bool:
        """A step is under way (the call, or the hang-up): keep feeding events."""
        return self._step is not None

    def hang_up(self, now: float, data_phase_open: bool) -> None:
        """Back on hook, whatever state the modem was left in; ``running`` until it is."""
        self._now = now
        self._move(Stage.HANGING_UP)
        self._step = self._hang_up(data_phase_open)
        self._resume(None)

    def unread_events(self) -> list[AtEvent]:
        """Modem events received but never asked for: they belong to whoever uses the port next."""
        out = list(self._events)
        self._events.clear()
        return out

    # -- running the steps --------------------------------------------------------------------
    def _move(self, to: Stage) -> None:
        if (self.stage, to) not in STAGE_MOVES:
            raise LocalProtocolError(f"class 1 front-end: {self.stage.value} -> {to.value}")
        self.stage = to

    def _tick(self, now: float) -> None:
        self._carry += (now - self._last_tick) * 8000
        self._last_tick, self._next_tick = now, now + TICK
        samples = int(self._carry)
        self._carry -= samples
        self.term.advance(samples)
        if self.term.requests or self.term.finished is not None:
            self._woken = True

    def _run(self) -> None:
        """Resume the step as long as what it waits for has happened."""
        while self._step is not None:
            w = self._wait
            value: object
            if w.command is not None and w.command in self._ended:
                value = self._ended.pop(w.command)
            elif w.write is not None and w.write in self._ended:
                value = self._ended.pop(w.write)
            elif w.event and self._events:
                value = self._events.popleft()
            elif w.wake and self._woken:
                value = _WOKEN
            elif w.deadline is not None and self._now >= w.deadline:
                if w.command is not None:
                    self._forgotten.add(w.command)
                value = None
            else:
                return
            self._resume(value)

    def _resume(self, value: object) -> None:
        assert self._step is not None
        try:
            self._wait = self._step.send(value)
        except StopIteration:
            self._step = None
            self._wait = _Wait()
            self._move(Stage.ENDED if self.stage is Stage.CALL else Stage.DONE)
            return
        except BaseException:  # a bug of ours: the step is dead, the hang-up may still run
            self._step = None
            self._wait = _Wait()
            self.stage = Stage.ENDED if self.stage is Stage.CALL else Stage.DONE
            raise
        if self._wait.wake:
            self._woken = False  # only a tick after this point counts

    # -- what a step can wait for ---------------------------------------------------------------
    def _send(self, cmd: str, timeout: float, expect: tuple[str, ...]) -> int:
        self._tags += 1
        self._out.append(SendCommand(self._tags, cmd, timeout, expect))
        return self._tags

    def _command(
        self, cmd: str, timeout: float, expect: tuple[str, ...] = ("OK",)
    ) -> Generator[_Wait, object, CommandDone]:
        """Run a command; its CommandDone, or ModemError (unexpected result, timeout, device gone)."""
        tag = self._send(cmd, timeout, expect)
        ended = yield _Wait(command=tag)
        assert isinstance(ended, CommandEnded)
        return _outcome(ended)

    def _write(self, data: bytes) -> Step:
        self._tags += 1
        self._out.append(WriteData(self._tags, data))
        ended = yield _Wait(write=self._tags)
        assert isinstance(ended, WriteEnded)
        if ended.error is not None:
            raise ended.error

    def _sleep(self, seconds: float) -> Step:
        yield _Wait(deadline=self._now + seconds)

    def _end_data_phase(self) -> None:
        self._out.append(EndDataPhase())

    def _event(self, timeout: float) -> Generator[_Wait, object, AtEvent | None]:
        """The next event from the modem, or None after ``timeout``; raises CallGone if it vanished."""
        ev = yield _Wait(event=True, deadline=self._now + max(0.0, timeout))
        if isinstance(ev, DeviceGone):
            raise CallGone(f"modem gone ({ev.reason})")
        if isinstance(ev, Unsolicited) and ev.line.upper().startswith(("+FHNG", "+FHS")):
            raise CallGone(f"modem hung up ({ev.line})")
        return cast("AtEvent | None", ev)  # _Wait(event=True) resumes with a queued AtEvent or None

    # -- the call ---------------------------------------------------------------------------
    def _call(self) -> Step:
        """Run the call to its end; ``end_reason`` says why it ended."""
        try:
            yield from self._start()
            while True:
                if self.term.finished is not None:
                    self.end_reason = self.end_reason or "fax session ended"
                    break
                if self._now - self._started > self.max_duration:
                    self.end_reason = "call exceeded the maximum duration"
                    break
                request = self._next_request()
                if request is not None:
                    yield from self._transmit(request)
                elif self.rx.modem in _RX_MODEMS:
                    yield from self._receive()
                else:
                    yield _Wait(wake=True, deadline=self._now + IDLE_WAIT)
        except CallGone as e:
            self.end_reason = str(e)
        except ModemError as e:
            self.end_reason = f"modem error: {e}"
            self.error = e

    def _start(self) -> Step:
        done = yield from self._command(
            self.connect, self.connect_timeout, _RX_RESULTS + ("BUSY", "NO ANSWER", "NO DIALTONE")
        )
        if done.result != "CONNECT":
            what = "dialling" if self.connect.upper().startswith("ATD") else "answering"
            raise CallGone(f"{what}: {done.result}")
        if not self.connect.upper().startswith("ATD"):
            self.hdlc_tx_open = True  # the modem went on from CED to V.21 transmission
        else:
            self._first_rx_connected = True

    def _next_request(self) -> SetTx | SendHdlc | None:
        """Apply receive-mode changes in order; return the first transmit request, if any."""
        while self.term.requests:
            req = self.term.requests.popleft()
            if isinstance(req, SetRx):
                if req.modem in (Modem.NONE, Modem.DONE, Modem.PAUSE, Modem.CED, Modem.CNG):
                    self.rx = SetRx(Modem.NONE, 0, False, False)
                else:
                    self.rx = req
                continue
            return req
        return None

    def _has_transmit_request(self) -> bool:
        return any(not isinstance(r, SetRx) for r in self.term.requests)

    # -- transmitting -----------------------------------------------------------------------
    def _transmit(self, req: SetTx | SendHdlc) -> Step:
        if isinstance(req, SendHdlc):
            yield from self._send_hdlc(req.frame)
            return
        if req.modem in (Modem.CED, Modem.CNG):
            self.term.send_step_complete()  # the modem played it as part of ATA / ATD
        elif req.modem == Modem.PAUSE:
            yield from self._close_hdlc()
            yield from self._sleep(max(0, int(req.short_train)) / 1000.0)
            self.term.send_step_complete()
        elif req.modem in (Modem.NONE, Modem.DONE):
            yield from self._close_hdlc()
        elif req.hdlc:
            # opened when the first frame comes: T.30 sometimes names the modem and then has
            # nothing to send, and a carrier with no frames confuses the far end
            if self.hdlc_tx_open and (req.modem, req.bit_rate) != self.tx_hdlc[:2]:
                yield from self._close_hdlc()
            self.tx_hdlc = (req.modem, req.bit_rate, bool(req.short_train))
        else:
            yield from self._close_hdlc()
            code = modulation_code(req.modem, req.bit_rate, bool(req.short_train))
            yield from self._gap()
            yield from self._command_connect(f"AT+FTM={code}")
            yield from self._send_image_data()
            self.term.send_step_complete()
        self._last_dir = Direction.TX

    def _gap(self) -> Step:
        """T.30 5.3.2.2: 75 +-20 ms of silence between signals.  After receiving, wait until
        the line has been silent that long (+FRS); after transmitting, send that much (+FTS).
        Without it the far modem hears our next carrier as the tail of the last one (seen:
        the receiver's V.21 held DCS's OK through the whole TCF that followed it)."""
        if self._last_dir is Direction.RX and "no_frs" in self.quirks:
            yield from self._sleep(GAP)
            return
        cmd = "AT+FRS=7" if self._last_dir is Direction.RX else "AT+FTS=7"
        try:
            yield from self._command(cmd, 3.0, ("OK", "ERROR", "NO CARRIER"))
        except ModemError as e:
            if _gone(e):
                raise CallGone(f"modem gone ({e.result})") from None
            log.info("class 1: %s", e)

    def _command_connect(self, cmd: str) -> Step:
        done = yield from self._command(cmd, 10.0, _RX_RESULTS)
        if done.result != "CONNECT":
            raise ModemError(cmd, done.result, done.lines)
        if cmd.startswith("AT+FTM") and "needs_ftm_delay" in self.quirks:
            yield from self._sleep(FTM_TRAIN_DELAY)

    def _send_hdlc(self, frame: bytes | None) -> Step:
        if frame is None:
            yield from self._close_hdlc()
            self.term.send_step_complete()
            return
        if not self.hdlc_tx_open and self._ecm_tx is None:
            # T.30 queues its phase change until the far carrier drops, but hands over the first
            # frame at once: the modem type for this frame may still be waiting behind it
            for later in self.term.requests:
                if isinstance(later, SendHdlc):
                    break
                if isinstance(later, SetTx) and later.hdlc:
                    self.tx_hdlc = (later.modem, later.bit_rate, bool(later.short_train))
                    break
        if self.tx_hdlc[0] != Modem.V21:
            yield from self._send_ecm_frame(frame)
            return
        if not self.hdlc_tx_open:
            yield from self._gap()
            yield from self._command_connect("AT+FTH=3")
            self.hdlc_tx_open = True
            self._last_dir = Direction.TX
        yield from self._write(dle_stuff(frame) + bytes([DLE, ETX]))
        self.stats["frames_tx"] += 1
        result = yield from self._data_result(FRAME_RESULT_WAIT)
        if result != "CONNECT":
            self.hdlc_tx_open = False  # OK after a final frame: the carrier is off
            if result != "OK":
                log.warning("class 1: frame %s answered %s", frame[:3].hex(), result)
        self.term.send_step_complete()

    def _send_ecm_frame(self, frame: bytes) -> Step:
        """An ECM frame at the image rate: framed here, sent as +FTM data (see hdlc.py)."""
        if self._ecm_tx is None:
            yield from self._gap()
            yield from self._command_connect(f"AT+FTM={modulation_code(*self.tx_hdlc)}")
            self._last_dir = Direction.TX
            self._ecm_tx = HdlcEncoder()
            self._ecm_tx.flags(max(1, self.tx_hdlc[1] // (8 * 5)))  # 200 ms of flags, as spandsp sends
        self._ecm_tx.frame(frame)
        data = self._ecm_tx.take()
        self.stats["frames_tx"] += 1
        self.stats["data_tx"] += len(data)
        yield from self._write(dle_stuff(data))
        self.term.send_step_complete()  # queued for the modem; flow control paces the rest

    def _close_hdlc(self) -> Step:
        """End a V.21 transmission left open after a non-final frame, or an ECM burst."""
        if self._ecm_tx is not None:
            encoder, self._ecm_tx = self._ecm_tx, None
            encoder.flags(3)
            yield from self._write(dle_stuff(encoder.take(flush=True)) + bytes([DLE, ETX]))
            yield from self._data_result(ECM_RESULT_WAIT)
        if self.hdlc_tx_open:
            self.hdlc_tx_open = False
            yield from self._write(bytes([DLE, ETX]))
            yield from self._data_result(FRAME_RESULT_WAIT)

    def _send_image_data(self) -> Step:
        while True:
            chunk = self.term.data_to_send(CHUNK)
            self.stats["data_tx"] += len(chunk)
            last = len(chunk) < CHUNK
            yield from self._write(dle_stuff(chunk) + (bytes([DLE, ETX]) if last else b""))
            if last:
                break
        yield from self._data_result(DATA_RESULT_WAIT)

    def _data_result(self, timeout: float) -> Generator[_Wait, object, str]:
        """The modem's answer that closes (or with CONNECT continues) a data phase."""
        deadline = self._now + timeout
        while True:
            ev = yield from self._event(deadline - self._now)
            if ev is None:
                self._end_data_phase()
                return "TIMEOUT"
            if isinstance(ev, DataResult):
                return ev.result

    # -- receiving --------------------------------------------------------------------------
    def _receive(self) -> Step:
        self._last_dir = Direction.RX
        rx = self.rx
        if self._v21_instead:
            rx = SetRx(Modem.V21, 300, False, True)
            self._v21_instead = False
        code = modulation_code(rx.modem, rx.bit_rate, rx.short_train)
        first = True
        while True:
            result: str | None
            if self._first_rx_connected:
                self._first_rx_connected = False
                result = "CONNECT"
            else:
                ecm = rx.hdlc and rx.modem != Modem.V21
                result = yield from self._receive_command(f"AT+FR{'H' if rx.hdlc and not ecm else 'M'}={code}")
            if result is None:
                return  # aborted: T.30 wants to transmit
            if result == "+FCERROR":
                self.stats["fcerror"] += 1
                if not rx.hdlc or rx.modem != Modem.V21:
                    if not first:
                        self.term.hdlc_status(Signal.CARRIER_DOWN)
                    self._v21_instead = True  # the sender is repeating a V.21 command
                return
            if result != "CONNECT":
                if not first:  # the carrier of this burst is gone
                    (self.term.hdlc_status if rx.hdlc else self.term.data_status)(Signal.CARRIER_DOWN)
                    return
                yield from self._sleep(NOTHING_HEARD_PAUSE)
                return
            if not rx.hdlc:
                yield from self._receive_data()
                return
            if rx.modem != Modem.V21:
                yield from self._receive_ecm()
                return
            if first:
                if rx.modem != Modem.V21:
                    self.term.hdlc_status(Signal.TRAINING_SUCCEEDED)
                self.term.hdlc_status(Signal.CARRIER_UP)
            first = False
            final = yield from self._receive_frame()
            if final and rx.modem == Modem.V21:
                self.term.hdlc_status(Signal.CARRIER_DOWN)
                return
            if self._has_transmit_request():
                self.term.hdlc_status(Signal.CARRIER_DOWN)
                return

    def _receive_command(self, cmd: str) -> Generator[_Wait, object, str | None]:
        """Run a receive command; abort it if T.30 wants to transmit meanwhile (returns None)."""
        tag = self._send(cmd, RX_COMMAND_TIMEOUT, _RX_RESULTS)
        while True:
            if self._has_transmit_request() or self.term.finished is not None:
                self.stats["aborts"] += 1
                try:
                    yield from self._write(ABORT)
                except ModemError:
                    pass
                ended = yield _Wait(command=tag, deadline=self._now + ABORT_WAIT)
                if (
                    not isinstance(ended, CommandEnded)
                    or ended.error is not None
                    or ended.done is None
                    or not ended.done.ok
                ):
                    return None
                if ended.done.result == "CONNECT":  # the carrier came just as we aborted: drain it
                    yield from self._data_result(ABORT_WAIT)
                return None
            got = yield _Wait(command=tag, wake=True)
            if isinstance(got, CommandEnded):
                break
        try:
            done = _outcome(got)
        except ModemError as e:
            if _gone(e):
                raise CallGone(f"modem gone ({e.result})") from None
            log.info("class 1: %s", e)
            return "TIMEOUT"
        return done.result

    def _receive_frame(self) -> Generator[_Wait, object, bool]:
        """One HDLC frame of an open +FRH; True when it was a good final frame."""
        frame = bytearray()
        ok = False  # set with the DataResult that ends the loop
        while True:
            ev = yield from self._event(FRAME_SILENCE)
            if ev is None:
                self._end_data_phase()
                return False
            if isinstance(ev, DataReceived):
                frame += ev.data
            elif isinstance(ev, DataResult):
                ok = ev.result == "OK"
                break
        if len(frame) < 3 + 2:  # address, control, FCF and the two FCS bytes
            return False
        body = bytes(frame[:-2])
        self.stats["frames_rx"] += 1
        if not ok:
            self.stats["frames_bad"] += 1
        self.term.hdlc_received(body, ok)
        return ok and bool(body[1] & 0x10)

    def _receive_ecm(self) -> Step:
        """One ECM burst received as +FRM data and deframed by spandsp's HDLC receiver."""
        self.term.ecm_rx_start()
        self.term.hdlc_status(Signal.TRAINING_SUCCEEDED)
        self.term.hdlc_status(Signal.CARRIER_UP)
        yield from self._pump_data(self.term.ecm_rx_data)
        self.term.hdlc_status(Signal.CARRIER_DOWN)

    def _receive_data(self) -> Step:
        """TCF or a non-ECM page: the bytes go to T.30 as they come."""
        self.term.data_status(Signal.TRAINING_SUCCEEDED)
        yield from self._pump_data(self.term.data_received)
        self.term.data_status(Signal.CARRIER_DOWN)

    def _pump_data(self, sink: Callable[[bytes], None]) -> Step:
        """Received data into ``sink`` until the modem closes the data phase (or goes quiet)."""
        while True:
            ev = yield from self._event(DATA_SILENCE)
            if ev is None:
                self._end_data_phase()
                return
            if isinstance(ev, DataReceived):
                self.stats["data_rx"] += len(ev.data)
                sink(ev.data)
            elif isinstance(ev, DataResult):
                return

    # -- after the call -----------------------------------------------------------------------
    def _hang_up(self, data_phase_open: bool) -> Step:
        try:
            if data_phase_open:
                yield from self._write(ABORT)
                yield from self._sleep(HANGUP_ABORT_WAIT)
                self._end_data_phase()
            yield from self._command("ATH0", 5.0, ("OK", "ERROR", "NO CARRIER"))
        except ModemError:
            pass


def _outcome(ended: CommandEnded) -> CommandDone:
    """What ModemPort.command gives: the CommandDone, or ModemError unless it was expected."""
    if ended.error is not None:
        raise ended.error
    done = ended.done
    assert done is not None
    if not done.ok:
        raise ModemError(done.cmd, done.result, done.lines)
    return done


def _gone(e: ModemError) -> bool:
    return "device gone" in e.result or "port closed" in e.result


__all__ = [
    "ABORT",
    "CHUNK",
    "TICK",
    "CallGone",
    "Class1FrontEnd",
    "Command",
    "CommandEnded",
    "Direction",
    "EndDataPhase",
    "FrontEndEvent",
    "SendCommand",
    "Stage",
    "TimePassed",
    "WriteData",
    "WriteEnded",
    "modulation_code",
]
