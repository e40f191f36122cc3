"""`make bench`, part 2: how fast the Class 1 driver reacts, and what a modem fax costs in CPU.

A recorded ECM call (tests/modem/dialogues/class1_receive_ecm.json.gz, 2 pages at 14400) is
replayed on a pty as fast as the driver goes.  T.30 gives a Class 1 DTE little time at two points:
``AT+FRM`` must be issued right after CFR has gone (the sender's image carrier starts 75 ms later
and a receive command issued after its training is lost), and every response must start within
3 s.  Printed: the driver's reaction time per modem answer (median, 95th percentile, worst, and
the CFR -> +FRM turn), and the main thread's CPU seconds for the whole fax.  Asserts nothing.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from appliance.modem.serial_port import ModemPort
from tests.modem.record_class1 import answer
from tests.modem.replay import ReplayModem, load

DIALOGUE = Path(__file__).parents[1] / "modem" / "dialogues" / "class1_receive_ecm.json.gz"


async def _receive(path: str, tiff: Path) -> bool:
    port = await ModemPort.open(path, flow="none")
    try:
        return (await answer(port, tiff)).complete
    finally:
        port.close()


def run_once(tmp: Path) -> tuple[bool, float, float, list[tuple[float, bytes]]]:
    modem = ReplayModem(load(DIALOGUE), tmp / "modem")
    try:
        cpu0, t0 = time.thread_time(), time.perf_counter()
        ok = asyncio.run(_receive(str(tmp / "modem"), tmp / "rx.tif"))
        cpu, wall = time.thread_time() - cpu0, time.perf_counter() - t0
    finally:
        modem.close()
    return ok and modem.finished and modem.error is None, cpu, wall, modem.turns


def main() -> None:
    print("\n== Class 1 driver (recorded ECM call, 2 pages, 14400, replayed) ==")
    results = []
    with tempfile.TemporaryDirectory() as d:
        for n in range(5):
            run_dir = Path(d) / str(n)
            run_dir.mkdir()
            results.append(run_once(run_dir))
    good = [r for r in results if r[0]]
    print(f"runs completed: {len(good)} of {len(results)}")
    if not good:
        return
    # the phase E flush (a deliberate 1 s pause) is not a reaction time
    reactions = sorted(t for r in good for t, data in r[3] if t < 0.5)
    frm_after_cfr = [t for r in good for t, data in r[3] if data.startswith(b"AT+FRM")]
    p95 = reactions[int(len(reactions) * 0.95) - 1]
    cpu = statistics.median(r[1] for r in good)
    print(f"reaction to a modem answer: median {statistics.median(reactions) * 1000:.2f} ms, "
          f"p95 {p95 * 1000:.2f} ms, worst {max(reactions) * 1000:.2f} ms ({len(reactions)} turns)")
    print(f"CFR sent -> AT+FRM issued: worst {max(frm_after_cfr) * 1000:.2f} ms "
          f"(budget 75 ms: {75 / (max(frm_after_cfr) * 1000):.0f}x headroom)")
    print(f"CPU for the whole fax (driver + spandsp T.30 + T.4): {cpu:.3f} s median, "
          f"{cpu / 2:.3f} s per page; replay wall time {statistics.median(r[2] for r in good):.2f} s")
    print("a Raspberry Pi 4 core is roughly 3-4x slower than this machine's: multiply the times by 4")


if __name__ == "__main__":
    main()
