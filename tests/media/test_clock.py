"""The media clock: calls spread over the 20 ms period, each sends before it works, sends go out
between two channels' work when work overruns a moment, and a stall is skipped and counted.

``MediaSchedule`` is stepped on a fake clock (channels' work moves it on); the asyncio
``MediaClock`` on the real loop only for what the loop adds (starting, stopping, a real stall)."""

from __future__ import annotations

import asyncio
import time

import pytest

from appliance.media.clock import MAX_CATCH_UP, PTIME, SLOT_TIME, SLOTS, MediaClock, MediaSchedule


class FakeTime:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A channel whose work takes ``work`` seconds of the fake clock (``slow`` at one tick)."""

    def __init__(self, name: str, log: list, clock: FakeTime, work: float = 0.0,
                 slow: tuple[int, float] | None = None) -> None:
        self.name, self.log, self.clock, self.work, self.slow = name, log, clock, work, slow
        self.sent: list[tuple[float, float]] = []  # (due, sent at)
        self.processed = 0
        self.skipped: list[tuple[int, float]] = []

    def send_prepared(self, due: float, now: float) -> None:
        self.sent.append((due, now))
        self.log.append(("send", self.name, len(self.sent)))

    def skip(self, ticks: int, late: float) -> None:
        self.skipped.append((ticks, late))
        self.log.append(("skip", self.name, ticks))

    def process(self, now: float) -> None:
        self.processed += 1
        assert self.processed < 5000, "a run chained work without end"
        self.log.append(("process", self.name, self.processed))
        self.clock.now += self.slow[1] if self.slow and self.slow[0] == self.processed else self.work

    @property
    def worst_late(self) -> float:
        return max(now - due for due, now in self.sent)


def drive(schedule: MediaSchedule, clock: FakeTime, until: float) -> None:
    """The event loop's part: wake at the due time (or at once when behind) and run."""
    while True:
        due = schedule.next_due()
        assert due is not None
        if due > until:
            return
        clock.now = max(clock.now, due)
        schedule.run(clock)


def test_calls_are_spread_over_the_period_one_slot_each_in_turn():
    clock = FakeTime()
    schedule = MediaSchedule(clock.now)
    log: list = []
    chans = [Recorder(str(i), log, clock) for i in range(2 * SLOTS + 3)]
    slots = [schedule.add(ch) for ch in chans]
    assert sorted(slots[:SLOTS]) == list(range(SLOTS))  # the first SLOTS calls take a slot each
    assert max(map(slots.count, range(SLOTS))) - min(map(slots.count, range(SLOTS))) <= 1
    drive(schedule, clock, clock.now + 10 * PTIME)
    for ch, slot in zip(chans, slots):
        dues = [due for due, _ in ch.sent]
        assert len(dues) == 10
        assert dues[0] == pytest.approx(schedule.start + (slot + 1) * SLOT_TIME)
        assert all(b - a == pytest.approx(PTIME) for a, b in zip(dues, dues[1:]))
        assert ch.worst_late == pytest.approx(0.0, abs=1e-9)
        assert ch.processed == 10
    assert schedule.stats["ticks"] == 10


def test_each_channel_sends_its_packet_before_its_own_work_and_neighbours_send_first():
    clock = FakeTime()
    schedule = MediaSchedule(clock.now)
    log: list = []
    a, b = Recorder("a", log, clock), Recorder("b", log, clock)
    schedule.add(a), schedule.add(b)
    c = Recorder("c", log, clock)
    schedule.slots[0].append(c), schedule._slot_of.__setitem__(c, 0)  # a's neighbour in slot 0
    drive(schedule, clock, clock.now + 3 * PTIME)
    assert log[:6] == [("send", "a", 1), ("send", "c", 1), ("process", "a", 1), ("process", "c", 1),
                       ("send", "b", 1), ("process", "b", 1)]


def test_a_packet_waits_only_for_its_neighbours_work_not_every_calls():
    """300 calls at 50 µs of work each: 15 ms of work per period.  In one phase the last call's
    packet would wait for the 299 others; spread, it waits for a slot's worth at most."""
    clock = FakeTime()
    schedule = MediaSchedule(clock.now)
    chans = [Recorder(str(i), [], clock, work=50e-6) for i in range(300)]
    for ch in chans:
        schedule.add(ch)
    drive(schedule, clock, clock.now + 50 * PTIME)
    worst = max(ch.worst_late for ch in chans)
    assert worst < 0.001, worst
    assert all(len(ch.sent) >= 49 for ch in chans)
    assert schedule.stats["skipped"] == 0


