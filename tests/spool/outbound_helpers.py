"""What the outbound queue tests share: a document to submit, a job in one call, and a worker
that plays one attempt through the queue the way the real one does."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.outbound.outcome import Outcome, Result
from appliance.spool.outbound import OutboundQueue, OutJob
from spool_helpers import make_tiff

TIFF = make_tiff(2)


def staged(directory: Path, name: str = "doc") -> Path:
    """A rendered fax as the submit flow leaves it: a TIFF in a staging directory."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.tif"
    path.write_bytes(TIFF)
    return path


def submit(queue: OutboundQueue, now: float, *, route: str = "pbx", sender: str = "ann@example.com",
           report: str = "always", staging: Path | None = None, name: str = "doc") -> OutJob:
    stage = staging if staging is not None else queue.spool.root.parent / "staging"
    return queue.submit(staged(stage, f"{name}-{os.getpid()}-{now}-{route}"), now, number="555 1234",
                        e164="+15551234", route=route, sender=sender, source="web", subject="Invoice",
                        pages=2, meta={"files": ["invoice.pdf"]}, report=report)


def far_end_write(log: Path, uid: str) -> None:
    """The far end now has the fax: one line per arrival, durable before anything else happens."""
    with open(log, "a") as f:
        f.write(uid + "\n")
        f.flush()
        os.fsync(f.fileno())


def send_all(queue: OutboundQueue, now: float, far_end: Path, limits: dict[str, int] | None = None) -> int:
    """Send every due job to completion as a worker would (answer, far end gets it, confirm)."""
    sent = 0
    while True:
        claimed = queue.claim_due(now, busy_routes={}, limits=limits or {"pbx": 4}, limit=4)
        if not claimed:
            return sent
        for job in claimed:
            queue.attempt_connected(job.id, now)
            far_end_write(far_end, job.uid)
            queue.attempt_progress(job.id, job.pages)
            queue.attempt_done(job.id, now, Outcome(Result.SENT, pages_confirmed=job.pages,
                                                    pages_total=job.pages, remote_ident="FAR END"),
                               next_attempt=None)
            sent += 1
