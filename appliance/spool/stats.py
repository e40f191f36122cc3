"""Read-only summaries of the spool for the dashboard, the control socket's status and /metrics.

Every query here is bounded: it runs on an index or over a fixed number of rows, so a spool with
100,000 faxes answers as fast as an empty one.  Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.fax import t30codes
from appliance.spool.store import JOB_STATES, Spool

#: latency is summarised over the most recent deliveries only (bounded work per scrape)
LATENCY_WINDOW = 1000
#: at most this many distinct failure causes are reported (labels must stay few)
MAX_CAUSES = 30


def queue_counts(spool: Spool) -> dict[str, int]:
    """Jobs per state, every state present (zero when none): ``jobs_due`` covers the GROUP BY."""
    counts = {s: 0 for s in JOB_STATES}
    for row in spool._query("SELECT state, count(*) FROM jobs GROUP BY state"):
        counts[row[0]] = int(row[1])
    return counts


def oldest_waiting(spool: Spool) -> float | None:
    """When the oldest job still waiting for delivery (queued or retrying) was created."""
    row = spool._query("SELECT min(created) FROM jobs WHERE state IN ('queued', 'failed_retrying')")
    return row[0][0]


@dataclass
class Day:
    calls: int = 0
    faxes: int = 0
    pages: int = 0
    failures: int = 0


def faxes_since(spool: Spool, since: float) -> Day:
    """Calls, faxes, pages and failures (no page, incomplete, or delivery dead) since ``since``."""
    row = spool._query(
        "SELECT count(*), sum(state NOT IN ('no_fax', 'receiving')), sum(pages),"
        " sum(state IN ('no_fax', 'dead') OR (complete = 0 AND state != 'receiving'))"
        " FROM faxes WHERE created >= ?", (since,))[0]
    return Day(*(int(v or 0) for v in row))


def totals(spool: Spool) -> Day:
    """All-time counters for /metrics (one pass over the faxes table)."""
    return faxes_since(spool, float("-inf"))


def failure_causes(spool: Spool) -> dict[str, int]:
    """Calls that brought no complete fax, by T.30 result code's wording."""
    rows = spool._query(
        "SELECT result_code, count(*) FROM faxes WHERE state != 'receiving' AND (state = 'no_fax' OR complete = 0)"
        " GROUP BY result_code ORDER BY count(*) DESC LIMIT ?", (MAX_CAUSES,))
    out: dict[str, int] = {}
    for code, n in rows:
        out[cause_name(int(code))] = out.get(cause_name(int(code)), 0) + int(n)
    return out


def cause_name(code: int) -> str:
    """spandsp's wording of a T.30 completion code (-1: the call ended before phase E)."""
    if code == -1:
        return "call ended before the fax completed"
    return t30codes.result_text(code)


def recent_latencies(spool: Spool, limit: int = LATENCY_WINDOW) -> list[float]:
    """Seconds from job creation to delivery, for the last ``limit`` delivered jobs."""
    # "+state": not through the state index, which would sort every delivered job; newest ids first
    # instead, stopping after `limit` rows
    rows = spool._query("SELECT delivered_at - created FROM jobs WHERE +state = 'delivered'"
                        " AND delivered_at IS NOT NULL ORDER BY id DESC LIMIT ?", (int(limit),))
    return [max(0.0, float(r[0])) for r in rows]


def dead_jobs(spool: Spool, limit: int = 20) -> list[dict[str, Any]]:
    """The newest dead letters with their fax's caller, for the dashboard's alerts."""
    rows = spool._query(
        "SELECT jobs.id, jobs.fax_id, jobs.recipient, jobs.last_error, jobs.created, faxes.caller_number"
        " FROM jobs JOIN faxes ON faxes.id = jobs.fax_id WHERE jobs.state = 'dead'"
        " ORDER BY jobs.id DESC LIMIT ?", (int(limit),))
    return [dict(r) for r in rows]
