"""One modem line: open the device, probe it, initialise it, count rings, answer, record the call.

Theory of operation.  :meth:`ModemLine.run` loops for the life of the daemon:

    down --(device present)--> probing --(probe + init ok)--> idle --RING--> ringing
    ringing --(configured rings)--> receiving --(driver returns)--> (re-init) idle
    ringing --(no RING for RING_GAP s: the caller gave up)--> idle
    idle --(send() asked for a fax to go out)--> sending --(driver returns)--> (re-init) idle
    any --(DeviceGone / EIO / udev remove)--> down --(device back)--> probing
    any --(modem error: ERROR, timeout, no class)--> error --(backoff 1, 2, 4 ... 60 s)--> probing

(:class:`LineState`; ``MOVES`` is this picture as a table, and any other move is our bug:
``LocalProtocolError``.)

Between rings the modem reports caller ID (NMBR=, NAME=, NDID=/DDN_NMBR=); the line keeps them
for the call.  Before answering it asks ``begin`` for a spool record (so even a crash mid-page
leaves a trace, and a spool that cannot record refuses the call by not answering); the driver for
the selected class answers and receives; ``finish`` always gets the driver's result, also when
the modem was pulled out mid-page (the driver returns the pages it has: the contract in
``driver.py``) or the daemon is stopping.

Sending.  :meth:`ModemLine.send` hands the idle loop a :class:`ModemSendJob` (claimed at once, so
two senders never share a line) and waits for its :class:`ModemSendResult`.  The loop takes it
only while idle with no ring counted: a line that rings is busy (``LineBusy``), and a line that
sends is off hook, so it cannot ring; afterwards the modem is initialised again as after any
call.  :meth:`ModemManager.acquire` picks the line (by name, device, or "any" idle one).

Drivers are looked up by class and imported only when a call is answered (or sent), so a line
runs (and shows its state) even where a driver cannot be loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import importlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import serial

from appliance.calls.facts import CallFacts
from appliance.modem.at import DeviceGone, Unsolicited, caller_id_item
from appliance.modem.driver import (
    ModemCall,
    ModemCallResult,
    ModemSendJob,
    ModemSendResult,
    ReceiveDriver,
    SendDriver,
)
from appliance.modem.probe import DEFAULT_CLASS_PREFERENCE, ModemInfo, ProbeError, probe
from appliance.modem.quirks import Quirks, quirks_for
from appliance.modem.serial_port import Flow, ModemError, ModemPort
from appliance.sip.errors import LocalProtocolError

log = logging.getLogger("faxbridge.modem")


class LineState(enum.StrEnum):
    """What a line is doing (the dashboard shows the value); moves only as MOVES allows."""

    DOWN = "down"
    PROBING = "probing"
    IDLE = "idle"
    RINGING = "ringing"
    RECEIVING = "receiving"
    SENDING = "sending"  # dialling, then sending a fax
    ERROR = "error"


_S = LineState
#: the theory of operation above as a table: (from, to).  Staying in a state with a new reason
#: is always allowed; anything else is our bug (LocalProtocolError).
MOVES: frozenset[tuple[LineState, LineState]] = frozenset(
    {
        (_S.DOWN, _S.PROBING),
        (_S.PROBING, _S.IDLE),
        (_S.PROBING, _S.DOWN),
        (_S.PROBING, _S.ERROR),
        (_S.IDLE, _S.RINGING),
        (_S.IDLE, _S.DOWN),
        (_S.IDLE, _S.ERROR),
        (_S.RINGING, _S.RECEIVING),
        (_S.RINGING, _S.IDLE),
        (_S.RINGING, _S.DOWN),
        (_S.RINGING, _S.ERROR),
        (_S.RECEIVING, _S.IDLE),
        (_S.RECEIVING, _S.DOWN),
        (_S.RECEIVING, _S.ERROR),
        (_S.IDLE, _S.SENDING),
        (_S.SENDING, _S.IDLE),
        (_S.SENDING, _S.DOWN),
        (_S.SENDING, _S.ERROR),
        # back to probing after the backoff; to idle after a call it could not record (re-init ok)
        (_S.ERROR, _S.PROBING),
        (_S.ERROR, _S.IDLE),
        (_S.ERROR, _S.DOWN),
    }
)


def check_move(current: LineState, to: LineState) -> None:
    """Raise LocalProtocolError unless the line may go from ``current`` to ``to``."""
    if current is not to and (current, to) not in MOVES:
        raise LocalProtocolError(f"modem line: {current.value} -> {to.value}")


#: one line on the status page (``class`` is the fax class in use: a keyword, hence this form)
LineStatus = TypedDict(
    "LineStatus",
    {
        "device": str,
        "line": str,
        "state": str,
        "reason": str,
        "since": float,
        "modem": "dict[str, object] | None",
        "class": "str | None",
        "quirks": "str | None",
        "rings": int,
        "calls": int,
        "last_call": "dict[str, Any] | None",
    },
)

#: seconds without a RING after which the caller has given up (rings come every 5-6 s)
RING_GAP = 10.0
BACKOFF_MIN, BACKOFF_MAX = 1.0, 60.0
#: how often a missing device is looked for when no hot-plug event says it is back
PRESENCE_POLL = 1.0
#: a device still present after a removal is opened again after this long
REOPEN_AFTER = 30.0
#: an idle modem is asked "AT" this often: one that went silent is found before a call is missed
IDLE_CHECK = 300.0
#: at stop, a call in progress gets this long to return its pages after the port is closed
STOP_GRACE = 10.0
_WOKEN = object()

#: class -> (module, factory, keyword arguments); imported at answer time
DRIVERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "1": ("appliance.modem.class1", "Class1Receiver", {}),
    "1.0": ("appliance.modem.class1", "Class1Receiver", {}),
    "2": ("appliance.modem.class2", "Class2Receiver", {"variant": "2"}),
    "2.0": ("appliance.modem.class2", "Class2Receiver", {"variant": "2.0"}),
}


#: class -> the SendDriver (module, factory, keyword arguments); imported when a fax goes out
SENDERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "1": ("appliance.modem.class1", "Class1Transmitter", {}),
    "1.0": ("appliance.modem.class1", "Class1Transmitter", {}),
    "2": ("appliance.modem.class2_send", "Class2Transmitter", {"variant": "2"}),
    "2.0": ("appliance.modem.class2_send", "Class2Transmitter", {"variant": "2.0"}),
}


class LineBusy(Exception):
    """The line cannot send now (a call is in, it is down, or another fax is going out)."""


class DriverUnavailable(Exception):
    """No driver can be loaded for the selected class."""


class LineGone(Exception):
    """The device vanished (USB pulled, udev remove)."""


class CannotOpen(Exception):
    """The device is there but cannot be opened (permissions, in use, not a tty)."""


def _load(table: dict[str, tuple[str, str, dict[str, Any]]], fax_class: str, what: str) -> Any:
    """The ``what`` driver for ``fax_class`` from ``table``, imported now (the modules are optional)."""
    try:
        module, name, kwargs = table[fax_class]
    except KeyError:
        raise DriverUnavailable(f"no {what}driver for class {fax_class}") from None
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise DriverUnavailable(f"class {fax_class} {what}driver {module}:{name} cannot be loaded: {e}") from e
    return factory(**kwargs)


def load_driver(fax_class: str) -> ReceiveDriver:
    """The receive driver for ``fax_class``."""
    driver: ReceiveDriver = _load(DRIVERS, fax_class, "")
    return driver


def load_sender(fax_class: str) -> SendDriver:
    """The send driver for ``fax_class``."""
    sender: SendDriver = _load(SENDERS, fax_class, "send ")
    return sender


def short_name(device: str) -> str:
    """A safe name for logs and the ``modem:<name>`` line: the device's base name, plain characters."""
    base = os.path.basename(device.rstrip("/")) or "modem"
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[:64]


