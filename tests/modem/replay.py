"""Byte-exact modem dialogues: record what crossed a serial port, replay the modem's side on a pty.

A recording is a list of ``(">", bytes)`` (DTE to modem) and ``("<", bytes)`` (modem to DTE)
chunks taken at the serial boundary of a :class:`ModemPort`.  :class:`ReplayModem` plays the
modem: it waits until the DTE has written exactly what the recording says it wrote (chunking may
differ, the bytes may not), then writes the modem's recorded answer.  A driver that sends one
byte differently fails with the offset and both versions.

Recordings live in ``dialogues/*.json.gz``; ``python -m tests.modem.record_class1`` makes them.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import pty
import select
import threading
import time
import tty
from pathlib import Path
from typing import Iterable

from appliance.modem.serial_port import ModemPort

Chunk = tuple[str, bytes]


def record(port: ModemPort) -> list[Chunk]:
    """Start recording everything ``port`` reads and writes; returns the live list."""
    chunks: list[Chunk] = []
    channel = port.channel
    receive, data_to_send = channel.receive, channel.data_to_send

    def rec_receive(data: bytes, now: float) -> None:
        chunks.append(("<", bytes(data)))
        receive(data, now)

    def rec_data_to_send() -> bytes:
        out = data_to_send()
        if out:
            chunks.append((">", out))
        return out

    channel.receive = rec_receive  # type: ignore[method-assign]
    channel.data_to_send = rec_data_to_send  # type: ignore[method-assign]
    return chunks


def merge(chunks: Iterable[Chunk]) -> list[Chunk]:
    """Join consecutive chunks of one direction: the boundaries are the OS's, not the protocol's."""
    out: list[Chunk] = []
    for d, data in chunks:
        if out and out[-1][0] == d:
            out[-1] = (d, out[-1][1] + data)
        else:
            out.append((d, data))
    return out


def save(chunks: list[Chunk], path: Path, note: str) -> None:
    doc = {"note": note, "chunks": [[d, base64.b64encode(b).decode()] for d, b in merge(chunks)]}
    with gzip.open(path, "wt") as f:
        json.dump(doc, f)


def load(path: Path) -> list[Chunk]:
    with gzip.open(path, "rt") as f:
        doc = json.load(f)
    return [(d, base64.b64decode(b)) for d, b in doc["chunks"]]


class ReplayModem:
    """The modem side of a recording, behind a pty symlinked at ``link``."""

    def __init__(self, chunks: list[Chunk], link: Path) -> None:
        self.script = merge(chunks)
        self.link = link
        self.master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        # the DTE opens it by name; holding the slave open too keeps the master from reading EIO
        # before the DTE has opened it
        link.symlink_to(os.ttyname(self._slave))
        self.error: str | None = None
        self.position = 0  # script index reached
        #: (seconds from our last answer to the DTE's complete next write, that write): the
        #: driver's reaction times, for the benchmark
        self.turns: list[tuple[float, bytes]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        got = b""
        answered = time.perf_counter()
        try:
            for i, (direction, data) in enumerate(self.script):
                self.position = i
                if direction == "<":
                    os.write(self.master, data)
                    answered = time.perf_counter()
                    continue
                while len(got) < len(data) and not self._stop:
                    r, _, _ = select.select([self.master], [], [], 0.1)
                    if r:
                        try:
                            got += os.read(self.master, 65536)
                        except OSError:
                            self.error = f"chunk {i}: the DTE closed the port"
                            return
                if self._stop:
                    return
                mine, got = got[:len(data)], got[len(data):]
                self.turns.append((time.perf_counter() - answered, data[:24]))
                if mine != data:
                    at = next(k for k, (x, y) in enumerate(zip(mine, data)) if x != y)
                    self.error = (f"chunk {i}, byte {at}: the driver wrote {mine[max(0, at - 20):at + 40]!r}, "
                                  f"the recording has {data[max(0, at - 20):at + 40]!r}")
                    return
            self.position = len(self.script)
        except Exception as e:  # report, never hang the test
            self.error = f"replay failed: {e!r}"

    @property
    def finished(self) -> bool:
        return self.position >= len(self.script)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        os.close(self.master)
        os.close(self._slave)
        self.link.unlink(missing_ok=True)


def wait(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()
