"""Class 1 / 1.0: the asyncio adapter around :class:`Class1FrontEnd` (the rules are there).

:class:`Class1Call` reads the port's events, feeds them to the front-end with the loop's time,
runs the commands and writes it hands out, and sleeps until its ``next_timer()``; nothing about
T.30 or T.31 is decided here.  :class:`Class1Receiver` is the line's ReceiveDriver,
:class:`Class1Transmitter` its SendDriver (``ModemLine.send``); :class:`Class1Sender` dials and
sends on a bare port (tests and the test-fax tool).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from appliance.config import FaxConfig
from appliance.fax.session import ReceiveSession
from appliance.modem.at import Event as AtEvent
from appliance.modem.class1_frontend import (
    Class1FrontEnd,
    Command,
    CommandEnded,
    EndDataPhase,
    FrontEndEvent,
    SendCommand,
    TimePassed,
    WriteData,
    WriteEnded,
)
from appliance.modem.driver import ModemCall, ModemCallResult, ModemSendJob, ModemSendResult
from appliance.modem.serial_port import ModemError, ModemPort
from appliance.spandsp.frontend import FrontEndTerminal
from appliance.spandsp.t30 import PageDone, PhaseB

#: how often a sending call looks at T.30's events (pages confirmed) and the cancel flag
SEND_POLL = 0.2

__all__ = ["Class1Call", "Class1Receiver", "Class1Sender", "Class1Transmitter"]

log = logging.getLogger("faxbridge.modem")


class Class1Call:
    """One fax call driven through a Class 1 modem: the front-end's events in, its commands out.

    ``connect`` is the command that starts the call: ``ATA`` (answering) or ``ATD<number>``.
    """

    def __init__(
        self,
        port: ModemPort,
        term: FrontEndTerminal,
        connect: str,
        *,
        max_duration: float = 900.0,
        connect_timeout: float = 60.0,
        quirks: frozenset[str] = frozenset(),
    ) -> None:
        self.port = port
        self.term = term
        self._loop = asyncio.get_running_loop()
        self.frontend = Class1FrontEnd(
            term, connect, self._loop.time(), max_duration=max_duration, connect_timeout=connect_timeout, quirks=quirks
        )

    @property
    def stats(self) -> dict[str, int]:
        return self.frontend.stats

    @property
    def end_reason(self) -> str:
        return self.frontend.end_reason

    async def run(self) -> str:
        """Run the call to its end; returns why it ended (never raises for the modem's doings)."""
        await self._drive()
        if self.frontend.error is not None:
            log.warning("class 1 call: %s\n%s", self.frontend.error, self.port.history())
        return self.frontend.end_reason

    async def hang_up(self) -> None:
        """Back on hook, whatever state the modem was left in."""
        if not self.port.is_open:
            return
        self.frontend.hang_up(self._loop.time(), data_phase_open=self.port.channel.busy)
        await self._drive()

    async def _drive(self) -> None:
        """Feed the front-end until its step ends: port events, command and write outcomes, time."""
        fe, loop, port = self.frontend, self._loop, self.port
        inbox: deque[FrontEndEvent] = deque()  # outcomes, in the order they came
        wake = asyncio.Event()

        def deliver(event: FrontEndEvent) -> None:
            inbox.append(event)
            wake.set()

        getter: asyncio.Future[AtEvent] | None = None
        try:
            while True:
                for command in fe.commands_to_send():
                    self._perform(command, deliver)
                if not fe.running:
                    break
                if getter is None:
                    getter = asyncio.ensure_future(port.events.get())
                    getter.add_done_callback(lambda _: wake.set())
                if not inbox and not getter.done():
                    timer = fe.next_timer()
                    alarm = loop.call_at(timer, wake.set) if timer is not None else None
                    await wake.wait()
                    if alarm is not None:
                        alarm.cancel()
                wake.clear()
                now = loop.time()
                fed = bool(inbox)
                while inbox:
                    fe.receive(inbox.popleft(), now)
                if getter.done():
                    event, getter = getter.result(), None
                    fe.receive(event, now)
                    fed = True
                if not fed:
                    fe.receive(TimePassed(), now)
        finally:
            if getter is not None:
                getter.cancel()
            self._give_back(fe.unread_events())

    def _give_back(self, events: list[AtEvent]) -> None:
        """Events the front-end never asked for go back to the head of the port's queue."""
        if not events:
            return
        rest = []
        while not self.port.events.empty():
            rest.append(self.port.events.get_nowait())
        for event in events + rest:
            self.port.events.put_nowait(event)

    def _perform(self, command: Command, deliver: Callable[[FrontEndEvent], None]) -> None:
        """Start ``command`` now; its outcome is delivered when the port has it."""
        if isinstance(command, EndDataPhase):
            self.port.channel.end_data_phase(self._loop.time())
            return
        try:
            if isinstance(command, SendCommand):
                fut: asyncio.Future[Any] = self.port.submit(command.cmd, command.timeout, command.expect)
            else:
                fut = self.port.submit_data(command.data)
        except ModemError as e:  # the port is closed
            deliver(_ended(command, None, e))
            return
        fut.add_done_callback(lambda f: deliver(_ended(command, None if f.exception() else f.result(), f.exception())))


def _ended(command: SendCommand | WriteData, done: Any, error: BaseException | None) -> CommandEnded | WriteEnded:
    """The port's outcome as the front-end's event (the port fails only with ModemError)."""
    if error is not None and not isinstance(error, ModemError):
        raise error
    if isinstance(command, SendCommand):
        return CommandEnded(command.tag, done=done, error=error)
    return WriteEnded(command.tag, error=error)


def _fax_config(call: ModemCall) -> FaxConfig:
    cfg = FaxConfig()
    cfg.max_call_duration = int(call.max_call_duration)
    return cfg


class Class1Receiver:
    """Answer and receive one fax with spandsp's T.30 over a Class 1 modem (the ReceiveDriver)."""

    async def receive(self, port: ModemPort, call: ModemCall) -> ModemCallResult:
        loop = asyncio.get_running_loop()
        term = FrontEndTerminal(calling=False, ident=call.ident, ecm=call.ecm, rx_file=os.fspath(call.tiff_path))
        session = ReceiveSession(term, loop.time(), _fax_config(call))
        driver = Class1Call(port, term, call.answer, max_duration=call.max_call_duration, quirks=call.quirks)
        t0 = time.monotonic()
        try:
            reason = await driver.run()
        except Exception:  # a bug of ours must not lose the pages received so far
            log.exception("class 1 receive on %s failed", call.device)
            reason = "internal error in the class 1 driver"
        term.close()  # completes the TIFF; reports phase E if the call was cut short
        session.poll(loop.time())
        await driver.hang_up()
        facts = session.facts(loop.time())
        complete = session.complete
        facts.end_reason, facts.modem_class = reason, "1"
        facts.extra.update({"class1": dict(driver.stats), "call_seconds": round(time.monotonic() - t0, 1)})
        if not complete:
            facts.modem_history = port.history()
            log.info("class 1 receive on %s ended: %s\n%s", call.device, reason, port.history())
        return ModemCallResult(complete=complete, facts=facts)


class Class1Sender:
    """Dial and send a TIFF with spandsp's T.30 over a Class 1 modem (tests, and a test-fax tool)."""

    def __init__(
        self,
        number: str,
        tiff: str | os.PathLike[str],
        *,
        ident: str = "",
        ecm: bool = True,
        max_duration: float = 900.0,
    ) -> None:
        self.number, self.tiff, self.ident, self.ecm, self.max_duration = number, tiff, ident, ecm, max_duration

    async def send(self, port: ModemPort) -> tuple[bool, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        term = FrontEndTerminal(calling=True, ident=self.ident, ecm=self.ecm, tx_file=os.fspath(self.tiff))
        dial = "ATDT" + "".join(c for c in self.number if c.isdigit() or c in "*#,")
        driver = Class1Call(port, term, dial, max_duration=self.max_duration)
        reason = await driver.run()
        term.close()
        await driver.hang_up()
        stats = term.stats()
        ok = term.finished is not None and term.finished.ok
        return ok, {
            "reason": reason,
            "result": term.finished.text if term.finished else "",
            "pages": stats.pages_tx,
            "ecm": stats.ecm,
            "bit_rate": stats.bit_rate,
            "trace": list(term.trace),
            "class1": dict(driver.stats),
            "started": loop.time(),
        }


def dial_string(command: str, dial: str) -> str:
    """``ATDT`` and the digits: only 0-9 * # and the comma pause reach the modem."""
    return command + "".join(c for c in dial if c.isdigit() or c in "*#,")[:40]


class Class1Transmitter:
    """Dial and send ``job.tiff_path`` with spandsp's T.30 over a Class 1 modem (the SendDriver).

    T.30's events are read while the call runs: its phase B (the far end's DIS) is the moment
    the fax was answered (``on_connected``), each MCF a confirmed page (``on_page``).  Cancel
    ends T.30 at once (spandsp 0.0.6 cannot send DCN on request); the front-end then aborts
    what the modem is doing and the hang-up runs as after any call."""

    async def send(self, port: ModemPort, job: ModemSendJob) -> ModemSendResult:
        t0 = time.monotonic()
        result = ModemSendResult(modem_class="1", ecm=job.ecm)
        term = FrontEndTerminal(calling=True, ident=job.ident, ecm=job.ecm, tx_file=os.fspath(job.tiff_path))
        driver = Class1Call(
            port,
            term,
            dial_string(job.dial_command, job.dial),
            max_duration=job.max_call_duration,
            connect_timeout=job.answer_timeout,
            quirks=job.quirks,
        )
        watcher = asyncio.ensure_future(self._watch(term, job, result))
        try:
            reason = await driver.run()
        except Exception:  # a bug of ours must still hang up and report
            log.exception("class 1 send failed")
            reason = "internal error in the class 1 driver"
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        self._events(term, job, result)
        term.close()
        with contextlib.suppress(ModemError):
            await driver.hang_up()
        fe = driver.frontend
        if reason.startswith("dialling: "):
            result.dial_result = reason.removeprefix("dialling: ")
        elif fe.error is not None and fe.error.cmd.upper().startswith("ATD"):
            result.dial_result = "timeout" if "timeout" in fe.error.result else fe.error.result
        elif reason.startswith("modem gone") and not result.fax_answered and not fe.stats["frames_rx"]:
            result.dial_result = ""
        else:
            result.dial_result = "CONNECT"
        stats = term.stats()
        finished = term.finished
        result.t30_code = finished.code if finished is not None else None
        result.t30_text = finished.text if finished is not None else ""
        result.pages_sent = max(result.pages_sent, stats.pages_tx if finished is not None and finished.ok else 0)
        result.complete = finished is not None and finished.ok and not result.cancelled
        result.remote_ident = stats.remote_ident
        result.bit_rate, result.ecm = stats.bit_rate, stats.ecm
        result.reason = reason
        result.device_lost = not port.is_open or reason.startswith("modem gone")
        result.trace = list(term.trace) + result.trace
        if not result.complete:
            result.modem_history = port.history()
        log.info(
            "class 1 send: %s (%s) %d page(s) confirmed, %.0f s",
            reason,
            result.t30_text,
            result.pages_sent,
            time.monotonic() - t0,
        )
        return result

    async def _watch(self, term: FrontEndTerminal, job: ModemSendJob, result: ModemSendResult) -> None:
        while True:
            self._events(term, job, result)
            if job.cancel is not None and job.cancel.is_set() and not result.cancelled:
                result.cancelled = True
                term.terminate()
            await asyncio.sleep(SEND_POLL)

    @staticmethod
    def _events(term: FrontEndTerminal, job: ModemSendJob, result: ModemSendResult) -> None:
        """T.30's phase B and page events since the last look, as the job's callbacks."""
        while (ev := term.next_event()) is not None:
            if isinstance(ev, PhaseB) and not result.fax_answered:
                result.fax_answered = True
                job.on_connected()
            elif isinstance(ev, PageDone) and ev.frame in ("MCF", "RTP", "PIP"):
                result.pages_sent = ev.stats.pages_tx
                job.on_page(result.pages_sent)
            elif isinstance(ev, PageDone):
                result.trace.append(f"page answered {ev.frame}")
