"""The asyncio side of a modem: a non-blocking serial fd feeding an ``AtChannel``.

Shaped like Moonraker's utils/async_serial.py (``add_reader``, futures for writes), but writes
leave in FIFO order, and a vanished USB modem (EIO/ENXIO/EOF) is a ``DeviceGone`` event, not an
exception out of the event loop.  All protocol decisions stay in the channel."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

import serial

from appliance.modem.at import AtChannel, CommandDone, CommandTimedOut, DeviceGone, Event
from appliance.modem.at import ModemError as ModemError  # defined beside the channel (sans-I/O), raised here

Flow = Literal["rtscts", "xonxoff", "none"]
_GONE = (errno.EIO, errno.ENXIO, errno.ENODEV, errno.EBADF, errno.EPIPE)
_POLL = 0.005  # seconds; only for pyserial URLs without a file descriptor (loop://)


@dataclass
class _Waiter:
    """A command's future: ends with its CommandDone, or ModemError as ``command`` raises it."""

    cmd: str
    timeout: float
    fut: asyncio.Future[CommandDone]

    def settle(self, event: CommandDone | CommandTimedOut | DeviceGone) -> None:
        if self.fut.done():
            return
        if isinstance(event, CommandTimedOut):
            self.fut.set_exception(ModemError(self.cmd, f"timeout after {self.timeout:g} s", event.lines))
        elif isinstance(event, DeviceGone):
            self.fut.set_exception(ModemError(self.cmd, f"device gone ({event.reason})"))
        elif not event.ok:
            self.fut.set_exception(ModemError(self.cmd, event.result, event.lines))
        else:
            self.fut.set_result(event)


