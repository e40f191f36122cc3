"""Plain-text modem dialogues (dialogues/*.txt) and a replayer that feeds them to an AtChannel."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from appliance.modem.at import AtChannel, CommandDone, Event, Unsolicited

DIALOGUES = Path(__file__).parent / "dialogues"


@dataclass
class Turn:
    cmd: str | None  # None: lines that arrive with no command
    lines: list[str] = field(default_factory=list)
    unsolicited: list[str] = field(default_factory=list)


def load(path: Path) -> list[Turn]:
    turns: list[Turn] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("> "):
            turns.append(Turn(line[2:]))
        elif line.startswith("<! "):
            if not turns:
                turns.append(Turn(None))
            turns[-1].unsolicited.append(line[3:])
        elif line.startswith("< "):
            if not turns or turns[-1].cmd is None or turns[-1].unsolicited:
                raise ValueError(f"{path.name}:{number}: a response with no command before it")
            turns[-1].lines.append(line[2:])
        else:
            raise ValueError(f"{path.name}:{number}: not a dialogue line: {raw!r}")
    return turns


#: V.250 numeric codes, written out independently of the code under test
NUMERIC = {"OK": "0", "CONNECT": "1", "RING": "2", "NO CARRIER": "3", "ERROR": "4",
           "NO DIALTONE": "6", "BUSY": "7", "NO ANSWER": "8"}


def wire_bytes(turn: Turn, echo: bool = False, numeric: bool = False) -> bytes:
    """What a modem puts on the wire for one turn: ATV1 framing, or ATV0 (codes end in CR alone)."""
    out = b""
    if echo and turn.cmd:
        out += turn.cmd.encode() + b"\r"
    finals = {len(turn.lines) - 1} if turn.cmd else set()
    for n, line in enumerate(turn.lines + turn.unsolicited):
        if not numeric:
            out += b"\r\n" + line.encode() + b"\r\n"
        elif n in finals or line == "RING":
            out += NUMERIC[line].encode() + b"\r"
        else:
            out += line.encode() + b"\r\n"
    return out


def feed(channel: AtChannel, data: bytes, now: float, rng: random.Random | None,
         max_chunk: int = 1) -> None:
    """Feed ``data`` in chunks of 1..max_chunk bytes (random sizes with an rng)."""
    i = 0
    while i < len(data):
        size = rng.randint(1, max_chunk) if rng else max_chunk
        channel.receive(data[i:i + size], now)
        i += size


def drain(channel: AtChannel) -> list[Event]:
    events = []
    while (event := channel.next_event()) is not None:
        events.append(event)
    return events


def replay(path: Path, echo: bool = False, rng: random.Random | None = None,
           max_chunk: int = 1, numeric: bool = False) -> tuple[AtChannel, list[tuple[Turn, list[Event]]]]:
    """Send each command, feed the modem's answer, and return the events turn by turn.

    With ``numeric`` the channel is switched with ATV0 first, and turns that would switch a
    real modem back to verbose (ATZ, AT&F, V1) are left out.
    """
    channel = AtChannel()
    now = 0.0
    results = []
    turns = load(path)
    if numeric:
        channel.send("ATV0", 5.0, now=now)
        channel.receive(b"ATV0\r0\r", now)
        channel.handle_timer(now + 0.06)
        assert drain(channel) == [CommandDone("ATV0", "OK", [])] and channel.numeric
        channel.data_to_send()
        turns = [t for t in turns if not (t.cmd and re.search(r"Z|&F|V1", t.cmd.upper()))]
    for turn in turns:
        if turn.cmd is not None:
            channel.send(turn.cmd, timeout=5.0, now=now)
            sent = channel.data_to_send()
            assert sent == turn.cmd.encode() + b"\r", sent
        feed(channel, wire_bytes(turn, echo, numeric), now, rng, max_chunk)
        if numeric:
            channel.handle_timer(now + 0.06)  # nothing follows the last code: let it settle
        results.append((turn, drain(channel)))
        now += 0.1
    return channel, results


def replay_queued(path: Path, rng: random.Random, echo: bool = False) -> tuple[AtChannel, list[Event], list[Event]]:
    """Queue every command first, then feed the whole transcript as one stream in random chunks."""
    channel = AtChannel()
    turns = load(path)
    for turn in turns:
        if turn.cmd is not None:
            channel.send(turn.cmd, timeout=5.0, now=0.0)
    stream = b"".join(wire_bytes(t, echo) for t in turns)
    written = bytearray()
    i = 0
    while i < len(stream):
        written += channel.data_to_send()
        size = rng.randint(1, 23)
        channel.receive(stream[i:i + size], 0.0)
        i += size
    written += channel.data_to_send()
    assert bytes(written) == b"".join(t.cmd.encode() + b"\r" for t in turns if t.cmd), written
    want = [e for t in turns for e in expected(t)]
    return channel, drain(channel), want


def expected(turn: Turn) -> list[Event]:
    """The events a turn must produce, written from the fixture alone (the last line is the result)."""
    events: list[Event] = []
    if turn.cmd is not None:
        *info, final = turn.lines
        result, _, detail = final.partition(" ") if final.startswith("CONNECT") else (final, "", "")
        events.append(CommandDone(turn.cmd, result, info, detail, result in ("OK",)))
    events += [Unsolicited(line) for line in turn.unsolicited]
    return events
