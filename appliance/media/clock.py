"""One 20 ms clock for every call's media on the event loop.

Each channel keeps ``LOOKAHEAD`` packets of its own audio prepared.  At every tick each channel
first *sends* one prepared packet (a sendto each: microseconds) and only then does the DSP work
(playout into spandsp, spandsp's next 20 ms of audio).  Work comes in bursts: spandsp compresses
and writes a finished page inside one ``fax_rx`` call (about a millisecond), and calls that
started together finish their pages together.  When the work of one tick runs into the next
tick's deadline, the clock sends that tick's packets right away, between two channels' work,
from the packets prepared ahead.  So a packet is late by at most one channel's longest C call,
however many calls share the loop.  The schedule is computed from the start time: no drift.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, TypedDict

PTIME = 0.020
#: packets each channel keeps ready: the send can run ahead of the DSP work by this many ticks
LOOKAHEAD = 2
#: a loop blocked for longer than this many periods skips ahead instead of bursting packets
#: (the far end's jitter buffer absorbs a burst up to its delay; beyond that, send a gap).
#: Each channel counts the skipped packets as late and not sent: a stall must show.
MAX_CATCH_UP = 10


class ClockedChannel(Protocol):
    def send_prepared(self, due: float, now: float) -> None: ...
    def skip(self, ticks: int, late: float) -> None: ...
    def process(self, now: float) -> None: ...


class MediaClock:
    def __init__(self) -> None:
        self.channels: list[ClockedChannel] = []
        self._timer: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._ticks = 0  # ticks whose packets have been sent
        self.stats = {"ticks": 0, "skipped": 0, "early_rounds": 0, "max_work_ms": 0.0}

    def add(self, channel: ClockedChannel) -> None:
        self.channels.append(channel)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._start, self._ticks = loop.time(), 0
            self._timer = loop.call_at(self._due(), self._tick)

    def remove(self, channel: ClockedChannel) -> None:
        if channel in self.channels:
            self.channels.remove(channel)
        if not self.channels and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> float:
        """When the next tick's packets must go out."""
        return self._start + (self._ticks + 1) * PTIME

    def _send_round(self, channels: list[ClockedChannel], time: "asyncio.AbstractEventLoop.time") -> None:
        due = self._due()
        for ch in channels:
            ch.send_prepared(due, time())
        self._ticks += 1
        self.stats["ticks"] += 1

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        behind = int((now - self._due()) / PTIME)
        if behind >= MAX_CATCH_UP:  # hopelessly behind (the machine stalled): resynchronise
            late = now - self._due()  # the first skipped packet's lateness; it is never sent
            self.stats["skipped"] += behind
            self._ticks += behind
            for ch in self.channels:  # the RTP timeline keeps to the wall clock: a gap, not a slip
                ch.skip(behind, late)
        channels = list(self.channels)
        while self._due() <= now:
            self._send_round(channels, loop.time)
        for ch in channels:
            ch.process(now)
            if self._due() <= loop.time():  # the next deadline passed during the work: send now
                self._send_round(channels, loop.time)
                self.stats["early_rounds"] += 1
        work = (loop.time() - now) * 1000.0
        if work > self.stats["max_work_ms"]:
            self.stats["max_work_ms"] = work
        self._timer = loop.call_at(self._due(), self._tick) if self.channels else None

    def status(self) -> ClockStatus:
        """Its ticks since start, those skipped after stalls, and the channels it drives now."""
        return ClockStatus(ticks=int(self.stats["ticks"]), skipped=int(self.stats["skipped"]),
                           early_rounds=int(self.stats["early_rounds"]), max_work_ms=float(self.stats["max_work_ms"]),
                           channels=len(self.channels))


class ClockStatus(TypedDict):
    ticks: int
    skipped: int        # ticks never sent: the clock resynchronised after a stall
    early_rounds: int
    max_work_ms: float  # the longest tick's work so far
    channels: int
