"""Read-only summaries of the spool for the dashboard, the control socket's status and /metrics.

Each reads through the spool's public read API (``Spool.job_counts``, ``tally_since``, ...), whose
queries are bounded, and puts the answer in the words and shapes its readers show.  Nothing here writes.
"""

from __future__ import annotations

from appliance.fax import t30codes
from appliance.spool.store import DeadLetter, FaxTally, Spool

#: latency is summarised over the most recent deliveries only (bounded work per scrape)
LATENCY_WINDOW = 1000
#: at most this many distinct failure causes are reported (labels must stay few)
MAX_CAUSES = 30

#: a period's counts (the dashboard's "today", /metrics' totals)
Day = FaxTally


def queue_counts(spool: Spool) -> dict[str, int]:
    """Jobs per state, every state present (zero when none), keyed by the state's name."""
    return {state.value: n for state, n in spool.job_counts().items()}


def oldest_waiting(spool: Spool) -> float | None:
    """When the oldest job still waiting for delivery (queued or retrying) was created."""
    return spool.oldest_waiting()


def faxes_since(spool: Spool, since: float) -> Day:
    """Calls, faxes, pages and failures (no page, incomplete, or delivery dead) since ``since``."""
    return spool.tally_since(since)


def totals(spool: Spool) -> Day:
    """All-time counters for /metrics (one pass over the faxes table)."""
    return faxes_since(spool, float("-inf"))


def failure_causes(spool: Spool) -> dict[str, int]:
    """Calls that brought no complete fax, by T.30 result code's wording."""
    out: dict[str, int] = {}
    for r in spool.failures_by_result(MAX_CAUSES):
        out[cause_name(r.result_code)] = out.get(cause_name(r.result_code), 0) + r.calls
    return out


def cause_name(code: int) -> str:
    """spandsp's wording of a T.30 completion code (-1: the call ended before phase E)."""
    if code == -1:
        return "call ended before the fax completed"
    return t30codes.result_text(code)


def recent_latencies(spool: Spool, limit: int = LATENCY_WINDOW) -> list[float]:
    """Seconds from job creation to delivery, for the last ``limit`` delivered jobs."""
    return spool.delivery_latencies(limit)


def dead_jobs(spool: Spool, limit: int = 20) -> list[DeadLetter]:
    """The newest dead letters with their fax's caller, for the dashboard's alerts."""
    return spool.dead_letters(limit)
