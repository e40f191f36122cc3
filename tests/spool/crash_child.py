"""Child process for the crash tests: receives faxes into a spool until it is killed.

Usage: crash_child.py ROOT TIFF COUNT.  Prints "begun <uid>" once the row is committed and
"done <uid>" once jobs are committed, flushing each line, so the parent knows what the spool
promised before the kill.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from appliance.spool.store import Spool


def main() -> None:
    root, tiff, count = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes(), int(sys.argv[3])
    spool = Spool(root)
    for _ in range(count):
        fax = spool.begin_fax(time.time(), caller_number="5550100", called_number="5551000")
        print("begun", fax.uid, flush=True)
        with open(spool.incoming_path(fax), "wb") as f:
            for i in range(0, len(tiff), 512):  # as the engine would: a little at a time
                f.write(tiff[i:i + 512])
                f.flush()
        done = spool.finish_fax(fax.id, time.time(), complete=True)
        if done.state == "received":
            spool.add_jobs(fax.id, ["a@example.com", "b@example.com"], time.time())
        print("done", fax.uid, done.state, done.pages, flush=True)


if __name__ == "__main__":
    main()
