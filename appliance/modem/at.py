"""The AT command channel of a serial fax modem, sans-I/O (V.250 framing, T.31/T.32 data phases).

Theory of operation.  Bytes from the modem go in with ``receive(data, now)``; commands go in with
``send(cmd, timeout, now=now)``.  Out come bytes to write (``data_to_send()``), one deadline
(``get_timer()``/``handle_timer(now)``) and events (``next_event()``).  Nothing here touches a
file descriptor or a clock, so recorded dialogues replay byte by byte in tests.

Commands run one at a time in FIFO order (a deque served with ``popleft``): the next one is
written only when the previous has its final result or timed out.  Lines between a command and
its final result are its information lines; echo of the command is dropped.  RING and caller-ID
lines are unsolicited even while a command runs; any other line with no command running is
unsolicited too (Class 2 ``+FHNG:`` after a hang-up, a stray ``NO CARRIER``).

A ``CONNECT`` opens a data phase.  Towards the DTE (``+FRH``, ``+FRM``, ``+FDR``, ``ATD``) the
channel switches to raw mode: bytes come out as ``DataReceived`` with DLE escapes removed until
``<DLE><ETX>`` (``DataEnd``).  Towards the modem (``+FTH``, ``+FTM``, ``+FDT``, Class 1 ``ATA``)
the driver writes stuffed data with ``send_data``.  Either way the phase stays open until the
modem's next final result (``DataResult``; a ``CONNECT`` there keeps it open), and queued
commands wait for that, because writing a command mid-phase would abort the carrier.  That wait
is timed too: the first queued command gets its own timeout to see the phase end, else it times
out unsent, so a modem that never ends a phase cannot hold a command (and the line) for ever.

Numeric results (ATV0) are told from one-digit information text by their terminator: V.250
ends a numeric code with CR alone and text with CR LF.  While a query (``?``, ``ATI``) runs, a
digit line ending in CR is held until the next byte (or a 50 ms settle time) shows which it is;
for any other command it is a result at once, so the data after a numeric CONNECT is not read
as the LF of a text line.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from appliance.modem.dle import DLE, ETX, SUB, dle_stuff, dle_unstuff
from appliance.modem.fparams import parse_fclass, parse_fparams, parse_range_list
from appliance.modem.history import TrafficHistory, describe_chunk

__all__ = [
    "AtChannel",
    "ChannelClosed",
    "CommandDone",
    "CommandTimedOut",
    "DataEnd",
    "DataReceived",
    "DataResult",
    "DeviceGone",
    "DleCommand",
    "Event",
    "Garbage",
    "ModemError",
    "Unsolicited",
    "caller_id_item",
    "dle_stuff",
    "dle_unstuff",
    "parse_fclass",
    "parse_fparams",
    "parse_range_list",
]

MAX_LINE = 512
#: V.250 numeric result codes (ATV0); 2 is RING, handled as unsolicited.  "+F4" is T.31's +FCERROR.
NUMERIC_RESULTS = {
    "0": "OK",
    "1": "CONNECT",
    "2": "RING",
    "3": "NO CARRIER",
    "4": "ERROR",
    "5": "CONNECT",
    "6": "NO DIALTONE",
    "7": "BUSY",
    "8": "NO ANSWER",
    "+F4": "+FCERROR",
}
_FINAL_EXACT = {"OK", "ERROR", "NO CARRIER", "BUSY", "NO DIALTONE", "NO ANSWER", "+FCERROR"}
_FINAL_ALIASES = {"NO DIAL TONE": "NO DIALTONE"}
#: a caller-ID line between the rings ("NMBR = 5551234"): unsolicited here, read by the modem line
_CALLER_ID = re.compile(r"^\s*(NMBR|NAME|NDID|DDN_NMBR|DATE|TIME|MESG|CID)\s*=\s*(.*?)\s*$", re.IGNORECASE)
_TX_COMMANDS = re.compile(r"\+F(TH|TM|DT)\b|^ATA$", re.IGNORECASE)
_VERBOSE = re.compile(r"(?:^|[^&])V([01]?)")
_DIGIT_ANSWERS = re.compile(r"\?|^ATI", re.IGNORECASE)  # commands whose text may be "3" or "0"
_HOLD_SETTLE = 0.05  # seconds to wait for the LF that would make a digit line information text

Direction = Literal["rx", "tx"]


@dataclass(frozen=True)
class CommandDone:
    """A command's final result; ``ok`` says whether it was one the caller expected."""

    cmd: str
    result: str
    lines: list[str] = field(default_factory=list)
    detail: str = ""  # what follows CONNECT ("14400") or +CME ERROR
    ok: bool = True


