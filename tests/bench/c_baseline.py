"""`make bench`'s true C baseline: spandsp's own fax-to-fax loop (``fax_loop.c``), built here.

The bench compiles ``fax_loop.c`` with the system's gcc against libspandsp-dev and runs it on
the same page the Python loop sends, so the binding's own cost shows as a ratio (binding/C).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("fax_loop.c")


@dataclass
class LoopRun:
    """One fax through a back-to-back loop: CPU of the receiving end, of both ends, simulated call s."""

    rx_cpu: float
    both_cpu: float
    simulated: float
    ok: bool

    @property
    def rx_per_minute(self) -> float:
        """CPU s of the receiving end per call-minute."""
        return self.rx_cpu / (self.simulated / 60)


def build(tmp: Path) -> Path:
    """Compile the C loop into ``tmp``; raises CalledProcessError/OSError with gcc's words."""
    exe = tmp / "fax_loop"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(SOURCE), "-lspandsp", "-ltiff", "-lm"],
                   check=True, capture_output=True, text=True)
    return exe


def run(exe: Path, tiff: Path, rx_file: Path, runs: int) -> list[LoopRun]:
    """``runs`` faxes through the C loop, one after the other."""
    out = subprocess.run([str(exe), str(tiff), str(rx_file), str(runs)], check=True, capture_output=True,
                         text=True, timeout=300).stdout
    result = []
    for line in out.split("\n"):
        if line.strip():
            rx, both, sim, ok = line.split()
            result.append(LoopRun(float(rx), float(both), float(sim), ok == "1"))
    return result
