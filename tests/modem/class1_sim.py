"""A recorded modem dialogue replayed against :class:`Class1FrontEnd` on a fake clock, in-process.

What ``ModemPort`` does for the real adapter, done here without I/O: an :class:`AtChannel`
carries the front-end's commands and writes, command outcomes go back by tag, other events as
they come.  The modem's side is the recording (``replay.py``'s format): once the front-end has
written exactly the next ``>`` chunk, the ``<`` chunk that follows is delivered ``latency``
seconds later.  When nothing is in flight the clock jumps to the next timer of the front-end or
the channel, so a call takes milliseconds of real time and the times of every write are known.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from appliance.modem.at import AtChannel, CommandDone, CommandTimedOut, DeviceGone, Unsolicited
from appliance.modem.class1_frontend import (Class1FrontEnd, CommandEnded, EndDataPhase, SendCommand,
                                             TimePassed, WriteData, WriteEnded)
from appliance.modem.at import ModemError

from .replay import Chunk, merge


class ReplayFailed(AssertionError):
    pass


@dataclass
class SimModem:
    """The recording's modem side, and what happened when."""
    script: list[Chunk]
    latency: float = 0.001
    position: int = 0
    written: bytearray = field(default_factory=bytearray)
    #: (time, bytes) of every chunk the front-end's side wrote, and of every modem answer
    dte_writes: list[tuple[float, bytes]] = field(default_factory=list)
    answers: list[tuple[float, bytes]] = field(default_factory=list)
    #: script index -> when that chunk was delivered ("<") or written in full (">")
    times: dict[int, float] = field(default_factory=dict)
    _due: tuple[float, bytes] | None = None

    def __post_init__(self) -> None:
        self.script = merge(self.script)

    @property
    def finished(self) -> bool:
        return self.position >= len(self.script) and self._due is None

    def took(self, data: bytes, now: float) -> None:
        self.dte_writes.append((now, data))
        self.written += data
        self._match(now)

    def _match(self, now: float) -> None:
        while self.position < len(self.script) and self._due is None:
            direction, data = self.script[self.position]
            if direction == "<":
                self._due = (now + self.latency, data)
                self.times[self.position] = now + self.latency
                self.position += 1
                return
            if len(self.written) < len(data):
                return
            mine, self.written = bytes(self.written[:len(data)]), self.written[len(data):]
            if mine != data:
                at = next(k for k, (x, y) in enumerate(zip(mine, data)) if x != y)
                raise ReplayFailed(f"chunk {self.position}, byte {at}: wrote {mine[max(0, at - 20):at + 40]!r}, "
                                   f"the recording has {data[max(0, at - 20):at + 40]!r}")
            self.times[self.position] = now
            self.position += 1

    def due(self) -> float | None:
        return self._due[0] if self._due else None

    def answer(self, now: float) -> bytes:
        assert self._due is not None and now >= self._due[0]
        data, self._due = self._due[1], None
        self.answers.append((now, data))
        self._match(now)
        return data


class Sim:
    """One front-end, one channel, one recorded modem, one clock."""

    def __init__(self, script: list[Chunk], now: float = 0.0, latency: float = 0.001) -> None:
        self.now = now
        self.channel = AtChannel()
        self.modem = SimModem(script, latency)
        self._tags: deque[int | None] = deque()  # command outcomes in channel order; None: ours
        self.fe: Class1FrontEnd | None = None
        self.setup_results: list[CommandDone | CommandTimedOut] = []
        self.unsolicited: list[str] = []  # lines that came while no front-end listened

    def wait_for(self, line: str, count: int, limit: float = 60.0) -> None:
        """Step until the modem has said ``line`` ``count`` times (RING before answering)."""
        end = self.now + limit
        while self.unsolicited.count(line) < count:
            if self.now > end:
                raise ReplayFailed(f"no {count} x {line} within {limit:g} s")
            self._step()

    def command(self, cmd: str, timeout: float = 3.0) -> None:
        """A command of the test's own (the setup before the call), run to its end."""
        self._tags.append(None)
        self.channel.send(cmd, timeout, now=self.now)
        n = len(self.setup_results)
        while len(self.setup_results) == n:
            self._step()

    def until(self, done: Callable[[], bool], limit: float = 600.0) -> None:
        """Step until ``done()`` (or ``limit`` simulated seconds pass)."""
        end = self.now + limit
        while not done():
            if self.now > end:
                raise ReplayFailed(f"not done after {limit:g} simulated seconds")
            self._step()

    def run(self, fe: Class1FrontEnd, limit: float = 600.0) -> None:
        """Feed ``fe`` until its step ends (or ``limit`` simulated seconds pass)."""
        self.fe = fe
        end = self.now + limit
        while fe.running:
            if self.now > end:
                raise ReplayFailed(f"still running after {limit:g} simulated seconds")
            self._step()
        self._perform()

    def _perform(self) -> None:
        fe = self.fe
        for c in fe.commands_to_send() if fe is not None else []:
            if isinstance(c, SendCommand):
                if self.channel.closed:
                    assert fe is not None
                    fe.receive(CommandEnded(c.tag, error=ModemError(c.cmd, "port closed")), self.now)
                    continue
                self._tags.append(c.tag)
                self.channel.send(c.cmd, c.timeout, expect=c.expect, now=self.now)
            elif isinstance(c, WriteData):
                self.channel.send_data(c.data, self.now)
                self._flush()
                assert fe is not None
                fe.receive(WriteEnded(c.tag), self.now)
            else:
                assert isinstance(c, EndDataPhase)
                self.channel.end_data_phase(self.now)
        self._flush()

    def _flush(self) -> None:
        out = self.channel.data_to_send()
        if out:
            self.modem.took(out, self.now)

    def _step(self) -> None:
        """Everything that is due now; else the clock to the next thing that will be."""
        self._perform()
        if self._deliver_events():
            return
        due = self.modem.due()
        if due is not None and due <= self.now:
            self.channel.receive(self.modem.answer(self.now), self.now)
            return
        times = [t for t in (due, self.channel.get_timer(), self.fe.next_timer() if self.fe else None)
                 if t is not None]
        if not times:
            raise ReplayFailed(f"nothing left to happen at {self.now:.3f} s (chunk {self.modem.position})")
        self.now = max(self.now, min(times))
        self.channel.handle_timer(self.now)
        if not self._deliver_events() and self.fe is not None and self.fe.running:
            self.fe.receive(TimePassed(), self.now)

    def _deliver_events(self) -> bool:
        any_ = False
        while (ev := self.channel.next_event()) is not None:
            any_ = True
            if isinstance(ev, (CommandDone, CommandTimedOut)):
                tag = self._tags.popleft()
                if tag is None:
                    self.setup_results.append(ev)
                elif self.fe is not None:
                    if isinstance(ev, CommandTimedOut):
                        err = ModemError(ev.cmd, "timeout", ev.lines)
                        self.fe.receive(CommandEnded(tag, error=err), self.now)
                    else:
                        self.fe.receive(CommandEnded(tag, done=ev), self.now)
                continue
            if self.fe is not None:
                self.fe.receive(ev, self.now)
            elif isinstance(ev, Unsolicited):
                self.unsolicited.append(ev.line)
            if isinstance(ev, DeviceGone):
                while self._tags:
                    tag = self._tags.popleft()
                    if tag is not None and self.fe is not None:
                        self.fe.receive(CommandEnded(tag, error=ModemError("?", "device gone")), self.now)
        return any_
