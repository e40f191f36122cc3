"""One call's media socket on the event loop, feeding a fax terminal in real time.

The socket carries RTP (G.711 audio) or UDPTL (T.38), and both at once while a call switches:
packets are told apart by content, as the HT801 and Cisco CUBE make necessary (same port for
both, T.38 sent before the 200 OK).  On every tick of the shared media clock the channel sends
what it prepared, then hands the terminal what is due and prepares the next packets.  The
socket is symmetric: once the peer's packets arrive we answer to where they come from, whatever
the SDP said (NAT, gateways that send from another port).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import Protocol, cast

from appliance.media.capture import MediaCapture
from appliance.media.clock import LOOKAHEAD, MediaClock
from appliance.media.rtp import PlayoutBuffer, RtpError, RtpPacket, RtpStream
from appliance.media.udptl import UdptlReceiver, UdptlSender

log = logging.getLogger("faxbridge.media")

SAMPLES = 160


class AudioTerminal(Protocol):
    def receive_g711(self, payload: bytes) -> None: ...
    def receive_fillin(self, samples: int) -> None: ...
    def transmit_g711(self, samples: int = 160) -> bytes: ...


class RtpTickTerminal(AudioTerminal, Protocol):
    """An audio terminal that does a whole tick in one C call (``AudioFaxTerminal``): feed what is
    due, make the next RTP packet.  Channels use it when the terminal has it."""

    def rtp_tick(self, due: bytes | int | None, header: tuple[int, int, int, int], samples: int = 160) -> bytes: ...


class T38Terminal(Protocol):
    def receive_ifp(self, seq: int, ifp: bytes) -> None: ...
    def advance(self, samples: int) -> None: ...
    def packets_to_send(self) -> list[tuple[bytes, int]]: ...


#: UDPTL packets kept while the call is still in audio (T.38 may start before the 200 OK)
EARLY_UDPTL_LIMIT = 200


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


class MediaChannel(asyncio.DatagramProtocol):
    """Media for one call.  ``start()`` joins the 20 ms clock; ``use_t38()`` switches to T.38;
    ``close()`` stops it and frees the port."""

    def __init__(
        self,
        sock: socket.socket,
        allocator: PortAllocator | None,
        *,
        payload_type: int,
        remote: tuple[str, int] | None,
        delay: float = 0.06,
    ) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.local_host = sock.getsockname()[0]
        self._allocator = allocator
        self.remote = remote
        self.latched = False
        self.playout = PlayoutBuffer(payload_type, delay)
        self.stream = RtpStream(payload_type)
        self.terminal: AudioTerminal | T38Terminal | None = None
        self.mode = "audio"
        self.udptl_rx = UdptlReceiver()
        self.udptl_tx: UdptlSender | None = None
        self._ifps: collections.deque[tuple[int, bytes]] = collections.deque()
        self.udptl_seen_at: float | None = None
        self._t38_out: list[bytes] = []
        #: share of outgoing packets dropped on purpose (test senders only)
        self.send_loss = 0.0
        self._loss_rng = random.Random(self.port)
        self.transport: asyncio.DatagramTransport | None = None
        self._clock: MediaClock | None = None
        #: our next RTP packets, made ahead (audio mode); their headers are stamped when made
        self._prepared: collections.deque[bytes] = collections.deque()
        self._rtp_tick: Callable[[bytes | int | None, tuple[int, int, int, int]], bytes] | None = None
        self._time: Callable[[], float] = time.monotonic
        self._start = 0.0
        self.late_ticks: list[tuple[float, float]] = []
        #: late_5ms counts packets sent more than 5 ms late and those never sent (not_sent: the
        #: clock skipped their ticks after a stall)
        self.stats = {
            "sent": 0,
            "bad": 0,
            "max_late_ms": 0.0,
            "late_5ms": 0,
            "not_sent": 0,
            "from_stranger": 0,
            "rtp_in_t38": 0,
            "dropped_on_purpose": 0,
        }
        #: the call's datagrams as a pcap, when the owner switched capture on for its peer
        self.capture: MediaCapture | None = None

    @classmethod
    async def open(
        cls,
        allocator: PortAllocator,
        host: str,
        *,
        payload_type: int,
        remote: tuple[str, int] | None,
        delay: float = 0.06,
    ) -> MediaChannel:
        sock = allocator.bind(host)
        loop = asyncio.get_running_loop()
        channel = cls(sock, allocator, payload_type=payload_type, remote=remote, delay=delay)
        await loop.create_datagram_endpoint(lambda: channel, sock=sock)
        return channel

    @classmethod
    async def open_ephemeral(cls, host: str, payload_type: int = 0, delay: float = 0.06) -> MediaChannel:
        """A channel on a port the kernel picks (the test-fax sender has no configured range)."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.setblocking(False)
        channel = cls(sock, None, payload_type=payload_type, remote=None, delay=delay)
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: channel, sock=sock)
        return channel

    # -- asyncio.DatagramProtocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a datagram endpoint's transport, as create_datagram_endpoint made it
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._time = asyncio.get_running_loop().time

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.latched:
            if self.remote is not None and addr[0] != self.remote[0]:
                self.stats["from_stranger"] += 1  # not the peer the SDP named: ignore, do not latch
                return
            self.remote, self.latched = (addr[0], addr[1]), True
        elif self.remote is None or addr[0] != self.remote[0] or addr[1] != self.remote[1]:
            self.stats["from_stranger"] += 1
            return
        if self.capture is not None:
            self.capture.received(data, self.remote, time.time())
        if len(data) >= 12 and data[0] >> 6 == 2:  # looks_like_rtp, inline: every datagram passes here
            if self.mode != "audio":
                self.stats["rtp_in_t38"] += 1  # the peer's audio still trickling after the switch
                return
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                self.stats["bad"] += 1
                return
            self.playout.put(packet, self._time())
            return
        ifps = self.udptl_rx.receive(data)  # never raises: malformed datagrams are counted
        if ifps and self.udptl_seen_at is None:
            self.udptl_seen_at = asyncio.get_running_loop().time()
        self._ifps.extend(ifps)
        while self.mode == "audio" and len(self._ifps) > EARLY_UDPTL_LIMIT:
            self._ifps.popleft()

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket %s: %s", self.port, exc)

    # -- the clock ---------------------------------------------------------------------------
    def start(self, terminal: AudioTerminal, clock: MediaClock) -> None:
        """Join the shared 20 ms clock with an audio terminal: from now on audio flows both ways."""
        self.terminal = terminal
        self._prepare_audio()
        self.start_clock(clock)

    def start_clock(self, clock: MediaClock) -> None:
        """Join the shared 20 ms clock with the terminal set by ``use_audio``/``use_t38``."""
        self._clock = clock
        self._start = asyncio.get_running_loop().time()
        clock.add(self)

    def use_audio(self, terminal: AudioTerminal, payload_type: int, remote: tuple[str, int]) -> None:
        """Switch (back) to G.711 with a fresh terminal, e.g. when the peer refuses T.38 late."""
        self.mode, self.terminal = "audio", terminal
        self.playout = PlayoutBuffer(payload_type, self.playout.delay)
        self.stream = RtpStream(payload_type)
        self._retarget(remote)
        self._prepare_audio()

    def _prepare_audio(self) -> None:
        """A fresh audio terminal (or stream): make the packets that go out first."""
        self._rtp_tick = getattr(self.terminal, "rtp_tick", None)
        self._prepared.clear()
        self._prepared.extend(self._make_packet(None) for _ in range(LOOKAHEAD))

    def _make_packet(self, due: bytes | int | None) -> bytes:
        """Feed the terminal what is due (audio or a fill-in count) and make our next RTP packet."""
        if self._rtp_tick is not None:
            return self._rtp_tick(due, self.stream.next_header(SAMPLES))
        if due is not None:
            self._feed(due)
        return self.stream.packet(self._audio_terminal().transmit_g711(SAMPLES))

    def _audio_terminal(self) -> AudioTerminal:
        """In audio mode the terminal is the one start()/use_audio() gave: an AudioTerminal."""
        return cast(AudioTerminal, self.terminal)

    def _feed(self, due: bytes | int) -> None:
        if isinstance(due, int):
            self._audio_terminal().receive_fillin(due)
        else:
            self._audio_terminal().receive_g711(due)

    def start_capture(self, max_bytes: int | None = None) -> MediaCapture:
        """Keep this call's datagrams from now on (the peer's capture setting is on)."""
        self.capture = MediaCapture((self.local_host, self.port), *([max_bytes] if max_bytes else []))
        return self.capture

    def use_t38(self, terminal: T38Terminal, remote: tuple[str, int], far_max_datagram: int) -> None:
        """Switch to T.38: from the next tick IFPs go to ``terminal`` and its packets go out as UDPTL."""
        self.mode, self.terminal = "t38", terminal
        self.udptl_tx = UdptlSender(far_max_datagram=far_max_datagram)
        self._retarget(remote)
        self._prepared.clear()
        self._rtp_tick = None

    def _retarget(self, remote: tuple[str, int]) -> None:
        if remote != self.remote:
            self.remote, self.latched = remote, False

    def send_prepared(self, due: float, now: float) -> None:
        """Send what was prepared for this tick; the clock calls this at (or near) ``due``."""
        late_ms = (now - due) * 1000.0
        if late_ms > self.stats["max_late_ms"] or late_ms > 5.0:
            self._count_late(late_ms, 1, now)
        if self.mode == "t38":
            datagrams, self._t38_out = self._t38_out, []
            for data in datagrams:
                self._send(data)
            return
        if self._prepared:
            packet = self._prepared.popleft()
        elif self.terminal is not None:  # ran dry (cannot happen with LOOKAHEAD >= 2): make it now
            packet = self._make_packet(None)
        else:
            return
        self._send(packet)

    def _count_late(self, late_ms: float, packets: int, now: float) -> None:
        if late_ms > self.stats["max_late_ms"]:
            self.stats["max_late_ms"] = late_ms
        if late_ms > 5.0:
            self.stats["late_5ms"] += packets
            if len(self.late_ticks) < 20:  # when in the call it happened: diagnostics for the trace
                self.late_ticks.append((round(now - self._start, 3), round(late_ms, 1)))

    def skip(self, ticks: int, late: float) -> None:
        """The clock skipped ``ticks`` periods, the first ``late`` seconds overdue: their packets
        are never sent, so they count as late and not sent; the RTP timestamps show the gap."""
        if self.mode == "audio":  # T.38 sends what it queued at the next tick: late, not lost
            self.stats["not_sent"] += ticks
        self._count_late(late * 1000.0, ticks, asyncio.get_running_loop().time())
        self.stream.skip(ticks * SAMPLES)
        # the packets made ahead were stamped before the gap: they go out after it
        self._prepared = collections.deque(RtpStream.restamp(p, ticks * SAMPLES) for p in self._prepared)

    def _send(self, data: bytes) -> None:
        if self.send_loss and self._loss_rng.random() < self.send_loss:
            self.stats["dropped_on_purpose"] += 1  # `send-test-fax --loss`: exercise the far end
            return
        if self.remote is not None and self.transport is not None:
            self.transport.sendto(data, self.remote)
            self.stats["sent"] += 1
            if self.capture is not None:
                self.capture.sent(data, self.remote, time.time())

    def process(self, now: float) -> None:
        """The DSP work of one tick."""
        terminal = self.terminal
        if terminal is None:
            return
        if self.mode == "t38":
            assert self.udptl_tx is not None
            t38 = cast(T38Terminal, terminal)  # use_t38() set it: in T.38 mode it is a T38Terminal
            while self._ifps:
                t38.receive_ifp(*self._ifps.popleft())
            t38.advance(SAMPLES)
            for ifp, count in t38.packets_to_send():
                data = self.udptl_tx.packet(ifp)
                # spandsp asks for repeats of key packets: same datagram (same seq), dropped as a dup
                self._t38_out.extend([data] * min(count, 4))
            return
        due = self.playout.pull(now)
        prepared = self._prepared
        if len(prepared) >= LOOKAHEAD:  # nothing sent since the last work: only feed
            for item in due:
                self._feed(item)
            return
        # usually one item (a packet's audio, or fill-in) and one packet to make: one C call
        last = due.pop() if due else None
        for item in due:
            self._feed(item)
        prepared.append(self._make_packet(last))
        while len(prepared) < LOOKAHEAD:
            prepared.append(self._make_packet(None))

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