@dataclass(frozen=True)
class CommandTimedOut:
    cmd: str
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Unsolicited:
    line: str


@dataclass(frozen=True)
class DataReceived:
    data: bytes


@dataclass(frozen=True)
class DataEnd:
    """<DLE><ETX> from the modem: the end of a received data block."""


@dataclass(frozen=True)
class DleCommand:
    """A <DLE>x pair other than the data escapes, e.g. <DLE>! or a Class 2.0 <DLE>? query."""

    code: int


@dataclass(frozen=True)
class DataResult:
    """The modem's final result that closes (or, for CONNECT, continues) a data phase."""

    result: str
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Garbage:
    """Bytes that made no line: noise, non-ASCII, or a line over the length limit."""

    data: bytes
    reason: str


@dataclass(frozen=True)
class DeviceGone:
    """The serial device vanished (EIO/ENXIO); ``pending`` commands will never finish."""

    reason: str
    pending: list[str] = field(default_factory=list)


Event = (
    CommandDone
    | CommandTimedOut
    | Unsolicited
    | DataReceived
    | DataEnd
    | DleCommand
    | DataResult
    | Garbage
    | DeviceGone
)


class ChannelClosed(RuntimeError):
    """Our bug: using a channel after DeviceGone."""


class ModemError(Exception):
    """A command failed: the modem answered something unexpected, timed out, or went away."""

    def __init__(self, cmd: str, result: str, lines: Iterable[str] = ()) -> None:
        self.cmd, self.result, self.lines = cmd, result, list(lines)
        super().__init__(f"{cmd}: {result}")


@dataclass
class _Command:
    cmd: str
    timeout: float
    expect: frozenset[str]
    connect: Direction
    deadline: float = 0.0
    lines: list[str] = field(default_factory=list)


def caller_id_item(line: str) -> tuple[str, str] | None:
    """("NMBR", "5551234") for a caller-ID line (key upper-cased, value as sent); else None."""
    m = _CALLER_ID.match(line)
    return (m.group(1).upper(), m.group(2)) if m else None


def final_result(text: str) -> tuple[str, str] | None:
    """("CONNECT", "14400") for "CONNECT 14400"; None when the line is not a final result."""
    upper = text.upper()
    if upper in _FINAL_EXACT:
        return upper, ""
    if upper in _FINAL_ALIASES:
        return _FINAL_ALIASES[upper], ""
    if upper == "CONNECT" or upper.startswith("CONNECT "):
        return "CONNECT", text[8:].strip()
    if upper.startswith("+CME ERROR"):
        n = text.partition(":")[2].strip()
        return f"+CME ERROR: {n}", n
    return None


