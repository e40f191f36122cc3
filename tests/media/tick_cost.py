"""`python -m tests.media.tick_cost`: the CPU one G.711 call's media path spends a tick, in-process
(receive one RTP datagram, send the prepared packet, do the tick's work; a transport that only
counts), against the same terminal work through the Python API (the bare loop's receiving end).
CPU time (``process_time``), so other load on the machine counts less than in wall-clock figures.
A local measuring aid for decision 27, not a test."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from pathlib import Path

from appliance.fax.pages import STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.media.channel import MediaChannel
from appliance.media.rtp import RtpStream
from appliance.spandsp.audio import AudioFaxTerminal

TICKS = 1000  # one 20 s call


class CountingTransport:
    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: object) -> None:
        self.sent += 1

    def close(self) -> None: ...


def one_call(tmp: Path, page: Path) -> tuple[float, float]:
    """(channel CPU s a tick, bare CPU s a tick) over one call."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    ch = MediaChannel(sock, None, payload_type=0, remote=("127.0.0.1", 9))
    ch.transport = CountingTransport()  # type: ignore[assignment]
    peer = AudioFaxTerminal(calling=True, tx_file=page, trace=False)
    ch.use_audio(AudioFaxTerminal(calling=False, rx_file=tmp / "a.tif", trace=False), 0, ("127.0.0.1", 9))
    stream = RtpStream(0)

    async def run() -> float:
        cpu = 0.0
        for i in range(TICKS):
            now = i * 0.02
            data = stream.packet(peer.transmit_g711(160))
            c0 = time.process_time()
            ch.datagram_received(data, ("127.0.0.1", 9))
            ch.send_prepared(now, now)
            ch.process(now)
            cpu += time.process_time() - c0
        return cpu

    cpu = asyncio.run(run())
    ch.close()
    rx = AudioFaxTerminal(calling=False, rx_file=tmp / "b.tif", trace=False)
    tx = AudioFaxTerminal(calling=True, tx_file=page, trace=False)
    bare = 0.0
    for _ in range(TICKS):
        a = tx.transmit_g711(160)
        c0 = time.process_time()
        rx.transmit_g711(160)
        rx.receive_g711(a)
        bare += time.process_time() - c0
    return cpu / TICKS, bare / TICKS


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        page = tmp / "page.tif"
        write_fax_tiff(demo_pages(1, STANDARD), page, STANDARD)
        runs = [one_call(tmp, page) for _ in range(7)]
        cpu = sorted(r[0] for r in runs)[len(runs) // 2]
        bare = sorted(r[1] for r in runs)[len(runs) // 2]
        print(f"one G.711 call's media tick in-process: {cpu * 1e6:.1f} µs CPU (median of {len(runs)} calls); "
              f"bare terminal work {bare * 1e6:.1f} µs; ratio {cpu / bare:.2f}")


if __name__ == "__main__":
    main()