def clean_caller_field(value: str, limit: int = 64) -> str:
    """Caller ID comes from the phone line: printable ASCII only, bounded, no quotes."""
    value = value.strip().strip('"')
    return "".join(c for c in value if 0x20 <= ord(c) <= 0x7E)[:limit].strip()


@dataclass(frozen=True)
class LineSettings:
    class_preference: tuple[str, ...] = DEFAULT_CLASS_PREFERENCE
    rings: int = 2
    init: tuple[str, ...] = ()
    ident: str = ""
    caller_id: bool = True
    speed: int = 115200
    flow_control: Flow = "rtscts"
    ecm: bool = True
    max_call_duration: float = 900.0
    command_timeout: float = 3.0

    @classmethod
    def from_config(cls, modem: Any, fax: Any) -> LineSettings:
        """From ``[modem]`` and ``[fax]`` (ident falls back to fax.ident)."""
        return cls(
            class_preference=tuple(modem.class_preference),
            rings=modem.rings,
            init=tuple(modem.init),
            ident=modem.ident or fax.ident,
            caller_id=modem.caller_id,
            speed=modem.speed,
            flow_control=modem.flow_control,
            ecm=modem.ecm,
            max_call_duration=float(fax.max_call_duration),
        )


@dataclass
class CallerInfo:
    """What the line knows before it answers; handed to ``begin``."""

    device: str
    line: str
    caller_number: str = ""
    caller_name: str = ""
    called_number: str = ""
    rings: int = 0
    #: every caller-ID item as the modem sent it (cleaned), e.g. {"DATE": "1127", "NMBR": ...}
    raw: dict[str, str] = field(default_factory=dict)


