"""Plain-text modem dialogues (dialogues/*.txt) and a replayer that feeds them to an AtChannel."""
from __future__ import annotations

import random
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


def wire_bytes(turn: Turn, echo: bool = False) -> bytes:
    """What a verbose (ATV1) modem puts on the wire for one turn."""
    out = b""
    if echo and turn.cmd:
        out += turn.cmd.encode() + b"\r"
    for line in turn.lines + turn.unsolicited:
        out += b"\r\n" + line.encode() + b"\r\n"
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
           max_chunk: int = 1) -> tuple[AtChannel, list[tuple[Turn, list[Event]]]]:
    """Send each command, feed the modem's answer, and return the events turn by turn."""
    channel = AtChannel()
    now = 0.0
    results = []
    for turn in load(path):
        if turn.cmd is not None:
            channel.send(turn.cmd, timeout=5.0, now=now)
            sent = channel.data_to_send()
            assert sent == turn.cmd.encode() + b"\r", sent
        feed(channel, wire_bytes(turn, echo), now, rng, max_chunk)
        results.append((turn, drain(channel)))
        now += 0.1
    return channel, results


def expected(turn: Turn) -> list[Event]:
    """The events a turn must produce, written from the fixture alone (the last line is the result)."""
    events: list[Event] = []
    if turn.cmd is not None:
        *info, final = turn.lines
        result, _, detail = final.partition(" ") if final.startswith("CONNECT") else (final, "", "")
        events.append(CommandDone(turn.cmd, result, info, detail, result in ("OK",)))
    events += [Unsolicited(line) for line in turn.unsolicited]
    return events
