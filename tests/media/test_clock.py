"""The shared media clock: every channel sends once per tick, and sends go out mid-work when the
DSP work of a tick runs past the next deadline."""

from __future__ import annotations

import asyncio
import time

from appliance.media.clock import PTIME, MediaClock


class Recorder:
    def __init__(self, name: str, log: list, work: float = 0.0, slow_tick: int | None = None) -> None:
        self.name, self.log, self.work, self.slow_tick = name, log, work, slow_tick
        self.sent = self.processed = 0

    def send_prepared(self, due: float, now: float) -> None:
        self.sent += 1
        self.log.append(("send", self.name, self.sent))

    def skip(self, ticks: int) -> None:
        self.log.append(("skip", self.name, ticks))

    def process(self, now: float) -> None:
        self.processed += 1
        self.log.append(("process", self.name, self.processed))
        if self.slow_tick == self.processed:
            time.sleep(self.work)  # a page end: a long C call inside fax_rx


def run(clock: MediaClock, channels: list, seconds: float) -> None:
    async def main() -> None:
        for ch in channels:
            clock.add(ch)
        await asyncio.sleep(seconds)
        for ch in channels:
            clock.remove(ch)

    asyncio.run(main())


def test_every_channel_sends_before_any_processes_each_tick():
    log: list = []
    chans = [Recorder(n, log) for n in "abc"]
    clock = MediaClock()
    run(clock, chans, 10 * PTIME + PTIME / 2)
    first_tick = log[:6]
    assert [e[0] for e in first_tick] == ["send"] * 3 + ["process"] * 3
    assert all(c.sent == c.processed for c in chans)
    assert 8 <= clock.stats["ticks"] <= 11


def test_overrunning_work_triggers_an_early_send_round_between_channels():
    log: list = []
    slow = Recorder("slow", log, work=PTIME * 1.5, slow_tick=3)
    after = Recorder("after", log)
    clock = MediaClock()
    run(clock, [slow, after], 12 * PTIME)
    assert clock.stats["early_rounds"] >= 1
    # the round sent during the overrun comes between the slow channel's work and the next one's
    i = log.index(("process", "slow", 3))
    assert log[i + 1][0] == "send" and log[i + 2][0] == "send"
    assert log[i + 3] == ("process", "after", 3)
    assert slow.sent == after.sent  # nobody skipped a packet


def test_clock_stops_when_the_last_channel_leaves():
    clock = MediaClock()
    ch = Recorder("x", [])

    async def main() -> None:
        clock.add(ch)
        await asyncio.sleep(3 * PTIME)
        clock.remove(ch)
        sent = ch.sent
        await asyncio.sleep(3 * PTIME)
        assert ch.sent == sent and clock._timer is None

    asyncio.run(main())
