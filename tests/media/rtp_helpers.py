"""Test helpers for G.711 over RTP: the recorded carrier fax, and the appliance's real-time
receive path driven by a simulated clock (deterministic, whatever the machine's load)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from udptl_helpers import FIXTURES, read_pcap_udp

from appliance.media.channel import MediaChannel
from appliance.media.clock import PTIME
from appliance.media.rtp import PT_PCMA, RtpPacket
from appliance.spandsp.audio import AudioFaxTerminal
from tests.provided import require

CARRIER_PCAP = FIXTURES / "pcaps" / "carrier-g711-alaw-sender.pcap"


def carrier_rtp() -> list[tuple[float, RtpPacket]]:
    """The carrier's A-law RTP (shared/fixtures/pcaps/README.md) as (seconds since its first
    packet, packet) in arrival order, or skip when the fixture is not checked out."""
    require(CARRIER_PCAP.exists(), f"recorded call not available: {CARRIER_PCAP} (../shared beside the checkout)")
    datagrams = read_pcap_udp(CARRIER_PCAP)
    return [(d.time - datagrams[0].time, RtpPacket.parse(d.payload)) for d in datagrams]


@dataclass
class Heard:
    """An answering AudioFaxTerminal that also records what reached it."""

    terminal: AudioFaxTerminal
    audio: bytearray = field(default_factory=bytearray)
    fillins: list[tuple[int, int]] = field(default_factory=list)  # (audio bytes before it, samples)

    def receive_g711(self, payload: bytes) -> None:
        self.audio += payload
        self.terminal.receive_g711(payload)

    def receive_fillin(self, samples: int) -> None:
        self.fillins.append((len(self.audio), samples))
        self.terminal.receive_fillin(samples)

    def transmit_g711(self, samples: int = 160) -> bytes:
        return self.terminal.transmit_g711(samples)


def replay_real_time(packets: list[tuple[float, RtpPacket]], rx_file: Path, *, answer_lead: float,
                     delay: float = 0.06, tail: float = 8.0) -> Heard:
    """The appliance's receive path on a simulated clock: a MediaChannel (its playout buffer and
    its per-tick work, exactly as MediaClock drives it) answers ``answer_lead`` seconds before
    the first packet; each packet is put at its capture time, every 20 ms tick sends and then
    processes.  Runs until ``tail`` seconds after the last packet."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))  # never used for I/O here: the channel wants its socket
    channel = MediaChannel(sock, None, payload_type=PT_PCMA, remote=None, delay=delay)
    heard = Heard(AudioFaxTerminal(calling=False, codec="PCMA", ident="+1 555 1000", rx_file=rx_file))
    channel.use_audio(heard, PT_PCMA, ("127.0.0.1", 9))  # no transport: nothing is sent
    i, tick = 0, 0
    end = packets[-1][0] + tail
    try:
        while (now := -answer_lead + tick * PTIME) <= end:
            while i < len(packets) and packets[i][0] <= now:
                channel.playout.put(packets[i][1], packets[i][0])
                i += 1
            channel.send_prepared(now, now)
            channel.process(now)
            tick += 1
    finally:
        channel.close()
    return heard


def replay_offline(packets: list[tuple[float, RtpPacket]], rx_file: Path, *, answer_lead: float,
                   tail: float = 8.0) -> AudioFaxTerminal:
    """The reference: every packet into the terminal in arrival order, one per 20 ms of its own
    transmit clock, after ``answer_lead`` seconds of fill-in (no playout buffer, no clock)."""
    terminal = AudioFaxTerminal(calling=False, codec="PCMA", ident="+1 555 1000", rx_file=rx_file)
    for _ in range(round(answer_lead / PTIME)):
        terminal.transmit_g711()
        terminal.receive_fillin(160)
    for _, packet in packets:
        terminal.transmit_g711()
        terminal.receive_g711(packet.payload)
    for _ in range(round(tail / PTIME)):
        terminal.transmit_g711()
        terminal.receive_fillin(160)
    return terminal
