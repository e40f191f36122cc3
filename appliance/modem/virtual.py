"""Two emulated Class 1 fax modems on one virtual phone line, each behind a pseudo-terminal.

Theory of operation.  Each :class:`VirtualPort` owns a pty pair and a :class:`T31Modem`.  The
master side belongs to us; the slave side is the "serial port" a DTE (efax, HylaFAX's faxgetty,
our own driver) opens through a stable symlink.  We do not keep the slave open ourselves, so a DTE
that closes its fd shows up as POLLHUP/EIO on the master: that is on-hook.

- DTE -> modem: bytes are read from the master only while the modem asserts CTS, in small chunks,
  re-checking CTS after each; otherwise they stay in the pty buffer and the DTE is held back
  (spandsp 0.0.6 has no other flow control to offer).
- modem -> DTE: what ``at_tx`` produced is written to the master (non-blocking, queued).
- the line: ATD on one port rings the other (``RING``, with caller ID if the DTE said
  AT+VCID=1), repeated every 5 s until ATA, the caller hanging up, or ``ring_timeout`` (the caller
  then gets NO ANSWER).  ATA answers: the answerer gets ANSWERED, the caller CONNECTED, and audio
  flows both ways every 20 ms on a schedule computed from the start time (no drift; a loop stalled
  for more than 5 periods skips ahead), or as fast as possible with ``realtime=False``.
- hang-up: ATH/on-hook or the DTE closing its fd on either side ends the call; the other side
  hears NO CARRIER ``hangup_linger`` (5 s) later, the audio running meanwhile, so the DCN the
  leaver sent last still arrives (without it, efax receiving ended with rc 3: its +FRH for the
  DCN got NO CARRIER).  ``hangup_after_page=N`` drops the call for both once N pages went through,
  counted from the T.30 frames tapped off the line in C (post-page command, then MCF from the
  other side: see ``fb_line_step`` in ``appliance/spandsp/line.c``).

The line has a one-way latency (``delay_ms``, default 100 ms): efax answers TCF with CFR the
instant carrier drops, and with a zero-delay line that CFR starts before the sender's DTE has
been told its TCF went out, so the sender's +FRS=1 swallows it (seen in the first efax run).

Faults: ``noise_db`` (white noise at that level in dBm0 on both directions), ``drop_audio``
(probability of zeroing each 20 ms block).  The ptys live as long as the line: nothing is closed
right after a fax (fax.md: closing the pty right after phase E made efax fail with EIO).

Class 2.0: a port whose DTE sends ``AT+FCLASS=2.0`` (or ``=2``) switches to
:class:`~appliance.modem.class2_emulator.Class2Modem` (spandsp's T.30 behind a Class 2.0 command
set); ``AT+FCLASS=0/1/1.0``, ``ATZ`` or ``AT&F`` switch it back (:meth:`VirtualPort.feed`).
``AT+FCLASS=?`` on a T.31 port therefore lists 2 and 2.0 too.  ``class2="A"``/``"B"`` makes that
port Class 2 only.  During a Class 2 call the line carries the emulator's fax terminal instead
of that port's T.31 modem (``fb_line_set_fax_end``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import pty
import re
import select
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.modem.class2_emulator import Class2Modem
from appliance.spandsp.t31 import CallEvent, Control, ModemLine, T31Modem

log = logging.getLogger("faxbridge.modem.virtual")

PTIME = 0.020
SAMPLES = 160
RING_INTERVAL = 5.0
MAX_CATCH_UP = 5
#: bytes handed to t31_at_rx at once; CTS is re-checked between chunks
CHUNK = 64


@dataclass
class LineOptions:
    noise_db: float | None = None
    drop_audio: float = 0.0
    hangup_after_page: int | None = None
    #: seconds of line time between that page's MCF and the drop (0: the MCF itself is cut, so
    #: the sender never hears it; a few seconds: the drop comes during the next page)
    hangup_delay: float = 0.0
    ring_timeout: float = 60.0
    #: seconds the line stays up after one side hangs up before the other hears NO CARRIER: the
    #: last frame (DCN) is still on its way, and fax.md's efax run failed when the pty went at once
    hangup_linger: float = 5.0
    #: one-way latency of the line; DTEs that reply the instant carrier drops need some (efax)
    delay_ms: float = 100.0
    realtime: bool = True
    seed: int = 1
    #: "A" or "B": that port is a Class 2/2.0 modem only (otherwise AT+FCLASS=2.0 switches to it)
    class2: str | None = None
    #: the number called is engaged: every ATD hears the busy tone (the modem says BUSY)
    busy: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_audio <= 1.0:
            raise ValueError("drop_audio is a probability between 0 and 1")
        if self.hangup_after_page is not None and self.hangup_after_page < 1:
            raise ValueError("hangup_after_page counts pages from 1")
        if self.noise_db is not None and not -100.0 <= self.noise_db <= 3.0:
            raise ValueError("noise_db is a level in dBm0 between -100 and +3")
        if not 0.0 <= self.hangup_linger <= 60.0:
            raise ValueError("hangup_linger is between 0 and 60 s")
        if not 0.0 <= self.delay_ms <= 1000.0:
            raise ValueError("delay_ms is between 0 and 1000")
        if self.class2 not in (None, "A", "B"):
            raise ValueError("class2 names a port: A or B")


@dataclass
class CallRecord:
    """What happened on the line, for tests and logs."""

    caller: str
    callee: str
    dialled: str
    rings: int = 0
    answered: bool = False
    pages: int = 0
    ended_by: str = ""
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


class VirtualPort:
    """One end: a pty whose slave a DTE opens, and the modem behind it (T.31, or the Class 2 emulator)."""

    def __init__(self, name: str, link: str | None, number: str, class2_only: bool = False) -> None:
        self.name = name
        self.number = number
        self.t31 = T31Modem(name=name)
        # spandsp 0.0.6 hides at_state_t except in at_tx: make the modem speak once, unseen
        self.t31.at_rx(b"AT\r")
        self.t31.take_output()
        self.t31.events.clear()
        self.class2 = Class2Modem(name=f"{name}-class2", t31=self.t31, forced=class2_only)
        #: the modem the DTE talks to now: the T.31 one, or the Class 2 emulator
        self.modem: T31Modem | Class2Modem = self.class2 if class2_only else self.t31
        self._dte_line = bytearray()  # the command line being typed to the T.31 modem
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.slave_path = os.ttyname(slave)
        os.chmod(self.slave_path, 0o666)  # HylaFAX's faxgetty runs as uucp
        os.close(slave)  # not kept open: a DTE closing its fd must show as HUP on the master
        os.set_blocking(self.master, False)
        self.link = link
        if link:
            if os.path.islink(link):  # a stale link from an earlier run
                os.unlink(link)
            elif os.path.exists(link):
                os.close(self.master)
                self.class2.close()
                self.t31.close()
                raise FileExistsError(f"{link} exists and is not a symlink: not replacing it")
            os.symlink(self.slave_path, link)
        self.present = False  # a DTE has the slave open
        self._out = bytearray()
        self.bytes_from_dte = 0
        self.bytes_to_dte = 0

    @property
    def path(self) -> str:
        return self.link or self.slave_path

    def hung_up(self) -> bool:
        """True if no DTE has the slave open (the master reports HUP)."""
        p = select.poll()
        p.register(self.master, select.POLLIN)
        return any(ev & select.POLLHUP for _, ev in p.poll(0))

    def read_dte(self) -> bytes | None:
        """Up to CHUNK bytes from the DTE; b"" if none waiting; None if the DTE has gone."""
        try:
            data = os.read(self.master, CHUNK)
        except BlockingIOError:
            return b""
        except OSError as e:
            if e.errno == errno.EIO:
                return None
            raise
        return data if data else None

    def feed(self, data: bytes) -> None:
        """DTE bytes to the active modem, one command line at a time, switching class where asked."""
        while data:
            cut = data.find(b"\r") + 1 or len(data)
            seg, data = data[:cut], data[cut:]
            if self.modem is self.class2:
                self.class2.at_rx(seg)
                if self.class2.handoff is not None:  # +FCLASS=1, ATZ...: T.31 executes it
                    handoff, self.class2.handoff = self.class2.handoff, None
                    self._out += self.class2.take_output()
                    self.modem = self.t31
                    self.t31.at_rx(handoff.encode("ascii", "replace") + b"\r")
                continue
            self._dte_line += seg
            line: str | None = None
            if seg.endswith(b"\r"):
                line = self._dte_line[:-1].decode("ascii", "replace").strip().upper()
                self._dte_line.clear()
            elif len(self._dte_line) > 256:  # data, not a command line
                del self._dte_line[:-64]
            if line is not None and re.fullmatch(r"AT.*\+FCLASS=(2|2\.0)", line):
                self.queue_output()  # what the T.31 modem said before this line stays
                self.t31.at_rx(seg)
                answer = self.t31.take_output()
                if not answer.endswith(b"ERROR\r\n"):  # not in command mode: it was data
                    self._out += answer
                    continue
                self.modem = self.class2
                self.class2.echo = self._t31_echo
                self.class2.vcid = self._t31_vcid  # caller ID is the modem's, not the class's
                self.class2.at_rx(seg)  # it echoes the line if the T.31 modem would have
                continue
            self.t31.at_rx(seg)
            if line is not None:
                self._track_echo(line)
                if line.startswith("AT") and line.endswith("+FCLASS=?"):  # T.31 knows only 0,1,1.0
                    out = self.t31.take_output().replace(b"\r\n0,1,1.0\r\n", b"\r\n0,1,1.0,2,2.0\r\n")
                    self.t31.to_dte.appendleft(out)

    _t31_echo = True
    _t31_vcid = False

    def _track_echo(self, line: str) -> None:
        """Echo and caller ID as the T.31 modem has them, for the Class 2 emulator to start with."""
        basic = re.split(r"[+;]", line[2:], maxsplit=1)[0] if line.startswith("AT") else ""
        if "Z" in basic or "&F" in basic:
            self._t31_echo = True
            self._t31_vcid = False
        vcid = re.search(r"\+VCID=([01])", line)
        if vcid:
            self._t31_vcid = vcid.group(1) == "1"
        m = re.findall(r"E([01]?)", basic)
        if m:
            self._t31_echo = m[-1] == "1"

    def reset_modem(self) -> None:
        """The DTE closed the port: the next one finds a modem in its power-on state."""
        self.class2.power_on()
        self.t31.call_event(CallEvent.HANGUP)
        self.t31.at_rx(b"ATZ\r")
        self.t31.take_output()
        self.t31.events.clear()
        self._dte_line.clear()
        self._t31_echo = True
        self._t31_vcid = False
        self.modem = self.class2 if self.class2.forced else self.t31

    def queue_output(self) -> None:
        out = self.modem.take_output()
        if out:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s -> DTE %r", self.name, out[:80])
            self._out += out

    def flush(self) -> bool:
        """Write what we can; True if bytes remain queued."""
        if not self._out:
            return False
        if not self.present:
            self._out.clear()  # nobody to hear it; a DTE opening later must not read stale lines
            return False
        try:
            n = os.write(self.master, self._out)
        except BlockingIOError:
            return True
        except OSError:
            self._out.clear()
            return False
        self.bytes_to_dte += n
        del self._out[:n]
        return bool(self._out)

    def discard_pending(self) -> None:
        self._out.clear()
        try:
            termios.tcflush(self.master, termios.TCIOFLUSH)
        except termios.error:
            pass

    def close(self) -> None:
        if self.link and os.path.islink(self.link) and os.readlink(self.link) == self.slave_path:
            os.unlink(self.link)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        self.class2.close()
        self.t31.close()


class VirtualLine:
    """Ports A and B on one line.  Use :meth:`run` inside an event loop, or :meth:`start_thread`
    to run it in its own thread (tests with blocking DTE programs)."""

    def __init__(
        self,
        link_a: str | None = None,
        link_b: str | None = None,
        *,
        number_a: str = "5550100",
        number_b: str = "5551000",
        options: LineOptions | None = None,
    ) -> None:
        self.options = options or LineOptions()
        self.a = VirtualPort("A", link_a, number_a, class2_only=self.options.class2 == "A")
        try:
            self.b = VirtualPort("B", link_b, number_b, class2_only=self.options.class2 == "B")
        except BaseException:
            self.a.close()
            raise
        self.calls: list[CallRecord] = []
        self.call: CallRecord | None = None
        self._ringing: tuple[VirtualPort, VirtualPort] | None = None  # (caller, callee)
        self._next_ring = 0.0
        self._connected: tuple[VirtualPort, VirtualPort] | None = None
        self._media: ModemLine | None = None
        self._leaving: tuple[VirtualPort, float, str] | None = None  # (who stays, when, why)
        self._fax_ends: dict[str, object] = {}  # port name -> the Class 2 terminal the line carries
        self._drop_in: float | None = None  # line time left before a hangup_after_page drop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._reading: set[int] = set()
        self._writing: set[int] = set()
        self._thread: threading.Thread | None = None
        self._ticks = 0
        self._start = 0.0
        self.changed = threading.Condition()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def ports(self) -> tuple[VirtualPort, VirtualPort]:
        return (self.a, self.b)

    def other(self, port: VirtualPort) -> VirtualPort:
        return self.b if port is self.a else self.a

    async def run(self) -> None:
        """Serve both ports until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._start, self._ticks = self._loop.time(), 0
        tick = asyncio.ensure_future(self._tick_loop())
        try:
            await self._stop.wait()
        finally:
            tick.cancel()
            try:
                await tick
            except asyncio.CancelledError:
                pass
            for port in self.ports:
                self._unwatch(port)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._media is not None:
            self._media.close()
            self._media = None
        for port in self.ports:
            port.close()

    def start_thread(self) -> VirtualLine:
        ready = threading.Event()

        def main() -> None:
            async def go() -> None:
                run = asyncio.ensure_future(self.run())
                await asyncio.sleep(0)
                ready.set()
                await run

            asyncio.run(go())

        self._thread = threading.Thread(target=main, name="virtual-line", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def __enter__(self) -> VirtualLine:
        return self.start_thread()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_for(self, predicate: Callable[[VirtualLine], object], timeout: float) -> bool:
        """Block (another thread) until ``predicate(self)`` is true or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.1))
        return True

    # -- the schedule ------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        assert self._loop is not None
        while True:
            self._service_ports()
            self._ring_timer()
            self._linger_timer()
            if self._connected is not None and self._media is not None:
                self._media.step(SAMPLES)
                self._after_media()
            if not self.options.realtime and self._connected is not None:
                await asyncio.sleep(0)
                continue
            self._ticks += 1
            due = self._start + self._ticks * PTIME
            now = self._loop.time()
            if now - due > MAX_CATCH_UP * PTIME:  # stalled: skip ahead, do not burst
                self._ticks = int((now - self._start) / PTIME)
                due = self._start + self._ticks * PTIME
            await asyncio.sleep(max(0.0, due - now))

    def _service_ports(self) -> None:
        for port in self.ports:
            if not port.present:
                if not port.hung_up():
                    port.present = True
                    log.info("%s: DTE opened %s", port.name, port.path)
                    self._watch(port)
            elif port.hung_up():
                self._dte_closed(port)
            self._pump(port)

    def _watch(self, port: VirtualPort) -> None:
        assert self._loop is not None
        if port.modem.cts and port.present and port.master not in self._reading:
            self._loop.add_reader(port.master, self._readable, port)
            self._reading.add(port.master)
        elif not (port.modem.cts and port.present) and port.master in self._reading:
            self._loop.remove_reader(port.master)
            self._reading.discard(port.master)

    def _unwatch(self, port: VirtualPort) -> None:
        if self._loop is None or port.master < 0:
            return
        if port.master in self._reading:
            self._loop.remove_reader(port.master)
            self._reading.discard(port.master)
        if port.master in self._writing:
            self._loop.remove_writer(port.master)
            self._writing.discard(port.master)

    def _readable(self, port: VirtualPort) -> None:
        while port.modem.cts:
            data = port.read_dte()
            if data is None:
                self._dte_closed(port)
                return
            if not data:
                break
            port.bytes_from_dte += len(data)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s <- DTE %r", port.name, data[:80])
            port.feed(data)
            self._pump(port)
        self._watch(port)

    def _writable(self, port: VirtualPort) -> None:
        if not port.flush() and port.master in self._writing:
            assert self._loop is not None
            self._loop.remove_writer(port.master)
            self._writing.discard(port.master)

    def _pump(self, port: VirtualPort) -> None:
        """After any call into a modem: its output to the DTE, then its requests to the line."""
        port.queue_output()
        if port.flush() and port.master not in self._writing and self._loop is not None:
            self._loop.add_writer(port.master, self._writable, port)
            self._writing.add(port.master)
        while (ev := port.modem.next_event()) is not None:
            self._control(port, ev.op, ev.number)
        self._carry_fax_end(port)
        if self._loop is not None and port.present:
            self._watch(port)

    def _carry_fax_end(self, port: VirtualPort) -> None:
        """A Class 2 emulator that started its fax terminal mid-call (a sender, after its last
        page came from the DTE): the line carries that terminal from now on."""
        if self._media is None or self._connected is None or port.modem is not port.class2:
            return
        fax = port.class2.fax_state
        if fax is not None and self._fax_ends.get(port.name) != fax:
            self._media.set_fax_end(0 if port is self.a else 1, fax)
            self._fax_ends[port.name] = fax

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    # -- the call ----------------------------------------------------------------------------
    def _control(self, port: VirtualPort, op: Control, number: str | None) -> None:
        if op is Control.CALL:
            self._dial(port, number or "")
        elif op is Control.ANSWER:
            self._answer(port)
        elif op in (Control.HANGUP, Control.ONHOOK):
            self._hangup(port, f"{port.name} {op.name.lower()}")

    def _event(self, port: VirtualPort, event: CallEvent) -> None:
        port.modem.call_event(event)
        self._pump(port)

    def _dial(self, caller: VirtualPort, dialled: str) -> None:
        callee = self.other(caller)
        if self._ringing is not None or self._connected is not None or self.options.busy:
            log.info("%s dials %s: busy", caller.name, dialled)
            self._event(caller, CallEvent.BUSY)
            return
        log.info("%s dials %s: ringing %s", caller.name, dialled, callee.name)
        self.call = CallRecord(caller.name, callee.name, dialled)
        self.calls.append(self.call)
        callee.modem.reset_call_info()
        callee.modem.set_call_info("NMBR", caller.number)
        callee.modem.set_call_info("NAME", f"Virtual {caller.name}")
        callee.modem.set_call_info("NDID", dialled)
        self._ringing = (caller, callee)
        self._ring()
        self._notify()

    def _ring(self) -> None:
        assert self._ringing is not None and self.call is not None
        now = time.monotonic()
        self.call.rings += 1
        self._next_ring = now + RING_INTERVAL
        self._event(self._ringing[1], CallEvent.ALERTING)

    def _ring_timer(self) -> None:
        if self._ringing is None or self.call is None:
            return
        now = time.monotonic()
        if now - self.call.started > self.options.ring_timeout:
            caller, _ = self._ringing
            self._ringing = None
            self._end("no answer")
            self._event(caller, CallEvent.NO_ANSWER)
        elif now >= self._next_ring:
            self._ring()

    def _answer(self, port: VirtualPort) -> None:
        if self._ringing is None or self._ringing[1] is not port:
            log.info("%s: ATA with no call ringing", port.name)
            self._event(port, CallEvent.HANGUP)
            return
        caller, callee = self._ringing
        self._ringing = None
        assert self.call is not None
        self.call.answered = True
        self._connected = (caller, callee)
        o = self.options
        self._media = ModemLine(
            self.a.t31, self.b.t31, noise_dbm0=o.noise_db, drop=o.drop_audio, seed=o.seed, delay_ms=o.delay_ms
        )
        self._fax_ends = {}
        for end, p in enumerate(self.ports):
            if p.modem is p.class2 and p.class2.fax_state is not None:
                self._media.set_fax_end(end, p.class2.fax_state)
                self._fax_ends[p.name] = p.class2.fax_state
        log.info("%s answers: connected", callee.name)
        self._event(callee, CallEvent.ANSWERED)
        self._event(caller, CallEvent.CONNECTED)
        self._notify()

    def _after_media(self) -> None:
        assert self._media is not None and self.call is not None
        for port in self.ports:
            if port.modem is port.class2:
                port.class2.advance(PTIME)
            self._pump(port)
        if self._media is None:  # a pump above ended the call
            return
        pages = self._media.pages
        if pages != self.call.pages:
            self.call.pages = pages
            log.info("line: page %d confirmed", pages)
            self._notify()
            limit = self.options.hangup_after_page
            if limit is not None and pages >= limit and self._drop_in is None:
                self._drop_in = self.options.hangup_delay
        if self._drop_in is not None:
            self._drop_in -= PTIME
            if self._drop_in < 0:
                self._drop_in = None
                self._drop_call(f"fault: hang-up after page {self.options.hangup_after_page}")

    def _hangup(self, port: VirtualPort, why: str) -> None:
        if self._ringing is not None and port in self._ringing:
            caller, callee = self._ringing
            self._ringing = None
            self._end(why)
            if port is callee:
                self._event(caller, CallEvent.HANGUP)
            return
        if self._connected is not None and port in self._connected:
            if self._leaving is not None and port is not self._leaving[0]:
                return  # the leaver again (ATH, then closing the port): the stayer still hears it
            if self._leaving is not None:  # the other side had hung up already: both on hook now
                self._leaving = None
                self._connected = None
                self._end(why)
                return
            # the line stays up a while: what the leaver sent last is still on its way
            log.info("%s; %s hears NO CARRIER in %.1f s", why, self.other(port).name, self.options.hangup_linger)
            self._leaving = (self.other(port), time.monotonic() + self.options.hangup_linger, why)
            if self.call is not None:
                self.call.ended_by = why

    def _linger_timer(self) -> None:
        if self._leaving is None or time.monotonic() < self._leaving[1]:
            return
        stays, _, why = self._leaving
        self._leaving = None
        self._connected = None
        self._end(why)
        self._event(stays, CallEvent.HANGUP)

    def _drop_call(self, why: str) -> None:
        """The line goes dead under both modems: both hear NO CARRIER."""
        self._connected = None
        self._ringing = None
        self._leaving = None
        self._end(why)
        for port in self.ports:
            self._event(port, CallEvent.HANGUP)

    def _end(self, why: str) -> None:
        if self.call is not None and self.call.ended is None:
            self.call.ended = time.monotonic()
            self.call.ended_by = self.call.ended_by or why
            if self._media is not None:
                self.call.pages = self._media.pages
            log.info("call ended: %s (%d pages)", self.call.ended_by, self.call.pages)
        if self._media is not None:
            self._media.close()
            self._media = None
        self._drop_in = None
        self._notify()

    def _dte_closed(self, port: VirtualPort) -> None:
        log.info("%s: DTE closed %s", port.name, port.path)
        port.present = False
        self._unwatch(port)
        self._hangup(port, f"{port.name} DTE closed")
        port.reset_modem()  # the next DTE finds a modem in its power-on state
        port.discard_pending()
        self._notify()


async def serve(link_a: str, link_b: str, options: LineOptions) -> None:
    """``faxbridge virtual-modem``: run the line in the foreground until SIGINT/SIGTERM."""
    import signal

    line = VirtualLine(link_a, link_b, options=options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, line.stop)
    print(f"virtual modem A: {line.a.path} -> {line.a.slave_path} (number {line.a.number})", flush=True)
    print(f"virtual modem B: {line.b.path} -> {line.b.slave_path} (number {line.b.number})", flush=True)
    try:
        await line.run()
    finally:
        line.close()