class ModemPort:
    """One open modem.  ``events`` carries everything that is not a command's answer."""

    def __init__(self, ser: serial.SerialBase, channel: AtChannel | None = None) -> None:
        self.ser: serial.SerialBase | None = ser
        self.channel = channel or AtChannel()
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._waiters: deque[_Waiter] = deque()
        self._writes: deque[tuple[asyncio.Future[None] | None, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._poll: asyncio.TimerHandle | None = None
        self._writing = False
        try:
            self._fd: int | None = ser.fileno()
        except io.UnsupportedOperation:  # loop:// has no fd: poll it
            self._fd = None
        if self._fd is not None:
            os.set_blocking(self._fd, False)
            self._loop.add_reader(self._fd, self._on_readable)
        else:
            self._poll = self._loop.call_later(_POLL, self._on_readable)

    @classmethod
    async def open(
        cls, path: str, baudrate: int = 115200, flow: Flow = "rtscts", channel: AtChannel | None = None
    ) -> ModemPort:
        if flow not in ("rtscts", "xonxoff", "none"):
            raise ValueError(f"flow control must be rtscts, xonxoff or none, not {flow!r}")
        ser = serial.serial_for_url(
            path,
            baudrate=baudrate,
            timeout=0,
            rtscts=flow == "rtscts",
            xonxoff=flow == "xonxoff",
            exclusive=True if "://" not in path else None,  # None: pyserial's default, as for a URL
        )
        return cls(ser, channel)

    is_open = property(lambda self: self.ser is not None)

    async def command(self, cmd: str, timeout: float = 3.0, expect: Iterable[str] = ("OK",)) -> CommandDone:
        """Run one AT command after those already queued; raise ModemError unless it ends in ``expect``."""
        return await self.submit(cmd, timeout, expect)

    def submit(self, cmd: str, timeout: float = 3.0, expect: Iterable[str] = ("OK",)) -> asyncio.Future[CommandDone]:
        """``command`` queued at once; the future ends as ``command`` would (for callback drivers)."""
        if self.ser is None:
            raise ModemError(cmd, "port closed")
        fut: asyncio.Future[CommandDone] = self._loop.create_future()
        self._waiters.append(_Waiter(cmd, timeout, fut))
        self.channel.send(cmd, timeout, expect=expect, now=self._loop.time())
        self._pump()
        return fut

    async def write_data(self, data: bytes) -> None:
        """Write raw (already DLE-stuffed) data; returns when the kernel has taken all of it."""
        await self.submit_data(data)

    def submit_data(self, data: bytes) -> asyncio.Future[None]:
        """``write_data`` started at once; the future ends when the kernel has taken the bytes."""
        if self.ser is None:
            raise ModemError("data write", "port closed")
        fut: asyncio.Future[None] = self._loop.create_future()
        self.channel.send_data(data, now=self._loop.time())
        self._writes.append((fut, self.channel.data_to_send()))
        self._flush_writes()
        return fut

    def history(self) -> str:  # for the failure dump
        return self.channel.history_text()

    def close(self) -> None:
        ser, self.ser = self.ser, None
        if ser is None:
            return
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            if self._writing:
                self._writing = False
                self._loop.remove_writer(self._fd)
        for handle in (self._timer, self._poll):
            if handle is not None:
                handle.cancel()
        with contextlib.suppress(OSError, serial.SerialException):  # the device may be gone
            ser.close()
        while self._writes:
            fut, _ = self._writes.popleft()
            if fut is not None and not fut.done():
                fut.set_exception(ModemError("data write", "port closed"))
        while self._waiters:
            self._waiters.popleft().settle(DeviceGone("port closed"))

    def _on_readable(self) -> None:
        try:
            if self._fd is not None:
                data = os.read(self._fd, 4096)
                if not data:
                    return self._gone("end of file")
            else:  # loop:// and friends: poll
                self._poll = None
                # every port class has in_waiting; the stubs give it to the subclasses only, not SerialBase
                data = self.ser.read(cast(serial.Serial, self.ser).in_waiting or 0) if self.ser else b""
                if self.ser is not None:
                    self._poll = self._loop.call_later(_POLL, self._on_readable)
        except BlockingIOError:
            return
        except (OSError, serial.SerialException) as exc:
            if not isinstance(exc, OSError) or exc.errno in _GONE:
                self._gone(str(exc))
            return
        if data:
            self.channel.receive(data, self._loop.time())
            self._pump()

    def _gone(self, reason: str) -> None:
        self.channel.device_gone(reason, self._loop.time())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.channel.handle_timer(self._loop.time())
        self._pump()

    def _pump(self) -> None:
        """Channel output to the fd, answers to their waiters, other events to the queue."""
        out = self.channel.data_to_send()
        if out and self.ser is not None:
            self._writes.append((None, out))
            self._flush_writes()
        gone = False
        while (event := self.channel.next_event()) is not None:
            if isinstance(event, (CommandDone, CommandTimedOut)):
                if self._waiters:
                    self._waiters.popleft().settle(event)
                continue
            gone = gone or isinstance(event, DeviceGone)
            self.events.put_nowait(event)
        if gone:
            self.close()
            return
        when = self.channel.get_timer()
        if self._timer is not None and (when is None or when != self._timer.when()):
            self._timer.cancel()
            self._timer = None
        if when is not None and self._timer is None and self.ser is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _flush_writes(self) -> None:
        """Write queued chunks oldest first; when the tty buffer is full, wait for the fd."""
        while self._writes and self.ser is not None:
            fut, data = self._writes[0]
            try:
                sent = os.write(self._fd, data) if self._fd is not None else (self.ser.write(data) or 0)
            except BlockingIOError:
                break
            except (OSError, serial.SerialException) as exc:
                return self._gone(str(exc))
            if sent < len(data):
                self._writes[0] = (fut, data[sent:])
                break
            self._writes.popleft()
            if fut is not None and not fut.done():
                fut.set_result(None)
        want = bool(self._writes) and self.ser is not None and self._fd is not None
        if want != self._writing and self._fd is not None:
            self._writing = want
            if want:
                self._loop.add_writer(self._fd, self._flush_writes)
            else:
                self._loop.remove_writer(self._fd)
