"""A modem played from a recorded dialogue on the master side of a real pty.

Each command gets the answer the dialogue recorded for it (the first one, if it was sent twice);
a command the dialogue never saw gets ERROR, which is what a real modem says to a query it does
not know.  Echo is on until ``ATE0``, as after a real reset.
"""
from __future__ import annotations

import asyncio
import os
import pty
import tty
from pathlib import Path

from .dialogue import load


def answers_from(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for turn in load(path):
        if turn.cmd is not None and turn.cmd.upper() not in out:
            out[turn.cmd.upper()] = list(turn.lines)
    return out


class ScriptedModem:
    def __init__(self, answers: dict[str, list[str]], echo: bool = True) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        tty.setraw(self.master)
        self.path = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(self.master, False)
        self.answers = {k.upper(): v for k, v in answers.items()}
        self.echo = echo
        self.commands: list[str] = []
        self._buf = b""
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self._buf += data
        while b"\r" in self._buf:
            raw, _, self._buf = self._buf.partition(b"\r")
            cmd = raw.decode("ascii", "replace").strip()
            if not cmd.upper().startswith("AT"):
                continue
            self.commands.append(cmd)
            out = cmd.encode() + b"\r" if self.echo else b""
            if cmd.upper().startswith("ATE0"):
                self.echo = False
            for line in self.answers.get(cmd.upper(), ["ERROR"]):
                out += b"\r\n" + line.encode() + b"\r\n"
            os.write(self.master, out)

    def unsolicited(self, *lines: str) -> None:
        os.write(self.master, b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines))

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
