"""Child process for the outbound crash tests: submits and sends faxes until it is killed.

Usage: outbound_child.py ROOT FAR_END_LOG MODE COUNT.  MODE "send": submit, claim, answer, the
far end gets the fax (a line in FAR_END_LOG, fsynced), confirm, done; "delete"/"purge": finish
one fax, then delete or purge it; "recover": recover the spool as found.  Prints "submitted
<uid>" once submit returned and "sent <uid>" once the done commit returned, flushing each, so
the parent knows what the queue promised before the kill.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from appliance.outbound.outcome import Outcome, Result
from appliance.spool.crashpoint import crash_point
from appliance.spool.outbound import OutboundQueue
from appliance.spool.store import Spool
from outbound_helpers import far_end_write, submit


def main() -> None:
    root, far_end, mode, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    spool = Spool(root)
    queue = OutboundQueue(spool)
    if mode == "recover":
        queue.recover(time.time())
        print("recovered", flush=True)
        return
    for i in range(count):
        now = time.time()
        job = submit(queue, now, name=f"c{i}")
        print("submitted", job.uid, flush=True)
        (claimed,) = queue.claim_due(now, busy_routes={}, limits={"pbx": 1})
        queue.attempt_connected(claimed.id, now)
        far_end_write(far_end, claimed.uid)
        crash_point("far.written")
        queue.attempt_progress(claimed.id, 2)
        queue.attempt_done(claimed.id, now, Outcome(Result.SENT, pages_confirmed=2, pages_total=2),
                           next_attempt=None)
        print("sent", job.uid, flush=True)
        if mode == "delete":
            queue.delete(job.id)
        elif mode == "purge":
            queue.report_sent(job.id, now)  # an owed report keeps a job from retention
            spool.purge_older_than(now + 1)


if __name__ == "__main__":
    main()