def test_overrunning_work_sends_the_next_slots_packets_between_two_channels_work():
    clock = FakeTime()
    schedule = MediaSchedule(clock.now)
    log: list = []
    slow = Recorder("slow", log, clock, slow=(3, 3.5 * SLOT_TIME))  # a page end inside fax_rx
    neighbour = Recorder("neighbour", log, clock)
    later = [Recorder(f"l{i}", log, clock) for i in range(3)]
    for ch in [slow, *later]:
        schedule.add(ch)  # slots 0..3
    schedule.slots[0].append(neighbour), schedule._slot_of.__setitem__(neighbour, 0)
    drive(schedule, clock, clock.now + 6 * PTIME)
    i = log.index(("process", "slow", 3))
    # the three later slots came due during the slow work: their packets go out before the
    # neighbour's work, which would otherwise make them later still
    assert [e[:2] for e in log[i + 1:i + 4]] == [("send", "l0"), ("send", "l1"), ("send", "l2")]
    assert log[i + 4] == ("process", "neighbour", 3)
    assert schedule.stats["early_rounds"] >= 1
    assert max(ch.worst_late for ch in later) <= 3.5 * SLOT_TIME + 1e-9
    assert all(len(ch.sent) == len(slow.sent) for ch in later)  # nobody skipped a packet
    assert all(ch.processed == len(ch.sent) for ch in [slow, neighbour, *later])


def test_a_machine_that_cannot_keep_up_still_returns_to_the_loop_after_each_batch():
    """40 calls of 1 ms work each: 40 ms of work a 20 ms period.  Each run does every channel's
    work at most once and returns, so the loop still reads sockets; chaining the work of every
    moment that came due would never return."""
    clock = FakeTime()
    schedule = MediaSchedule(clock.now)
    chans = [Recorder(str(i), [], clock, work=1e-3) for i in range(40)]
    for ch in chans:
        schedule.add(ch)
    longest = 0.0
    for _ in range(200):
        due = schedule.next_due()
        assert due is not None
        clock.now = max(clock.now, due)
        started = clock.now
        schedule.run(clock)
        longest = max(longest, clock.now - started)
    assert longest <= 40 * 1e-3 + 1e-9
    # the sends still went out between two channels' work; the work fell behind (a real channel
    # then makes its packet as it sends, and falls behind in sending: the skip counts that)
    assert max(ch.worst_late for ch in chans) <= 1e-3 + 1e-9
    assert all(10 < ch.processed < len(ch.sent) for ch in chans)


def test_a_short_delay_is_caught_up_with_every_packet_sent_late():
    clock = FakeTime()
    schedule = MediaSchedule(clock.now)
    ch = Recorder("x", [], clock)
    schedule.add(ch)
    drive(schedule, clock, clock.now + 3 * PTIME)
    clock.now += 5 * PTIME + 1e-9  # the loop was busy elsewhere: below MAX_CATCH_UP
    schedule.run(clock)
    assert ch.skipped == [] and len(ch.sent) == 8
    assert ch.worst_late == pytest.approx(4 * PTIME)


def test_a_stall_longer_than_the_catch_up_is_skipped_and_each_channel_told_its_own_lateness():
    clock = FakeTime()
    schedule = MediaSchedule(clock.now)
    chans = [Recorder(str(i), [], clock) for i in range(4)]
    for ch in chans:
        schedule.add(ch)
    drive(schedule, clock, clock.now + 2 * PTIME)
    sent = [len(ch.sent) for ch in chans]
    clock.now += (MAX_CATCH_UP + 5) * PTIME
    schedule.run(clock)
    for ch, before in zip(chans, sent):
        ((ticks, late),) = ch.skipped
        assert ticks >= MAX_CATCH_UP
        assert late >= MAX_CATCH_UP * PTIME
        assert len(ch.sent) - before <= 1  # no burst: at most the moment now due
    lates = [ch.skipped[0][1] for ch in chans]
    assert lates == sorted(lates, reverse=True)  # later slots were less late when skipped
    assert schedule.stats["skipped"] == chans[0].skipped[0][0]


def test_a_removed_channel_frees_its_slot_for_the_next_call():
    clock = FakeTime()
    schedule = MediaSchedule(clock.now)
    chans = [Recorder(str(i), [], clock) for i in range(SLOTS)]
    slots = [schedule.add(ch) for ch in chans]
    schedule.remove(chans[7])
    assert schedule.add(Recorder("new", [], clock)) == slots[7]
    for ch in chans:
        schedule.remove(ch)
    assert schedule.next_due() is not None  # "new" is still there
    schedule.remove(schedule.channels[0])
    assert schedule.next_due() is None


def test_a_call_joining_between_moments_starts_at_its_slots_next_moment_not_one_already_past():
    """The schedule last ran at slot 0's moment; 15 ms later a call joins.  The moments between
    were never run (their slots were empty): the call must not be given one of them, which would
    make its first packet 15 ms late the moment it starts."""
    clock = FakeTime()
    schedule = MediaSchedule(clock.now)
    first = Recorder("first", [], clock)
    schedule.add(first, clock.now)
    drive(schedule, clock, clock.now + 1.5 * SLOT_TIME)
    clock.now += 15 * SLOT_TIME
    joining = Recorder("joining", [], clock)
    slot = schedule.add(joining, clock.now)
    assert slot != 0
    drive(schedule, clock, clock.now + 3 * PTIME)
    assert joining.sent and joining.sent[0][0] >= clock.now - 3 * PTIME - PTIME
    assert joining.worst_late == pytest.approx(0.0, abs=1e-9)
    assert first.worst_late == pytest.approx(0.0, abs=1e-9)
    schedule.remove(joining)
    late = Recorder("late", [], clock)
    schedule.add(late, clock.now)
    schedule.remove(late)  # removed while still waiting for its first moment
    drive(schedule, clock, clock.now + PTIME)
    assert late.sent == [] and schedule.channels == [first]