class AtChannel:
    """One modem's command/response stream; see the module docstring for the rules."""

    def __init__(self, history_size: int = 200, max_line: int = MAX_LINE) -> None:
        self.history = TrafficHistory(history_size)
        self.numeric = False  # ATV0 in effect
        self.stats = {"garbage": 0, "overlong": 0, "echo": 0, "flow": 0, "unsolicited": 0}
        self._max_line = max_line
        self._queue: deque[_Command] = deque()
        self._active: _Command | None = None
        self._events: deque[Event] = deque()
        self._out = bytearray()
        self._buf = bytearray()
        self._overlong = False
        self._last_cr = False
        self._held: tuple[str, float] | None = None  # a digit line waiting for its terminator
        self._raw = False  # in a received data block
        self._dle = False  # the last raw byte was a DLE
        self._phase: Direction | None = None
        self._phase_lines: list[str] = []
        self._phase_wait: float | None = None  # when the first queued command gives up on the phase
        self._last_cmd = ""
        self._now = 0.0
        self.closed = False

    # -- commands and data towards the modem --------------------------------------------------

    def send(
        self, cmd: str, timeout: float, expect: Iterable[str] = ("OK",), connect: Direction | None = None, *, now: float
    ) -> None:
        """Queue ``cmd`` (without CR) at ``now``; ``expect`` lists the results that count as success."""
        if self.closed:
            raise ChannelClosed(f"{cmd}: the device is gone")
        self._now = now
        if connect is None:
            connect = "tx" if _TX_COMMANDS.search(cmd.strip()) else "rx"
        self._queue.append(_Command(cmd.strip(), timeout, frozenset(e.upper() for e in expect), connect))
        self._start_next()

    def send_data(self, data: bytes, now: float) -> None:
        """Raw bytes for an open data phase; the caller stuffs them (``dle_stuff``) and ends with DLE ETX."""
        if self.closed:
            raise ChannelClosed("data write: the device is gone")
        self._now = now
        self._out += data
        self.history.add(self._now, ">", describe_chunk(data))

    def end_data_phase(self, now: float) -> None:
        """Give up on a data phase whose final result never came, so queued commands can run."""
        self._now = now
        if self._phase is not None:
            self.history.add(self._now, "!", "data phase abandoned")
        self._phase, self._raw, self._dle = None, False, False
        self._phase_lines = []
        self._start_next()

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def busy(self) -> bool:
        return self._active is not None or bool(self._queue) or self._phase is not None

    @property
    def in_data_mode(self) -> bool:
        return self._raw

    def _start_next(self) -> None:
        if self._active is not None or not self._queue:
            self._phase_wait = None
            return
        if self._phase is not None:  # the head waits for the phase's end, within its timeout
            if self._phase_wait is None:
                self._phase_wait = self._now + self._queue[0].timeout
            return
        self._phase_wait = None
        cmd = self._queue.popleft()
        cmd.deadline = self._now + cmd.timeout
        self._active = cmd
        self._last_cmd = cmd.cmd.upper()
        self._track_verbose(cmd.cmd)
        self._out += cmd.cmd.encode("ascii", "replace") + b"\r"
        self.history.add(self._now, ">", cmd.cmd)

    def _track_verbose(self, cmd: str) -> None:
        upper = cmd.upper()
        if not upper.startswith("AT"):
            return
        basic = re.split(r"[+;]", upper[2:], maxsplit=1)[0]
        if basic.startswith("Z") or "&F" in basic:
            self.numeric = False  # reset and factory defaults are verbose
        for m in _VERBOSE.finditer(basic):
            self.numeric = m.group(1) in ("", "0")

    # -- timers --------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        times = [
            t
            for t in (
                self._active.deadline if self._active else None,
                self._phase_wait,
                self._held[1] if self._held else None,
            )
            if t is not None
        ]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self._held and now >= self._held[1]:
            self._flush_held(as_result=True)
        if self._active and now >= self._active.deadline:
            cmd, self._active = self._active, None
            self.history.add(now, "!", f"timeout after {cmd.timeout:g} s: {cmd.cmd}")
            self._events.append(CommandTimedOut(cmd.cmd, cmd.lines))
            self._start_next()
        if self._phase_wait is not None and now >= self._phase_wait:
            cmd = self._queue.popleft()
            self._phase_wait = None
            self.history.add(
                now, "!", f"timeout after {cmd.timeout:g} s: {cmd.cmd} (not sent: the data phase never ended)"
            )
            self._events.append(CommandTimedOut(cmd.cmd, []))
            self._start_next()

    # -- the device ----------------------------------------------------------------------------

    def device_gone(self, reason: str, now: float) -> None:
        """The adapter saw EIO/ENXIO/EOF: fail everything pending, once."""
        if self.closed:
            return
        self._now = now
        pending = ([self._active.cmd] if self._active else []) + [c.cmd for c in self._queue]
        self._active = None
        self._queue.clear()
        self._phase_wait = None
        self._phase, self._raw = None, False
        self.closed = True
        self.history.add(self._now, "!", f"device gone: {reason}")
        self._events.append(DeviceGone(reason, pending))

    # -- bytes from the modem ------------------------------------------------------------------

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def history_text(self) -> str:
        return self.history.text()

    def receive(self, data: bytes, now: float) -> None:
        self._now = now
        i, n = 0, len(data)
        while i < n and not self.closed:
            i = self._receive_raw(data, i) if self._raw else self._receive_lines(data, i)

    def _receive_raw(self, data: bytes, i: int) -> int:
        out = bytearray()
        n = len(data)
        if self._last_cr:  # the LF of "CONNECT<CR><LF>" is not data
            self._last_cr = False
            if data[i] == 0x0A:
                i += 1
        while i < n:
            if self._dle:
                b = data[i]
                i += 1
                self._dle = False
                if b == DLE:
                    out.append(DLE)
                elif b == SUB:
                    out += b"\x10\x10"
                elif b == ETX:
                    self._emit_data(out)
                    self._raw = False
                    self._last_cr = False
                    self.history.add(self._now, "<", "<DLE><ETX>")
                    self._events.append(DataEnd())
                    return i
                else:
                    self._emit_data(out)
                    out = bytearray()
                    self.history.add(self._now, "<", f"<DLE>{b:#04x}")
                    self._events.append(DleCommand(b))
                continue
            j = data.find(DLE, i)
            if j < 0:
                out += data[i:]
                i = n
            else:
                out += data[i:j]
                self._dle = True
                i = j + 1
        self._emit_data(out)
        return i

    def _emit_data(self, out: bytearray) -> None:
        if out:
            self.history.add(self._now, "<", describe_chunk(bytes(out)))
            self._events.append(DataReceived(bytes(out)))

    def _receive_lines(self, data: bytes, i: int) -> int:
        n = len(data)
        while i < n:
            b = data[i]
            i += 1
            if self._held is not None:
                if b == 0x0A:
                    self._flush_held(as_result=False)
                    self._last_cr = False
                    continue
                self._flush_held(as_result=True)
                if self._raw or self.closed:
                    return i - 1
            if b == 0x0A and self._last_cr:
                self._last_cr = False
                continue
            if b in (0x0D, 0x0A):
                self._last_cr = b == 0x0D
                line = bytes(self._buf)
                self._buf.clear()
                if self._overlong:
                    self._overlong = False
                    continue
                self._end_line(line, cr_only=b == 0x0D)
                if self._raw:
                    return i
                continue
            self._last_cr = False
            if b in (0x11, 0x13):
                self.stats["flow"] += 1  # XON/XOFF on a link whose driver passed them through
                continue
            if b == 0x00:
                continue
            if self._overlong:
                continue
            self._buf.append(b)
            if len(self._buf) > self._max_line:
                self.stats["overlong"] += 1
                self._report_garbage(bytes(self._buf[:64]), f"line over {self._max_line} bytes")
                self._buf.clear()
                self._overlong = True
        return i

    def _report_garbage(self, data: bytes, reason: str) -> None:
        self.stats["garbage"] += 1
        self.history.add(self._now, "<", f"garbage ({reason}): {data[:64]!r}")
        self._events.append(Garbage(data, reason))

    def _end_line(self, raw: bytes, cr_only: bool) -> None:
        raw = raw.strip(b" \t")
        if not raw:
            return
        if any(c < 0x20 or c > 0x7E for c in raw if c != 0x09):
            self._report_garbage(raw, "not printable ASCII")
            return
        text = raw.decode("ascii")
        if self.numeric and text.upper() in NUMERIC_RESULTS:
            if cr_only:
                self._held = (text, self._now + _HOLD_SETTLE)
                if self._active is None or not _DIGIT_ANSWERS.search(self._active.cmd):
                    self._last_cr = False  # V0: an LF after the CR is data, not a terminator
                    self._flush_held(as_result=True)  # only queries answer with a bare digit
                return
            # CR LF: V.250 information text, even if it looks like a result code
            self.history.add(self._now, "<", text)
            self._info(text)
            return
        self.history.add(self._now, "<", text)
        self._classify(text)

    def _flush_held(self, as_result: bool) -> None:
        assert self._held is not None
        text, _ = self._held
        self._held = None
        self.history.add(self._now, "<", text)
        if not as_result:
            self._info(text)
            return
        verbose = NUMERIC_RESULTS[text.upper()]
        if verbose == "RING":
            self._unsolicited("RING")
        else:
            self._final(verbose, "")

    def _classify(self, text: str) -> None:
        upper = text.upper()
        if upper.startswith("AT") and (
            (self._active and not self._active.lines and upper == self._active.cmd.upper()) or upper == self._last_cmd
        ):
            self.stats["echo"] += 1
            return
        if upper == "RING" or _CALLER_ID.match(text):
            self._unsolicited(text)
            return
        final = final_result(text)
        if final is not None:
            self._final(*final)
            return
        self._info(text)

    def _info(self, text: str) -> None:
        if self._active is not None:
            self._active.lines.append(text)
        elif self._phase is not None:
            self._phase_lines.append(text)
        else:
            self._unsolicited(text)

    def _unsolicited(self, text: str) -> None:
        self.stats["unsolicited"] += 1
        self._events.append(Unsolicited(text))

    def _final(self, result: str, detail: str) -> None:
        if self._active is not None:
            cmd, self._active = self._active, None
            self._events.append(CommandDone(cmd.cmd, result, cmd.lines, detail, result in cmd.expect))
            if result == "CONNECT":
                self._open_phase(cmd.connect)
            self._start_next()
        elif self._phase is not None:
            lines, self._phase_lines = self._phase_lines, []
            self._events.append(DataResult(result, lines))
            if result == "CONNECT":
                self._open_phase(self._phase)
            else:
                self._phase = None
                self._start_next()
        else:
            self._unsolicited(result if not detail else f"{result} {detail}")

    def _open_phase(self, direction: Direction) -> None:
        self._phase = direction
        self._phase_lines = []
        if direction == "rx":
            self._raw, self._dle = True, False  # _last_cr stays: a following LF is skipped
