"""`make bench`: the outbound queue's throughput, what the spool costs per fax sent.

Each fax goes the whole way through the queue as the worker drives it, every step its own
durable commit (synchronous=FULL, as in the daemon): submit (the document moved in, file and
directory fsynced, the row committed), claim, the answer marker, one progress commit per page,
and the attempt closed as sent.  The call itself is left out: this is the queue's own cost,
to compare with the minutes a fax call takes.  Also timed: one claim with 10,000 faxes waiting
behind a full route (the scan a busy box does every tick).  Printed, not asserted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from appliance.outbound.outcome import Outcome, Result
from appliance.spool.outbound import OutboundQueue
from appliance.spool.store import Spool

FAXES = 200
PAGES = 3
WAITING = 10_000
DOCUMENT = b"II*\x00" + bytes(40_000)  # the queue never reads it: only its size matters (a 3-page G4 fax)


def _submit(queue: OutboundQueue, staging: Path, i: int, now: float, route: str = "pbx") -> int:
    src = staging / f"{i}.tif"
    src.write_bytes(DOCUMENT)
    job = queue.submit(src, now, number="555 1234", e164="+15551234", route=route, sender="ann@example.com",
                       source="api", subject="bench", pages=PAGES, meta={})
    return job.id


def bench_cycle(tmp: Path) -> None:
    staging = tmp / "staging"
    staging.mkdir()
    with Spool(tmp / "spool") as spool:
        queue = OutboundQueue(spool)
        steps: dict[str, list[float]] = {"submit": [], "claim": [], "connected": [], "pages": [], "done": []}
        t0 = time.perf_counter()
        for i in range(FAXES):
            now = time.time()
            t = time.perf_counter()
            _submit(queue, staging, i, now)
            steps["submit"].append(time.perf_counter() - t)
            t = time.perf_counter()
            (job,) = queue.claim_due(now, busy_routes={}, limits={"pbx": 1})
            steps["claim"].append(time.perf_counter() - t)
            t = time.perf_counter()
            queue.attempt_connected(job.id, now)
            steps["connected"].append(time.perf_counter() - t)
            t = time.perf_counter()
            for page in range(1, PAGES + 1):
                queue.attempt_progress(job.id, page)
            steps["pages"].append(time.perf_counter() - t)
            t = time.perf_counter()
            queue.attempt_done(job.id, now, Outcome(Result.SENT, pages_confirmed=PAGES, pages_total=PAGES,
                                                    trace=["> DIS", "< DCS"] * 40), next_attempt=None)
            steps["done"].append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
        assert queue.counts()["sent"] == FAXES
    print(f"outbound queue: {FAXES} faxes of {PAGES} pages submitted, claimed, answered, confirmed and done: "
          f"{wall:.2f} s, {FAXES / wall:.0f} faxes/s, {wall * 1000 / FAXES:.1f} ms per fax")
    print("  median per step: " + ", ".join(f"{k} {statistics.median(v) * 1000:.2f} ms" for k, v in steps.items())
          + f" ({PAGES} progress commits)")


def bench_claim_backlog(tmp: Path) -> None:
    staging = tmp / "staging2"
    staging.mkdir()
    with Spool(tmp / "spool2") as spool:
        queue = OutboundQueue(spool)
        now = time.time()
        # the backlog in one statement (its documents do not matter to a claim); then one real
        # submit on a free route, newest of all, so the claim must look past every waiting fax
        with spool._tx() as db:
            db.execute(
                "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)"
                " INSERT INTO out_jobs (uid, number, e164, route, state, created, next_attempt, pages, source)"
                " SELECT printf('%016x', i), '5551234', '+15551234', 'busy', 'queued', ? + i, ? + i, 3, 'api'"
                " FROM seq",
                (WAITING, now - WAITING, now - WAITING),
            )
        _submit(queue, staging, WAITING, now, route="free")
        times = []
        for _ in range(5):
            t = time.perf_counter()
            got = queue.claim_due(now, busy_routes={"busy": 1}, limits={"busy": 1, "free": 1})
            times.append(time.perf_counter() - t)
            assert [j.route for j in got] == ["free"]
            queue.release(got[0].id, now)
    print(f"outbound queue: {WAITING:,} faxes waiting for a full route; one claim past them to the one free "
          f"route: {statistics.median(times) * 1000:.1f} ms median")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        bench_cycle(Path(d))
        bench_claim_backlog(Path(d))


if __name__ == "__main__":
    main()