class LoopRecorder:
    def __init__(self) -> None:
        self.sent = self.processed = 0

    def send_prepared(self, due: float, now: float) -> None:
        self.sent += 1

    def skip(self, ticks: int, late: float) -> None: ...

    def process(self, now: float) -> None:
        self.processed += 1


def test_the_loop_clock_runs_every_channel_each_period_and_stops_when_the_last_leaves():
    clock = MediaClock()
    chans = [LoopRecorder() for _ in range(3)]

    async def main() -> None:
        for ch in chans:
            clock.add(ch)
        await asyncio.sleep(10 * PTIME + PTIME / 2)
        # real time on a shared machine: the exact count is the fake clock's tests' business
        assert all(3 <= ch.sent <= 11 and ch.processed == ch.sent for ch in chans)
        for ch in chans:
            clock.remove(ch)
        sent = [ch.sent for ch in chans]
        await asyncio.sleep(3 * PTIME)
        assert [ch.sent for ch in chans] == sent and clock._timer is None
        assert 3 <= clock.stats["ticks"] <= 11  # the totals outlive the schedule

    asyncio.run(main())


def test_a_stall_longer_than_the_catch_up_counts_every_skipped_packet_as_late_and_lost():
    """The loop blocked for 300 ms (15 ticks): the clock skips the missed ticks rather than
    burst them, and the call's statistics say so: those packets are late (never sent at all)
    and lost.  Before, such a stall left late_5ms at 0.  A real channel, a real peer socket."""
    import socket

    from appliance.media.channel import MediaChannel
    from appliance.media.rtp import RtpPacket

    class Silence:  # the far end of a call that says nothing: the terminal is not under test
        def receive_g711(self, payload: bytes) -> None: ...
        def receive_fillin(self, samples: int) -> None: ...
        def transmit_g711(self, samples: int = 160) -> bytes:
            return b"\xff" * samples

    async def main() -> tuple[MediaChannel, list[RtpPacket], float]:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        ch = await MediaChannel.open_ephemeral("127.0.0.1")
        ch.use_audio(Silence(), 0, peer.getsockname())
        clock = MediaClock()
        loop = asyncio.get_running_loop()
        ch.start_clock(clock)
        started = loop.time()
        await asyncio.sleep(10 * PTIME)
        time.sleep(15 * PTIME)  # the stall: nothing runs on the loop
        await asyncio.sleep(10 * PTIME)
        ch.close()
        elapsed = loop.time() - started
        got = []
        try:
            while True:
                got.append(RtpPacket.parse(peer.recv(2048)))
        except BlockingIOError:
            pass
        peer.close()
        assert clock.stats["skipped"] >= 10
        return ch, got, elapsed

    ch, got, elapsed = asyncio.run(main())
    assert ch.stats["late_5ms"] >= 10, ch.stats  # the skipped ticks' packets: late for ever
    assert ch.stats["max_late_ms"] >= 200.0, ch.stats
    assert len(got) == ch.stats["sent"]
    assert ch.stats["late_5ms"] >= ch.stats["not_sent"] >= 10  # and lost
    # what was sent and what was skipped make up the call's time, and the timestamps show the gap
    assert abs(ch.stats["sent"] + ch.stats["not_sent"] - elapsed / PTIME) <= 2
    span = (got[-1].timestamp - got[0].timestamp) // 160 + 1
    assert span == len(got) + ch.stats["not_sent"]
    assert any(late >= 200.0 for _, late in ch.late_ticks)


def test_a_call_joining_a_slot_before_the_one_the_timer_waits_for_is_sent_on_time():
    """The timer waits for slot 0's next moment; a new call takes slot 1, due 19 ms earlier:
    the timer must be moved forward for it (its first packet went out a period late)."""

    async def main() -> tuple[list[float], MediaClock]:
        clock = MediaClock()
        lates: list[float] = []

        class Late(LoopRecorder):
            def send_prepared(self, due: float, now: float) -> None:
                super().send_prepared(due, now)
                lates.append(now - due)

        first, joining = LoopRecorder(), Late()
        clock.add(first)
        await asyncio.sleep(PTIME + 3 * SLOT_TIME)  # just past slot 0's first moments
        clock.add(joining)
        await asyncio.sleep(2 * PTIME)
        clock.remove(first), clock.remove(joining)
        return lates, clock

    lates, _ = asyncio.run(main())
    assert lates and lates[0] < 0.005, lates
