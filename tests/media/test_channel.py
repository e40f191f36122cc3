"""The media channel over a real loopback socket: RTP and UDPTL on one port, told apart by content."""

from __future__ import annotations

import asyncio
import socket

from appliance.media.channel import MediaChannel
from appliance.media.clock import MediaClock
from appliance.media.rtp import RtpPacket
from appliance.media.udptl import UdptlPacket, encode
from tests.budgets import async_wait_until


class AudioSink:
    def __init__(self) -> None:
        self.audio: list[bytes] = []

    def receive_g711(self, payload: bytes) -> None:
        self.audio.append(payload)

    def receive_fillin(self, samples: int) -> None:
        pass

    def transmit_g711(self, samples: int = 160) -> bytes:
        return b"\xff" * samples


class T38Sink:
    def __init__(self) -> None:
        self.ifps: list[tuple[int, bytes]] = []
        self.out = [(b"\x06", 3)]  # one indicator spandsp wants sent three times

    def receive_ifp(self, seq: int, ifp: bytes) -> None:
        self.ifps.append((seq, ifp))

    def advance(self, samples: int) -> None:
        pass

    def packets_to_send(self) -> list[tuple[bytes, int]]:
        out, self.out = self.out, []
        return out


def test_rtp_and_udptl_on_one_port_then_switch_to_t38():
    async def main() -> None:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        ch = await MediaChannel.open_ephemeral("127.0.0.1", delay=0.02)
        audio, t38 = AudioSink(), T38Sink()
        ch.use_audio(audio, 0, peer.getsockname())
        ch.start_clock(MediaClock())
        dest = ("127.0.0.1", ch.port)
        for i in range(5):  # G.711 with a CN packet and a Cisco NSE among it, and early T.38
            peer.sendto(RtpPacket(0, i, i * 160, 7, bytes([i]) * 160).build(), dest)
        peer.sendto(RtpPacket(13, 99, 0, 7, b"\x40").build(), dest)
        peer.sendto(RtpPacket(100, 98, 0, 7, b"\x00" * 4).build(), dest)
        peer.sendto(encode(UdptlPacket(0, b"\x00")), dest)  # UDPTL before the switch is kept
        peer.sendto(b"\x80\x00", dest)  # neither: counted, ignored
        # the channel reads a datagram a loop turn and plays out on clock ticks: wait for the
        # outcome rather than a fixed time a stall can eat
        await async_wait_until(lambda: len(b"".join(audio.audio)) >= 5 * 160 and ch.stats["sent"] >= 5
                               and ch.playout.stats["ignored_pt"] == 2, "five frames played out, five sent")
        assert b"".join(audio.audio).startswith(b"".join(bytes([i]) * 160 for i in range(5)))
        assert ch.playout.stats["ignored_pt"] == 2
        got_rtp = 0
        try:
            while peer.recv(2048)[0] >> 6 == 2:
                got_rtp += 1
        except BlockingIOError:
            pass
        assert got_rtp >= 5  # our own audio, sent to where the peer's packets come from
        ch.use_t38(t38, peer.getsockname(), far_max_datagram=400)
        peer.sendto(encode(UdptlPacket(2, b"\x06\x00", (b"\x01",))), dest)  # seq 1 recovered
        peer.sendto(RtpPacket(0, 6, 960, 7, b"\x07" * 160).build(), dest)  # late RTP: ignored now
        datagrams: list[bytes] = []

        def t38_done() -> bool:
            try:
                while True:
                    d = peer.recv(2048)
                    if d[0] >> 6 != 2:
                        datagrams.append(d)
            except BlockingIOError:
                pass
            return len(t38.ifps) >= 3 and ch.stats["rtp_in_t38"] >= 1 and len(datagrams) >= 3

        await async_wait_until(t38_done, "three IFPs in, the indicator out")
        await asyncio.sleep(0.1)  # a fourth copy would follow at once
        t38_done()
        assert t38.ifps == [(0, b"\x00"), (1, b"\x01"), (2, b"\x06\x00")]
        assert len(datagrams) == 3 and len(set(datagrams)) == 1  # the repeats: one seq, three copies
        ch.close()
        peer.close()

    asyncio.run(main())