BeginHook = Callable[[CallerInfo], Awaitable[tuple[Any, Path]]]
FinishHook = Callable[[Any, ModemCallResult], Awaitable[None]]
Opener = Callable[[str, int, Flow], Awaitable[ModemPort]]


async def _open_port(path: str, speed: int, flow: Flow) -> ModemPort:
    return await ModemPort.open(path, baudrate=speed, flow=flow)


class ModemLine:
    """One configured (or adopted) device.  ``run()`` until ``stop()``; ``status()`` any time."""

    def __init__(
        self,
        device: str,
        settings: LineSettings,
        begin: BeginHook,
        finish: FinishHook,
        *,
        drivers: Callable[[str], ReceiveDriver] = load_driver,
        opener: Opener = _open_port,
        senders: Callable[[str], SendDriver] = load_sender,
    ) -> None:
        self.device = device
        self.name = short_name(device)
        self.line = f"modem:{self.name}"
        self.settings = settings
        self._begin, self._finish = begin, finish
        self._drivers, self._opener, self._senders = drivers, opener, senders
        #: a fax waiting for the idle loop to send it, and where its result goes
        self._send_request: tuple[ModemSendJob, asyncio.Future[ModemSendResult]] | None = None
        self.sent = 0
        self.last_send: dict[str, Any] | None = None
        self.state = LineState.DOWN
        self.reason = "not started"
        self.since = time.time()
        self.port: ModemPort | None = None
        self.node: str | None = None  # the resolved /dev/ttyX, for udev remove events
        self.info: ModemInfo | None = None
        self.quirks: Quirks | None = None
        self.fax_class: str | None = None
        self.rings = 0
        self.calls = 0
        self.last_call: dict[str, Any] | None = None
        self._stopping = False
        self._removed = False
        self._added = False
        self._reached_idle = False  # since the last error: a working modem resets the backoff
        self._wake = asyncio.Event()  # hot-plug add/remove, stop
        self._finishing: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- what the manager and the dashboard use -------------------------------------------------
    def status(self) -> LineStatus:
        return {
            "device": self.device,
            "line": self.line,
            "state": self.state.value,
            "reason": self.reason,
            "since": self.since,
            "modem": self.info.as_dict() if self.info else None,
            "class": self.fax_class,
            "quirks": self.quirks.name if self.quirks else None,
            "rings": self.rings,
            "calls": self.calls,
            "last_call": self.last_call,
        }

    @property
    def in_call(self) -> bool:
        """Ringing, receiving or sending: settings and restarts wait until the call has ended."""
        return self.state in ("ringing", "receiving", "sending")

    @property
    def can_send(self) -> bool:
        """Idle, no ring counted and no other fax claimed it: :meth:`send` would take the job."""
        return self.state is LineState.IDLE and self._send_request is None and not self.rings

    async def send(self, job: ModemSendJob) -> ModemSendResult:
        """Dial and send ``job`` on this line; LineBusy if it cannot now.

        The line is claimed before the first await (``acquire`` then ``send`` is atomic on the
        event loop).  Cancelling the caller sets ``job.cancel``: the driver hangs up cleanly."""
        if not self.can_send:
            raise LineBusy(
                f"{self.line} is {self.state.value}" + (" (another fax is going out)" if self._send_request else "")
            )
        if job.cancel is None:
            job.cancel = asyncio.Event()
        fut: asyncio.Future[ModemSendResult] = asyncio.get_running_loop().create_future()
        self._send_request = (job, fut)
        self._wake.set()
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            job.cancel.set()
            raise
        finally:
            if self._send_request is not None and self._send_request[1] is fut:
                self._send_request = None

    def _refuse_send(self, why: str) -> None:
        """A claimed job the idle loop will not run (the line went down, or a call came in)."""
        request, self._send_request = self._send_request, None
        if request is not None and not request[1].done():
            request[1].set_exception(LineBusy(f"{self.line}: {why}"))

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name=f"modem-line {self.name}")
        return self._task

    async def stop(self) -> None:
        """End the line: a call in progress ends, its result still reaches ``finish``; the port closes.

        A call is ended the way the driver contract expects a lost device to end it (DeviceGone,
        then the driver returns the pages it has), not by cancelling the driver mid-page."""
        self._stopping = True
        self._wake.set()
        port, task = self.port, self._task
        if (
            self.state in (LineState.RECEIVING, LineState.SENDING)
            and port is not None
            and port.is_open
            and task is not None
        ):
            port.events.put_nowait(DeviceGone("appliance shutting down"))
            port.close()
            await asyncio.wait({task}, timeout=STOP_GRACE)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._finishing is not None:
            with contextlib.suppress(Exception):
                await self._finishing
        self._close()
        self._set(LineState.DOWN, "stopped")

    def device_added(self) -> None:
        """udev: the device (or one of its links) appeared."""
        self._added = True
        self._wake.set()

    def device_removed(self, reason: str = "device removed") -> None:
        """udev: the device went away.  A call in progress ends through DeviceGone, with its pages."""
        self._removed, self._added = True, False
        port = self.port
        if port is not None and port.is_open:
            port.events.put_nowait(DeviceGone(reason))
            port.close()  # commands waiting in the driver end with "device gone" too
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------------
    def _set(self, state: LineState, reason: str = "") -> None:
        check_move(self.state, state)
        if state not in (LineState.IDLE, LineState.SENDING) and self._send_request is not None:
            self._refuse_send(f"{state.value}{f' ({reason})' if reason else ''}")
        if (state, reason) != (self.state, self.reason):
            log.info("%s: %s%s", self.line, state, f" ({reason})" if reason else "")
            self.state, self.reason, self.since = state, reason, time.time()

    def _close(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            port.close()

    async def run(self) -> None:
        backoff = BACKOFF_MIN
        while not self._stopping:
            if not os.path.exists(self.device):  # noqa: ASYNC240 - a node under /dev: in memory, never blocks
                self._set(LineState.DOWN, f"device not present: {self.device}")
                await self._wait_for_device(seen_missing=True)
                continue
            try:
                await self._session()
                continue
            except LineGone as e:
                reason = str(e)
                gone = True
            except CannotOpen as e:  # "down" for the dashboard, but retried: access may be granted
                self._set(LineState.DOWN, str(e))
                log.warning("%s: %s; retrying in %g s", self.line, e, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except (ModemError, ProbeError, DriverUnavailable, OSError, serial.SerialException) as e:
                reason = str(e)
                gone = self._removed or (self.port is not None and not self.port.is_open)
            except Exception as e:  # our bug: the line stays, the daemon lives
                log.exception("%s: unexpected failure", self.line)
                reason = f"internal error: {e!r}"
                gone = False
            history = self.port.history() if self.port is not None else ""
            self._close()
            if gone:
                self._set(LineState.DOWN, reason)
                backoff = BACKOFF_MIN
                await self._wait_for_device(seen_missing=False)
                continue
            if self._reached_idle:  # it worked for a while: this is a new problem, retry soon
                backoff, self._reached_idle = BACKOFF_MIN, False
            self._set(LineState.ERROR, reason)
            log.warning("%s: %s; retrying in %g s%s", self.line, reason, backoff, f"\n{history}" if history else "")
            await self._sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, or less if woken (hot-plug, stop); True if woken."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
            return True
        except TimeoutError:
            return False

    async def _wait_for_device(self, seen_missing: bool) -> None:
        """Until the device is back: a udev add, or its path gone and present again.  A path that
        never went away is tried again after REOPEN_AFTER s (a removal we were told about wrongly)."""
        waited = 0.0
        while not self._stopping:
            present = os.path.exists(self.device)  # noqa: ASYNC240 - a node under /dev: in memory, never blocks
            if present and (seen_missing or self._added or waited >= REOPEN_AFTER):
                return
            seen_missing = seen_missing or not present
            await self._sleep(PRESENCE_POLL)
            waited += PRESENCE_POLL

    async def _session(self) -> None:
        self._removed = self._added = False
        self._set(LineState.PROBING)
        try:
            self.port = port = await self._opener(self.device, self.settings.speed, self.settings.flow_control)
        except (OSError, serial.SerialException, ValueError) as e:
            raise CannotOpen(f"cannot open {self.device}: {e}") from e
        self.node = os.path.realpath(self.device)  # noqa: ASYNC240 - links under /dev: in memory, never block
        self.info = info = await probe(port, timeout=self.settings.command_timeout)
        self.quirks = quirks_for(info)
        self.fax_class = info.pick_class(self.settings.class_preference)
        log.info(
            "%s: %s, classes %s: class %s, quirks %s",
            self.line,
            info.describe(),
            ",".join(info.classes),
            self.fax_class,
            self.quirks.name,
        )
        while not self._stopping:
            await self._init(port)
            await self._idle(port)
            if self._removed or not port.is_open:
                raise LineGone("device gone during the call")

    async def _init(self, port: ModemPort) -> None:
        """Reset and set up for answering: quirks, the configured init strings, caller ID, the class."""
        assert self.quirks is not None and self.fax_class is not None
        t = self.settings.command_timeout
        port.channel.end_data_phase(
            asyncio.get_running_loop().time()
        )  # a driver that left a data phase open must not block ATZ
        await port.command("ATZ", timeout=5.0)
        await port.command("ATE0V1Q0", timeout=t)
        await self._optional(port, "ATS0=0", "auto-answer off")  # we count the rings ourselves
        for cmd in self.quirks.init:
            await self._optional(port, cmd, f"quirk {self.quirks.name}")
        flow = self.quirks.flow_command(self.settings.flow_control)
        if flow:
            await self._optional(port, flow, "flow control")
        for cmd in self.settings.init:
            await port.command(cmd, timeout=t)  # asked for in the config: an ERROR is an error
        if self.settings.caller_id:
            await self._optional(port, self.quirks.caller_id, "caller ID")
        await port.command(f"AT+FCLASS={self.fax_class}", timeout=t)
        if flow and "reassert_flow_after_fclass" in self.quirks.flags:
            await self._optional(port, flow, "flow control after +FCLASS")

    async def _optional(self, port: ModemPort, cmd: str, why: str) -> None:
        try:
            await port.command(cmd, timeout=self.settings.command_timeout)
        except ModemError as e:
            if not port.is_open:
                raise
            log.info("%s: %s (%s) refused: %s", self.line, cmd, why, e.result)

    async def _next_event(self, port: ModemPort, timeout: float | None) -> Any:
        """The next unsolicited event; None on timeout, _WOKEN on a wake-up (hot-plug, stop)."""
        get = asyncio.ensure_future(port.events.get())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({get, wake}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        if self._wake.is_set():
            self._wake.clear()
            return _WOKEN
        return None

    async def _idle(self, port: ModemPort) -> None:
        """Wait for a call and answer it; returns after the call (or raises LineGone)."""
        self.rings = 0
        cid: dict[str, str] = {}
        self._set(LineState.IDLE)
        self._reached_idle = True
        while not self._stopping:
            if self._removed:
                raise LineGone("device removed")
            ringing = bool(self.rings or cid)
            ev = await self._next_event(port, RING_GAP if ringing else IDLE_CHECK)
            if ev is _WOKEN:
                if self._send_request is not None:
                    if ringing:  # a call is coming in: it wins, the fax waits for its retry
                        self._refuse_send("a call is coming in")
                        continue
                    await self._send(port)
                    return
                continue
            if ev is None:
                if ringing:
                    log.info("%s: caller gave up after %d ring(s)", self.line, self.rings)
                    self.rings, cid = 0, {}
                    self._set(LineState.IDLE)
                else:  # a modem that stopped answering raises ModemError: re-init with backoff
                    await port.command("AT", timeout=self.settings.command_timeout)
                continue
            if isinstance(ev, DeviceGone):
                raise LineGone(f"device gone: {ev.reason}")
            if not isinstance(ev, Unsolicited):
                log.debug("%s: idle: %r", self.line, ev)
                continue
            text = ev.line.strip()
            if item := caller_id_item(text):
                cid[item[0]] = clean_caller_field(item[1])
            elif text.upper() == "RING" or text.upper().startswith("RING "):
                self.rings += 1
                self._set(LineState.RINGING, f"{self.rings} of {self.settings.rings} rings")
                if self.rings >= self.settings.rings:
                    await self._answer(port, cid)
                    return
            else:
                log.debug("%s: idle: unsolicited %r", self.line, text)

    async def _answer(self, port: ModemPort, cid: dict[str, str]) -> None:
        assert self.fax_class is not None
        caller = CallerInfo(
            self.device,
            self.line,
            caller_number=cid.get("NMBR", ""),
            caller_name=cid.get("NAME", ""),
            called_number=cid.get("NDID") or cid.get("DDN_NMBR", ""),
            rings=self.rings,
            raw=dict(cid),
        )
        driver = self._drivers(self.fax_class)  # DriverUnavailable: not answered, error + retry
        try:
            fax_id, tiff_path = await self._begin(caller)
        except Exception as e:  # noqa: BLE001 - logged: the spool cannot record it, refuse by not answering
            log.error(
                "%s: not answering %s: the call cannot be recorded: %s", self.line, caller.caller_number or "a call", e
            )
            self._set(LineState.ERROR, f"call not answered: cannot record it: {e}")
            await self._sleep(RING_GAP * 3)  # let the caller give up before the re-init
            return
        call = ModemCall(
            device=self.device,
            line=self.line,
            tiff_path=Path(tiff_path),
            ident=self.settings.ident,
            ecm=self.settings.ecm,
            caller_number=caller.caller_number,
            caller_name=caller.caller_name,
            called_number=caller.called_number,
            max_call_duration=self.settings.max_call_duration,
            quirks=self.quirks.flags if self.quirks else frozenset(),
            answer=self.quirks.answer_command if self.quirks else "ATA",
        )
        self._set(LineState.RECEIVING, f"fax {fax_id} from {caller.caller_number or 'unknown'}")
        self.calls += 1
        started = time.time()
        result: ModemCallResult | None = None
        try:
            result = await asyncio.wait_for(driver.receive(port, call), self.settings.max_call_duration + 60)
        except TimeoutError:
            result = self._failed(port, "the driver did not return within the call limit")
        except asyncio.CancelledError:
            result = self._failed(port, "appliance shutting down")
            raise
        except Exception as e:  # the contract says drivers never raise; if one does, keep the pages
            log.exception("%s: driver failed", self.line)
            result = self._failed(port, f"driver error: {e!r}")
        finally:
            assert result is not None
            self.last_call = {
                "fax": fax_id,
                "complete": result.complete,
                "started": started,
                "pages": result.facts.pages,
                "result_text": result.facts.result_text,
            }
            self._finishing = asyncio.ensure_future(self._finish_call(fax_id, result))
            await asyncio.shield(self._finishing)

    async def _send(self, port: ModemPort) -> None:
        """Run the claimed send job; its result goes to the waiting :meth:`send` whatever happens."""
        assert self._send_request is not None and self.fax_class is not None
        job, fut = self._send_request
        try:
            driver = self._senders(self.fax_class)
        except DriverUnavailable as e:
            self._refuse_send(str(e))
            raise
        digits = "".join(c for c in job.dial if c.isdigit())
        self._set(LineState.SENDING, f"dialling {digits}")
        connected = job.on_connected

        def on_connected() -> None:
            self._set(LineState.SENDING, f"sending to {digits}")
            connected()

        job.on_connected = on_connected
        if self.quirks is not None:
            job.quirks = job.quirks | self.quirks.flags
        self.sent += 1
        started = time.time()
        result: ModemSendResult | None = None
        try:
            result = await asyncio.wait_for(driver.send(port, job), job.max_call_duration + 120)
        except TimeoutError:
            result = ModemSendResult(
                reason="the driver did not return within the call limit", modem_history=port.history()
            )
        except asyncio.CancelledError:
            result = ModemSendResult(reason="appliance shutting down", cancelled=True, modem_history=port.history())
            raise
        except Exception as e:  # the contract says drivers never raise; if one does, report it
            log.exception("%s: send driver failed", self.line)
            result = ModemSendResult(reason=f"driver error: {e!r}", modem_history=port.history())
        finally:
            assert result is not None
            result.modem_class = result.modem_class or self.fax_class
            self.last_send = {
                "to": digits,
                "started": started,
                "complete": result.complete,
                "pages": result.pages_sent,
                "result_text": result.reason,
            }
            self._send_request = None
            if not fut.done():
                fut.set_result(result)

    @staticmethod
    def _failed(port: ModemPort, why: str) -> ModemCallResult:
        return ModemCallResult(False, CallFacts(result_text=why, hangup_reason=why, modem_history=port.history()))

    async def _finish_call(self, fax_id: Any, result: ModemCallResult) -> None:
        try:
            await self._finish(fax_id, result)
        except Exception:  # the record stays "receiving": spool recovery finishes it at restart
            log.exception("%s: finishing fax %s failed", self.line, fax_id)
