"""`python -m tests.media.speed --sizes ...`: tests/bench/bench_calls.py's figures, run against the
daemon's state directory (the bench looked for its spool beside the config, where decision 13
no longer puts it).  A local measuring aid for the media path (decision 27), not a test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.bench import bench_calls

_start = bench_calls.start_daemon


#: the daemon's core (FB_DAEMON_CORE): another bench's real-time daemon on core 0 takes turns
#: with ours (SCHED_RR, same priority) and shows as our lateness; the senders take the other core
DAEMON_CORE = int(os.environ.get("FB_DAEMON_CORE", "0"))


def start_daemon(tmp: Path, core: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    proc, port, db = _start(tmp, DAEMON_CORE)
    os.sched_setaffinity(0, {(DAEMON_CORE + 1) % (os.cpu_count() or 1)})
    found = tmp / "var" / "spool" / "spool.db"
    return proc, port, found if found.exists() or not db.exists() else db


bench_calls.start_daemon = start_daemon

if __name__ == "__main__":
    bench_calls.main()
