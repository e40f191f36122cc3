"""One call's RTP socket on the event loop, feeding a fax terminal in real time.

On every tick of the shared media clock the channel sends the packet it prepared, then hands the
terminal what the playout buffer says is due and prepares the next packet.  The
socket is symmetric: once the peer's packets arrive we answer to where they come from, whatever
the SDP said (NAT, gateways that send from another port).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import Protocol

from .clock import LOOKAHEAD, MediaClock
from .rtp import PlayoutBuffer, RtpError, RtpPacket, RtpStream

log = logging.getLogger("faxbridge.media")

SAMPLES = 160


class AudioTerminal(Protocol):
    def receive_g711(self, payload: bytes) -> None: ...
    def receive_fillin(self, samples: int) -> None: ...
    def transmit_g711(self, samples: int = 160) -> bytes: ...


class PortAllocator:
    """Hands out even UDP ports from the configured range, round robin, skipping ports in use."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first + (first & 1), last
        self._next = self.first
        self.in_use: set[int] = set()

    def bind(self, host: str) -> socket.socket:
        span = (self.last - self.first) // 2 + 1
        for _ in range(span):
            port = self._next
            self._next = self.first if port + 2 > self.last else port + 2
            if port in self.in_use:
                continue
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self.in_use.add(port)
            return sock
        raise OSError(f"no free RTP port in {self.first}-{self.last}")

    def release(self, port: int) -> None:
        self.in_use.discard(port)


class AudioChannel(asyncio.DatagramProtocol):
    """RTP for one call.  ``start()`` begins the 20 ms clock; ``close()`` stops it and frees the port."""

    def __init__(self, sock: socket.socket, allocator: PortAllocator | None, *, payload_type: int,
                 remote: tuple[str, int] | None, delay: float = 0.06) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.local_host = sock.getsockname()[0]
        self._allocator = allocator
        self.remote = remote
        self.latched = False
        self.playout = PlayoutBuffer(payload_type, delay)
        self.stream = RtpStream(payload_type)
        self.terminal: AudioTerminal | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self._clock: MediaClock | None = None
        self._prepared: collections.deque[bytes] = collections.deque()
        self._start = 0.0
        self.late_ticks: list[tuple[float, float]] = []
        self.stats = {"sent": 0, "bad": 0, "max_late_ms": 0.0, "late_5ms": 0, "from_stranger": 0}

    @classmethod
    async def open(cls, allocator: PortAllocator, host: str, **kwargs: object) -> "AudioChannel":
        sock = allocator.bind(host)
        loop = asyncio.get_running_loop()
        channel = cls(sock, allocator, **kwargs)  # type: ignore[arg-type]
        await loop.create_datagram_endpoint(lambda: channel, sock=sock)
        return channel

    @classmethod
    async def open_ephemeral(cls, host: str, payload_type: int = 0, delay: float = 0.06) -> "AudioChannel":
        """A channel on a port the kernel picks (the test-fax sender has no configured range)."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        channel = cls(sock, None, payload_type=payload_type, remote=None, delay=delay)
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: channel, sock=sock)
        return channel

    # -- asyncio.DatagramProtocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.latched:
            if self.remote is not None and addr[0] != self.remote[0]:
                self.stats["from_stranger"] += 1  # not the peer the SDP named: ignore, do not latch
                return
            self.remote, self.latched = (addr[0], addr[1]), True
        elif addr[:2] != self.remote:
            self.stats["from_stranger"] += 1
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.stats["bad"] += 1
            return
        self.playout.put(packet, asyncio.get_running_loop().time())

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket %s: %s", self.port, exc)

    # -- the clock ---------------------------------------------------------------------------
    def start(self, terminal: AudioTerminal, clock: MediaClock) -> None:
        """Join the shared 20 ms clock: from now on audio flows both ways."""
        self.terminal = terminal
        self._clock = clock
        self._start = asyncio.get_running_loop().time()
        self._prepared.extend(terminal.transmit_g711(SAMPLES) for _ in range(LOOKAHEAD))
        clock.add(self)

    def send_prepared(self, due: float, now: float) -> None:
        """Send the oldest prepared packet; the clock calls this at (or as near as it can to) ``due``."""
        late = (now - due) * 1000.0
        if late > self.stats["max_late_ms"]:
            self.stats["max_late_ms"] = late
        if late > 5.0:
            self.stats["late_5ms"] += 1
            if len(self.late_ticks) < 20:  # when in the call it happened: diagnostics for the trace
                self.late_ticks.append((round(now - self._start, 3), round(late, 1)))
        if self._prepared:
            payload = self._prepared.popleft()
        elif self.terminal is not None:  # ran dry (cannot happen with LOOKAHEAD >= 2): make it now
            payload = self.terminal.transmit_g711(SAMPLES)
        else:
            return
        if self.remote is not None and self.transport is not None:
            self.transport.sendto(self.stream.packet(payload), self.remote)
            self.stats["sent"] += 1

    def process(self, now: float) -> None:
        """The DSP work of one tick: due audio into the terminal, then top up the prepared packets."""
        terminal = self.terminal
        if terminal is None:
            return
        for item in self.playout.pull(now):
            if isinstance(item, int):
                terminal.receive_fillin(item)
            else:
                terminal.receive_g711(item)
        while len(self._prepared) < LOOKAHEAD:
            self._prepared.append(terminal.transmit_g711(SAMPLES))

    def close(self) -> None:
        if self._clock is not None:
            self._clock.remove(self)
            self._clock = None
        self.terminal = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        else:
            self.sock.close()
        if self._allocator is not None:
            self._allocator.release(self.port)
            self._allocator = None
