"""Class 1 / 1.0: the asyncio adapter around :class:`Class1FrontEnd` (the rules are there).

:class:`Class1Call` reads the port's events, feeds them to the front-end with the loop's time,
runs the commands and writes it hands out, and sleeps until its ``next_timer()``; nothing about
T.30 or T.31 is decided here.  :class:`Class1Receiver` is the line's ReceiveDriver,
:class:`Class1Sender` dials and sends (tests and the test-fax tool).
"""

from __future__ import annotations

import asyncio
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
from appliance.modem.driver import ModemCall, ModemCallResult
from appliance.modem.serial_port import ModemError, ModemPort
from appliance.spandsp.frontend import FrontEndTerminal

__all__ = ["Class1Call", "Class1Receiver", "Class1Sender"]

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
