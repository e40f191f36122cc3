"""One 20 ms clock for every call's media on the event loop, with the calls spread over the period.

Calls need not share a phase.  The period is cut into ``SLOTS`` slots of 1 ms; each channel
joins the least busy slot and its packets are due at ``start + (slot + 1) ms + k * 20 ms``.  So a
slot's moment carries a fraction of the calls, and a packet waits only for its neighbours' work,
not for every call's: the far end's packets, paced by the same kind of clock, arrive spread too.

At its moment a slot's channels first *send* one prepared packet each (a sendto: microseconds)
and only then do their DSP work (playout into spandsp, spandsp's next 20 ms of audio).  Each
channel keeps ``LOOKAHEAD`` packets prepared.  Work comes in bursts: spandsp compresses and
writes a finished page inside one ``fax_rx`` call (about a millisecond).  When work runs into a
later slot's moment, the clock sends that slot's packets right away, between two channels' work,
from the packets prepared ahead.  So a packet is late by at most one channel's longest C call.
The schedule is computed from the start time: no drift.

``MediaSchedule`` is the decision (sans-I/O: it is handed a time source and never sleeps);
``MediaClock`` runs it on the asyncio loop with one timer.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol, TypedDict

PTIME = 0.020
#: slots per period: a channel's packets are due at one of these 1 ms phases
SLOTS = 20
SLOT_TIME = PTIME / SLOTS
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


class MediaSchedule:
    """Which channel sends and works when; ``run(time)`` does what is due and says when to call again.

    Time is counted in slot moments: moment ``m`` is due at ``start + (m + 1) * SLOT_TIME`` and
    belongs to slot ``m % SLOTS``.  ``_next`` is the first moment whose packets are not sent yet.
    """

    def __init__(self, start: float) -> None:
        self.start = start
        self.slots: list[list[ClockedChannel]] = [[] for _ in range(SLOTS)]
        self._slot_of: dict[ClockedChannel, int] = {}
        self._next = 0
        #: calls that joined and wait for their slot's first moment after they joined:
        #: (moment, order, channel); they count in their slot's load already
        self._joining: list[tuple[int, int, ClockedChannel]] = []
        self._order = itertools.count()
        #: channels that sent and wait for their work: in sending order, with when they sent
        self._pending: collections.OrderedDict[ClockedChannel, float] = collections.OrderedDict()
        self.stats = {"ticks": 0, "skipped": 0, "early_rounds": 0, "max_work_ms": 0.0}

    @property
    def channels(self) -> list[ClockedChannel]:
        return list(self._slot_of)

    def add(self, channel: ClockedChannel, now: float | None = None) -> int:
        """Put ``channel`` in the least busy slot (the one coming soonest after ``now`` among
        equals); its slot.  Its first packet is due at that slot's first moment after ``now``:
        never at a moment already past that the schedule has not reached yet."""
        first = self._next if now is None else max(self._next, int((now - self.start) / SLOT_TIME))
        load = [len(s) for s in self.slots]
        for _, _, ch in self._joining:
            load[self._slot_of[ch]] += 1
        order = [(first + i) % SLOTS for i in range(SLOTS)]
        slot = min(order, key=lambda s: load[s])
        moment = first + (slot - first) % SLOTS
        self._slot_of[channel] = slot
        if moment == self._next:
            self.slots[slot].append(channel)
        else:
            heapq.heappush(self._joining, (moment, next(self._order), channel))
        return slot

    def remove(self, channel: ClockedChannel) -> None:
        self._pending.pop(channel, None)
        slot = self._slot_of.pop(channel, None)
        if slot is None:
            return
        if channel in self.slots[slot]:
            self.slots[slot].remove(channel)
        else:
            self._joining = [j for j in self._joining if j[2] is not channel]
            heapq.heapify(self._joining)

    def due(self, moment: int) -> float:
        return self.start + (moment + 1) * SLOT_TIME

    def next_due(self) -> float | None:
        """When ``run`` has something to do next: the next moment of a slot that has channels, or
        at once (a moment already past) when work is pending."""
        if not self._slot_of:
            return None
        if self._pending:
            return self.due(self._next - 1)
        moment = self._next
        joins = self._joining[0][0] if self._joining else None
        while not self.slots[moment % SLOTS] and moment != joins:
            moment += 1
        return self.due(moment)

    def run(self, time: Callable[[], float]) -> float | None:
        """Send every packet due by ``time()``, then do the work of the channels that sent,
        sending again between two channels' work whenever a moment comes due; the next due time.

        The work of channels that sent during the work waits for the next run, which is due at
        once: between two runs the event loop reads the sockets, so a run stays one batch long
        even when the machine cannot keep up (a run that chained the work of every moment coming
        due would hold the loop for as long as it stayed behind)."""
        now = time()
        behind = int((now - self.due(self._next)) / PTIME)
        if behind >= MAX_CATCH_UP:  # hopelessly behind (the machine stalled): resynchronise
            self._skip(behind, now)
        self._send_due(now, time, self._pending)
        work, self._pending = self._pending, collections.OrderedDict()
        while work:
            channel, sent_at = work.popitem(last=False)
            channel.process(sent_at)
            if self._slot_of and self.due(self._next) <= time():  # a moment passed during the work
                self._send_due(time(), time, self._pending)
                self.stats["early_rounds"] += 1
        spent = (time() - now) * 1000.0
        if spent > self.stats["max_work_ms"]:
            self.stats["max_work_ms"] = spent
        return self.next_due()

    def _send_due(
        self, now: float, time: Callable[[], float], work: collections.OrderedDict[ClockedChannel, float]
    ) -> None:
        while self.due(self._next) <= now:
            self._admit(self._next)
            for channel in list(self.slots[self._next % SLOTS]):  # a copy: a send may end a call
                sent_at = time()
                channel.send_prepared(self.due(self._next), sent_at)
                work.setdefault(channel, sent_at)
            self._next += 1
            if self._next % SLOTS == 0:
                self.stats["ticks"] += 1

    def _admit(self, moment: int) -> None:
        """Calls whose first moment is ``moment`` (or was skipped) take their place in their slot."""
        while self._joining and self._joining[0][0] <= moment:
            channel = heapq.heappop(self._joining)[2]
            self.slots[self._slot_of[channel]].append(channel)

    def _skip(self, behind: int, now: float) -> None:
        """Skip ``behind`` whole periods: each channel's packets of them are never sent; each is
        told how late the first of them was.  The RTP timeline keeps to the wall clock: a gap."""
        self._admit(self._next + SLOTS - 1)  # a call joining in the stall has its share of it
        for i in range(SLOTS):
            moment = self._next + i
            late = now - self.due(moment)
            for channel in self.slots[moment % SLOTS]:
                channel.skip(behind, late)
        self._next += behind * SLOTS
        self.stats["ticks"] += behind
        self.stats["skipped"] += behind


class MediaClock:
    """The schedule on the asyncio loop: one timer, set for the next due moment."""

    def __init__(self) -> None:
        self._schedule: MediaSchedule | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_tick = False  # a channel added during a tick is armed for by the tick's end
        self._stats = {"ticks": 0, "skipped": 0, "early_rounds": 0, "max_work_ms": 0.0}

    @property
    def stats(self) -> dict[str, float]:
        return self._schedule.stats if self._schedule is not None else self._stats

    @property
    def channels(self) -> list[ClockedChannel]:
        return self._schedule.channels if self._schedule is not None else []

    def add(self, channel: ClockedChannel) -> None:
        loop = asyncio.get_running_loop()
        if self._schedule is None:  # the first call: the schedule starts now; totals carry on
            self._schedule = MediaSchedule(loop.time())
            self._schedule.stats = self._stats
        self._schedule.add(channel, loop.time())
        if self._in_tick:
            return  # the tick arms the timer when it ends
        due = self._schedule.next_due()
        # a slot before the one the timer waits for: the timer must wake for it, not 20 ms late
        if self._timer is None or (due is not None and due < self._timer.when()):
            if self._timer is not None:
                self._timer.cancel()
            self._arm(loop)

    def remove(self, channel: ClockedChannel) -> None:
        if self._schedule is None:
            return
        self._schedule.remove(channel)
        if not self._schedule.channels:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._schedule = None

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        due = self._schedule.next_due() if self._schedule is not None else None
        self._timer = loop.call_at(due, self._tick) if due is not None else None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer, self._in_tick = None, True
        try:
            if self._schedule is not None:
                self._schedule.run(loop.time)
        finally:
            self._in_tick = False
        self._arm(loop)

    def status(self) -> ClockStatus:
        """Its ticks since start, those skipped after stalls, and the channels it drives now."""
        stats = self.stats
        return ClockStatus(
            ticks=int(stats["ticks"]),
            skipped=int(stats["skipped"]),
            early_rounds=int(stats["early_rounds"]),
            max_work_ms=float(stats["max_work_ms"]),
            channels=len(self.channels),
        )


class ClockStatus(TypedDict):
    ticks: int
    skipped: int  # ticks never sent: the clock resynchronised after a stall
    early_rounds: int
    max_work_ms: float  # the longest tick's work so far
    channels: int
