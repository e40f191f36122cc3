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

    def skip(self, ticks: int, late: float) -> None:
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
