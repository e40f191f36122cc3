"""The spool's read API (what the dashboard, the control socket and /metrics see) and stats.py on it.

Each summary is checked against the same figure computed in Python from the records the spool
lists, over spools built at random (hypothesis), so a wrong SQL clause shows as a difference.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.spool import stats
from appliance.spool.states import FaxState, JobState
from appliance.spool.store import SCHEMA_VERSION, DeadLetter, FaxTally, ResultCount, Spool
from spool_helpers import make_tiff

T0 = 1_700_000_000.0
TIFF = make_tiff(2)


def fax(spool: Spool, now: float, *, pages: bool = True, complete: bool = True, code: int = 0,
        recipients: tuple[str, ...] = (), caller: str = "5550100"):
    rec = spool.begin_fax(now, caller_number=caller, result_code=code)
    if pages:
        spool.incoming_path(rec).write_bytes(TIFF)
    rec = spool.finish_fax(rec.id, now + 30, complete=complete)
    if recipients:
        spool.add_jobs(rec.id, list(recipients), now + 31)
    return rec


def settle(spool: Spool, now: float, outcomes: dict[str, str]) -> None:
    """Claim every due job and give each the outcome its recipient is named for."""
    for job in spool.claim_due_jobs(now, limit=1000):
        outcome = outcomes.get(job.recipient, "queued")
        if outcome == "delivered":
            spool.job_delivered(job.id, now + 5, "250 ok")
        elif outcome == "dead":
            spool.job_dead(job.id, now + 5, f"550 {job.recipient} unknown")
        elif outcome == "failed_retrying":
            spool.job_retry(job.id, now + 5, "451 later", now + 600)
        elif outcome == "queued":
            spool.release_jobs([job.id])


# -- each method on a known spool ----------------------------------------------------------------

def test_an_empty_spool_reads_as_zeros(spool: Spool):
    assert spool.job_counts() == {s: 0 for s in JobState} and list(spool.job_counts()) == list(JobState)
    assert spool.oldest_waiting() is None
    assert spool.tally_since(float("-inf")) == FaxTally(0, 0, 0, 0)
    assert spool.failures_by_result(30) == []
    assert spool.delivery_latencies(10) == []
    assert spool.dead_letters(10) == []
    assert spool.schema_version() == SCHEMA_VERSION


def test_job_counts_every_state(spool: Spool):
    fax(spool, T0, recipients=("d@x.example", "r@x.example", "k@x.example", "q@x.example", "f@x.example"))
    settle(spool, T0 + 100, {"d@x.example": "delivered", "r@x.example": "failed_retrying",
                             "k@x.example": "dead", "f@x.example": "delivering"})
    counts = spool.job_counts()
    assert counts == {JobState.QUEUED: 1, JobState.DELIVERING: 1, JobState.DELIVERED: 1,
                      JobState.FAILED_RETRYING: 1, JobState.DEAD: 1}
    assert all(type(k) is JobState for k in counts)
    assert stats.queue_counts(spool) == {"queued": 1, "delivering": 1, "delivered": 1, "failed_retrying": 1,
                                         "dead": 1}
    assert all(type(k) is str and not isinstance(k, JobState) for k in stats.queue_counts(spool))


def test_oldest_waiting_counts_queued_and_retrying_only(spool: Spool):
    fax(spool, T0, recipients=("done@x.example",))
    settle(spool, T0 + 100, {"done@x.example": "delivered"})
    assert spool.oldest_waiting() is None  # delivered jobs wait for nothing
    fax(spool, T0 + 200, recipients=("later@x.example",))
    assert spool.oldest_waiting() == T0 + 231
    fax(spool, T0 + 100, recipients=("retry@x.example",))
    settle(spool, T0 + 150, {"retry@x.example": "failed_retrying"})
    assert spool.oldest_waiting() == T0 + 131 == stats.oldest_waiting(spool)
    fax(spool, T0 + 50, recipients=("fly@x.example",))
    settle(spool, T0 + 90, {"fly@x.example": "delivering"})
    assert spool.oldest_waiting() == T0 + 131  # one in flight is not waiting


def test_tally_since_counts_calls_faxes_pages_and_failures(spool: Spool):
    fax(spool, T0)                                  # a good fax, 2 pages
    fax(spool, T0 + 10, pages=False)                # no fax: a failure
    fax(spool, T0 + 20, complete=False)             # incomplete: a failure with pages
    fax(spool, T0 + 30, recipients=("gone@x.example",))
    settle(spool, T0 + 100, {"gone@x.example": "dead"})  # delivery dead: a failure
    spool.begin_fax(T0 + 40)                        # still receiving: a call, nothing else
    assert spool.tally_since(T0) == FaxTally(calls=5, faxes=3, pages=6, failures=3)
    assert spool.tally_since(T0 + 15) == FaxTally(calls=3, faxes=2, pages=4, failures=2)
    assert spool.tally_since(T0 + 41) == FaxTally()
    assert stats.faxes_since(spool, T0 + 15) == spool.tally_since(T0 + 15)
    assert stats.totals(spool) == spool.tally_since(T0 - 1)
    assert stats.Day is FaxTally and stats.Day() == FaxTally(0, 0, 0, 0)


def test_failures_by_result_groups_and_limits(spool: Spool):
    for i in range(3):
        fax(spool, T0 + i, pages=False, code=-1)
    for i in range(2):
        fax(spool, T0 + 10 + i, complete=False, code=48)
    fax(spool, T0 + 20, pages=False, code=70)
    fax(spool, T0 + 30, code=0)                     # complete: not a failure
    spool.begin_fax(T0 + 40, result_code=5)         # still receiving: not counted yet
    assert spool.failures_by_result(30) == [ResultCount(-1, 3), ResultCount(48, 2), ResultCount(70, 1)]
    assert spool.failures_by_result(1) == [ResultCount(-1, 3)]


def test_failure_causes_names_the_codes(spool: Spool, monkeypatch: pytest.MonkeyPatch):
    fax(spool, T0, pages=False, code=-1)
    fax(spool, T0 + 1, pages=False, code=48)
    fax(spool, T0 + 2, pages=False, code=49)
    monkeypatch.setattr(stats, "cause_name", lambda code: "ended early" if code == -1 else "line trouble")
    assert stats.failure_causes(spool) == {"ended early": 1, "line trouble": 2}  # one name, summed


def test_delivery_latencies_newest_first_and_never_negative(spool: Spool):
    a = fax(spool, T0, recipients=("a@x.example",))
    b = fax(spool, T0 + 10, recipients=("b@x.example",))
    ja, jb = spool.jobs_for(a.id)[0], spool.jobs_for(b.id)[0]
    spool.claim_due_jobs(T0 + 100)
    spool.job_delivered(ja.id, ja.created + 12.5, "250 ok")
    spool.job_delivered(jb.id, jb.created - 3, "250 ok")  # a clock stepped back: counted as 0
    assert spool.delivery_latencies(10) == [0.0, 12.5]
    assert spool.delivery_latencies(1) == [0.0]
    assert stats.recent_latencies(spool) == [0.0, 12.5]


def test_dead_letters_newest_first_with_the_caller(spool: Spool):
    first = fax(spool, T0, recipients=("one@x.example",), caller="+4930111")
    second = fax(spool, T0 + 10, recipients=("two@x.example",), caller="+4930222")
    fax(spool, T0 + 20, recipients=("fine@x.example",))
    settle(spool, T0 + 100, {"one@x.example": "dead", "two@x.example": "dead", "fine@x.example": "delivered"})
    letters = spool.dead_letters(10)
    assert [d.recipient for d in letters] == ["two@x.example", "one@x.example"]
    two = letters[0]
    assert two == DeadLetter(id=spool.jobs_for(second.id)[0].id, fax_id=second.id, recipient="two@x.example",
                             last_error="550 two@x.example unknown", created=T0 + 41, caller_number="+4930222")
    assert spool.dead_letters(1) == letters[:1] == stats.dead_jobs(spool, limit=1)
    assert letters[1].fax_id == first.id
    with pytest.raises(dataclasses.FrozenInstanceError):
        two.recipient = "x"  # type: ignore[misc]


def test_the_read_api_works_on_a_read_only_spool(spool: Spool):
    fax(spool, T0, recipients=("a@x.example",))
    with Spool(spool.root, readonly=True) as ro:
        assert ro.job_counts()[JobState.QUEUED] == 1
        assert ro.tally_since(T0).calls == 1
        assert ro.oldest_waiting() == T0 + 31
        assert ro.schema_version() == SCHEMA_VERSION
        with pytest.raises(PermissionError):
            ro.add_jobs(1, ["b@x.example"], T0)


# -- against a model, over random spools ---------------------------------------------------------

call = st.fixed_dictionaries({
    "age": st.integers(0, 500),
    "pages": st.booleans(),
    "complete": st.booleans(),
    "code": st.sampled_from([-1, 0, 48, 49, 70]),
    "outcomes": st.lists(st.sampled_from(["queued", "delivering", "delivered", "failed_retrying", "dead"]),
                         max_size=3),
})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(call, max_size=8), since=st.integers(0, 500))
def test_summaries_agree_with_the_records(calls, since):
    with tempfile.TemporaryDirectory() as d:
        spool = Spool(Path(d) / "spool")
        try:
            for i, c in enumerate(calls):
                rcpts = {f"r{i}.{k}@x.example": o for k, o in enumerate(c["outcomes"])}
                f = fax(spool, T0 + c["age"], pages=c["pages"], complete=c["complete"], code=c["code"],
                        recipients=tuple(rcpts) if c["pages"] else ())
                if c["pages"]:
                    settle(spool, T0 + 1000, rcpts)
                assert spool.get_fax(f.id) is not None
            check_against_records(spool, T0 + since)
        finally:
            spool.close()


def check_against_records(spool: Spool, since: float) -> None:
    faxes = spool.list_faxes(limit=10_000)
    jobs = spool.list_jobs(limit=10_000)
    recent = [f for f in faxes if f.created >= since]
    done = [f for f in recent if f.state != FaxState.RECEIVING]
    assert spool.tally_since(since) == FaxTally(
        calls=len(recent),
        faxes=sum(f.state != FaxState.NO_FAX for f in done),
        pages=sum(f.pages for f in recent),
        failures=sum(f.state in (FaxState.NO_FAX, FaxState.DEAD) or not f.complete for f in done))
    assert spool.job_counts() == {s: sum(j.state == s for j in jobs) for s in JobState}
    waiting = [j.created for j in jobs if j.state in (JobState.QUEUED, JobState.FAILED_RETRYING)]
    assert spool.oldest_waiting() == (min(waiting) if waiting else None)
    failed = [f.result_code for f in faxes if f.state == FaxState.NO_FAX or not f.complete]
    got = spool.failures_by_result(30)
    assert {r.result_code: r.calls for r in got} == {c: failed.count(c) for c in set(failed)}
    assert [r.calls for r in got] == sorted((r.calls for r in got), reverse=True)
    delivered = sorted((j for j in jobs if j.state == JobState.DELIVERED), key=lambda j: -j.id)
    assert spool.delivery_latencies(1000) == [max(0.0, j.delivered_at - j.created) for j in delivered]
    dead = sorted((j for j in jobs if j.state == JobState.DEAD), key=lambda j: -j.id)
    assert [(d.id, d.fax_id) for d in spool.dead_letters(1000)] == [(j.id, j.fax_id) for j in dead]
    assert not any(math.isnan(x) for x in spool.delivery_latencies(1000))


def test_the_summaries_stay_fast_on_a_big_spool(spool: Spool):
    """100,000 faxes and jobs: a /metrics scrape or a dashboard must not wait on the spool."""
    import sqlite3
    import time
    n = 100_000
    with sqlite3.connect(spool.db_path) as db:
        db.executemany("INSERT INTO faxes (id, uid, state, created, complete, pages) VALUES (?, ?, ?, ?, 1, 2)",
                       [(i + 1, f"{i:016x}", "delivered", T0 + i) for i in range(n)])
        db.executemany("INSERT INTO jobs (fax_id, recipient, message_id, state, next_attempt, created,"
                       " delivered_at) VALUES (?, 'a@x.example', ?, ?, ?, ?, ?)",
                       [(i + 1, f"<{i}>", "dead" if i % 1000 == 0 else "delivered", T0 + i, T0 + i, T0 + i + 7)
                        for i in range(n)])
    start = time.perf_counter()
    assert spool.job_counts()[JobState.DEAD] == 100
    assert spool.tally_since(T0 + n - 10) == FaxTally(calls=10, faxes=10, pages=20, failures=0)
    assert spool.delivery_latencies(1000) == [7.0] * 1000
    assert len(spool.dead_letters(20)) == 20 and spool.oldest_waiting() is None
    assert time.perf_counter() - start < 2.0
