"""Resident memory of a process and its children, from /proc (RSS; PSS where the kernel has it).

PSS shares each page among the processes that map it, so the daemon and the web UI together
are not charged twice for the interpreter and libraries they share; RSS counts those twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Memory:
    rss: int  # bytes
    pss: int | None  # bytes; None when smaps_rollup is missing


def _field_kb(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return None


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the daemon's web UI child), found by scanning /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return found


def of_tree(pid: int) -> Memory:
    """RSS and PSS of ``pid`` and all its descendants together."""
    rss, pss, have_pss = 0, 0, True
    for p in [pid] + children(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        rss += (_field_kb(status, "VmRSS") or 0) * 1024
        try:
            pss += (_field_kb(Path(f"/proc/{p}/smaps_rollup").read_text(), "Pss") or 0) * 1024
        except OSError:
            have_pss = False
    return Memory(rss, pss if have_pss else None)


def rss(pid: int) -> int:
    """RSS of one process in bytes (0 once it is gone)."""
    try:
        return (_field_kb(Path(f"/proc/{pid}/status").read_text(), "VmRSS") or 0) * 1024
    except OSError:
        return 0


class PeakSampler:
    """The highest RSS of one process while a block runs, sampled every ``period`` s in a thread."""

    def __init__(self, pid: int, period: float = 0.25) -> None:
        self.pid, self.period, self.peak = pid, period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            self._stop.wait(self.period)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))
