"""The outbound queue, method by method: every state move and every refused one, the claim
limits per route, cancel in every state, retries, recovery, reports, deleting and retention,
the migration of a receive-only spool, and two claimers at once."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from outbound_helpers import TIFF, far_end_write, send_all, staged, submit

from appliance.outbound.outcome import Outcome, Result
from appliance.protocol import LocalProtocolError
from appliance.spool import outbound, store
from appliance.spool.outbound import (
    ATTEMPT_INTERRUPTED,
    TRACE_HEAD,
    TRACE_LINE,
    TRACE_TAIL,
    OutboundQueue,
    OutJob,
    retry_at,
)
from appliance.spool.states import OUT_MOVES, REPORT_MOVES, OutState, ReportState
from appliance.spool.store import SCHEMA_VERSION, Spool

T0 = 1_700_000_000.0


@pytest.fixture
def queue(spool: Spool) -> OutboundQueue:
    return OutboundQueue(spool)


def claim(queue: OutboundQueue, now: float = T0, **limits: int) -> list[OutJob]:
    return queue.claim_due(now, busy_routes={}, limits=limits or {"pbx": 10}, limit=10)


def done(queue: OutboundQueue, job: OutJob, result: Result, next_attempt: float | None = None,
         now: float = T0 + 60, **fields) -> OutJob:
    return queue.attempt_done(job.id, now, Outcome(result, **fields), next_attempt=next_attempt)


_routes = 0


def in_state(queue: OutboundQueue, state: OutState, now: float = T0, **kw) -> OutJob:
    """A fresh job brought to ``state`` through the public API only (on a route of its own unless
    told, so its claim takes no other job)."""
    global _routes
    _routes += 1
    kw.setdefault("route", f"own{_routes}")
    job = submit(queue, now, **kw)
    if state is OutState.QUEUED:
        return job
    (job,) = queue.claim_due(now, busy_routes={}, limits={job.route: 1}, default_limit=0)
    if state is OutState.RETRY_WAIT:
        job = done(queue, job, Result.BUSY, next_attempt=now + 120, now=now + 60)
    elif state is OutState.SENT:
        job = done(queue, job, Result.SENT, pages_confirmed=2, pages_total=2, now=now + 60)
    elif state is OutState.FAILED:
        job = done(queue, job, Result.REFUSED, detail="SIP 403 Forbidden", now=now + 60)
    elif state is OutState.CANCELLED:
        job = done(queue, job, Result.CANCELLED, now=now + 60)
    assert job.state is state
    return job


def files(queue: OutboundQueue) -> set[str]:
    return {p.name for p in queue.dir.iterdir()}


# -- submitting ------------------------------------------------------------------------------------

def test_submit_moves_the_document_and_commits_a_whole_job(queue: OutboundQueue, tmp_path: Path):
    src = staged(tmp_path / "staging")
    job = queue.submit(src, T0, number="(555) 123-4567", e164="+15551234567", route="pbx",
                       sender="ann@example.com", source="mail", subject="Invoice 7", pages=2,
                       meta={"files": ["a.pdf"], "cover": True}, report="failure")
    assert not src.exists()
    assert queue.document_path(job).read_bytes() == TIFF
    assert queue.document_path(job) == queue.spool.root / "outbound" / f"{job.uid}.tif"
    assert (job.number, job.e164, job.route, job.sender, job.source, job.subject, job.pages) == (
        "(555) 123-4567", "+15551234567", "pbx", "ann@example.com", "mail", "Invoice 7", 2)
    assert job.state is OutState.QUEUED and job.created == job.next_attempt == T0
    assert (job.attempts, job.pages_confirmed, job.last_result, job.finished) == (0, 0, "", None)
    assert job.report_state is ReportState.NONE and job.report_policy == "failure"
    assert job.meta == {"cover": True, "files": ["a.pdf"]} and not job.cancel_requested
    assert queue.get(job.id) == job == queue.get_by_uid(job.uid)
    assert queue.get(job.id + 1) is None and queue.get_by_uid("nope") is None
    assert queue.next_due() == T0


@pytest.mark.parametrize(("field", "value", "words"), [
    ("number", "", "number"), ("number", "5" * 65, "number"), ("e164", "5551234", "E.164"),
    ("e164", "+1555abc", "E.164"), ("e164", "+" + "1" * 16, "E.164"), ("route", "", "route"),
    ("sender", "a" * 321, "sender"), ("source", "fax", "source"), ("subject", "s" * 1001, "subject"),
    ("pages", 0, "pages"), ("pages", True, "pages"), ("meta", {"x": "y" * 70_000}, "meta"),
    ("report", "sometimes", "report"), ("number", "555\r\n1234", "control"), ("sender", "a@b\nBcc: x@y", "control"),
    ("subject", "Hi\r\nBcc: x@y", "control"), ("route", "pbx\x00", "control"),
])
def test_submit_refuses_bad_fields_and_leaves_nothing(queue: OutboundQueue, tmp_path: Path, field, value, words):
    src = staged(tmp_path / "staging")
    kw = {"number": "5551234", "e164": "+15551234", "route": "pbx", "sender": "", "source": "api",
          "subject": "", "pages": 1, "meta": {}, "report": "always"}
    kw[field] = value
    with pytest.raises(ValueError, match=words):
        queue.submit(src, T0, **kw)
    assert src.read_bytes() == TIFF and files(queue) == set() and queue.list() == []


def test_submit_of_a_missing_file_is_refused(queue: OutboundQueue, tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        queue.submit(tmp_path / "gone.tif", T0, number="1", e164="+1", route="r", sender="", source="cli",
                     subject="", pages=1, meta={})
    assert queue.list() == []


def test_submit_refuses_a_symlink_and_keeps_a_tab_in_the_subject(queue: OutboundQueue, tmp_path: Path):
    link = tmp_path / "link.tif"
    link.symlink_to(staged(tmp_path / "staging"))
    with pytest.raises(ValueError, match="symbolic link"):
        queue.submit(link, T0, number="1", e164="+1", route="r", sender="", source="cli", subject="", pages=1,
                     meta={})
    assert link.is_symlink() and files(queue) == set()
    job = queue.submit(staged(tmp_path / "staging"), T0, number="1", e164="+1", route="r", sender="",
                       source="cli", subject="a\tb", pages=1, meta={})
    assert job.subject == "a\tb"


def test_a_submit_whose_commit_fails_gives_the_file_back(spool: Spool, tmp_path: Path):
    OutboundQueue(spool)  # makes outbound/
    src = staged(tmp_path / "staging")
    with Spool(spool.root, readonly=True) as ro:
        with pytest.raises(PermissionError):
            OutboundQueue(ro).submit(src, T0, number="1", e164="+1", route="r", sender="", source="cli",
                                     subject="", pages=1, meta={})
    assert list((tmp_path / "staging").iterdir()) == [src] and src.read_bytes() == TIFF
    assert files(OutboundQueue(spool)) == set()


# -- claiming ---------------------------------------------------------------------------------------

def test_claim_takes_due_jobs_oldest_first_and_opens_an_attempt(queue: OutboundQueue):
    a = submit(queue, T0 + 2)
    b = submit(queue, T0 + 1)
    later = submit(queue, T0 + 100)
    got = claim(queue, T0 + 50)
    assert [j.id for j in got] == [b.id, a.id] and all(j.state is OutState.SENDING for j in got)
    assert queue.get(later.id).state is OutState.QUEUED
    (attempt,) = queue.attempts(b.id)
    assert (attempt.started, attempt.connected, attempt.finished, attempt.result) == (T0 + 50, None, None, "")
    assert queue.get(b.id).attempts == 0  # counted when it ends
    assert claim(queue, T0 + 50) == []  # claimed once only
    assert queue.next_due() == T0 + 100


def test_claim_respects_each_routes_limit_minus_its_busy_calls(queue: OutboundQueue):
    for i in range(4):
        submit(queue, T0 + i, route="pbx")
        submit(queue, T0 + i, route="modem")
    got = queue.claim_due(T0 + 10, busy_routes={"pbx": 1}, limits={"pbx": 3, "modem": 1}, limit=10)
    assert sorted(j.route for j in got) == ["modem", "pbx", "pbx"]
    # the spool now holds 2 pbx and 1 modem sending; the worker's count may be lower or higher
    assert queue.claim_due(T0 + 10, busy_routes={}, limits={"pbx": 3, "modem": 1}, limit=10)[0].route == "pbx"
    assert queue.claim_due(T0 + 10, busy_routes={}, limits={"pbx": 3, "modem": 1}) == []
    assert queue.claim_due(T0 + 10, busy_routes={"pbx": 5}, limits={"pbx": 5, "modem": 1}) == []
    assert len(queue.claim_due(T0 + 10, busy_routes={"pbx": 5}, limits={"pbx": 6, "modem": 1})) == 1
    assert queue.status()["sending"] == {"pbx": 4, "modem": 1}


def test_a_full_route_does_not_hold_up_the_others(queue: OutboundQueue):
    old = [submit(queue, T0 + i, route="pbx") for i in range(6)]
    young = submit(queue, T0 + 10, route="modem")
    got = queue.claim_due(T0 + 20, busy_routes={}, limits={"pbx": 1, "modem": 1}, limit=2)
    assert [j.id for j in got] == [old[0].id, young.id]


def test_claim_limit_and_a_route_missing_from_limits(queue: OutboundQueue):
    for i in range(5):
        submit(queue, T0 + i, route="gone")
    assert queue.claim_due(T0 + 9, busy_routes={}, limits={}, limit=0) == []
    # a route no longer configured still gets one call (default_limit): the worker fails it
    assert len(queue.claim_due(T0 + 9, busy_routes={}, limits={"pbx": 4}, limit=3)) == 1
    assert len(queue.claim_due(T0 + 9, busy_routes={}, limits={}, default_limit=3)) == 2


# -- one attempt ------------------------------------------------------------------------------------

def test_an_attempt_stores_every_field_of_the_outcome(queue: OutboundQueue):
    (job,) = [in_state(queue, OutState.SENDING)]
    queue.attempt_connected(job.id, T0 + 5)
    queue.attempt_connected(job.id, T0 + 6)  # the first answer counts
    queue.attempt_progress(job.id, 1)
    queue.attempt_progress(job.id, 2)
    queue.attempt_progress(job.id, 1)  # never backwards
    assert queue.get(job.id).pages_confirmed == 2
    outcome = Outcome(Result.DROPPED, detail="T.30 result 41", pages_confirmed=2, pages_total=3,
                      remote_ident="+49 30 1234", duration=41.5, bit_rate=9600, ecm=True, way="SIP T.38",
                      sip_status=200, t30_code=41, trace=["> DIS", "< DCS"])
    after = queue.attempt_done(job.id, T0 + 50, outcome, next_attempt=T0 + 170)
    (attempt,) = queue.attempts(job.id)
    for f in dataclasses.fields(Outcome):
        stored = getattr(attempt, f.name if f.name != "result" else "result")
        assert stored == getattr(outcome, f.name), f"attempt_done lost Outcome.{f.name}"
    assert (attempt.started, attempt.connected, attempt.finished) == (T0, T0 + 5, T0 + 50)
    assert after.state is OutState.RETRY_WAIT and after.next_attempt == T0 + 170 and after.attempts == 1
    assert (after.last_result, after.last_detail, after.remote_ident) == ("dropped", "T.30 result 41", "+49 30 1234")
    assert after.report_state is ReportState.NONE and after.finished is None


def test_a_page_confirmed_marks_the_call_answered(queue: OutboundQueue):
    job = in_state(queue, OutState.SENDING)
    queue.attempt_progress(job.id, 1, now=T0 + 9)
    assert queue.attempts(job.id)[0].connected == T0 + 9


def test_traces_and_texts_from_the_line_are_bounded(queue: OutboundQueue):
    job = in_state(queue, OutState.SENDING)
    trace = [f"line {i} " + "x" * 5000 for i in range(10_000)]
    done(queue, job, Result.FAR_END_ERROR, detail="d" * 10_000, remote_ident="R" * 500, way="w" * 500,
         trace=trace)
    (attempt,) = queue.attempts(job.id)
    assert len(attempt.trace) == TRACE_HEAD + 1 + TRACE_TAIL
    assert attempt.trace[0].startswith("line 0 ") and attempt.trace[-1].startswith("line 9999 ")
    assert attempt.trace[TRACE_HEAD] == f"... {10_000 - TRACE_HEAD - TRACE_TAIL} lines left out ..."
    assert max(len(line) for line in attempt.trace) == TRACE_LINE
    assert len(attempt.detail) == 2000 and len(attempt.remote_ident) == 64 and len(attempt.way) == 200
    assert len(queue.get(job.id).last_detail) == 2000


def test_retries_then_exhausted(queue: OutboundQueue):
    job = submit(queue, T0)
    now = T0
    for n, result in enumerate([Result.BUSY, Result.NO_ANSWER, Result.TRAINING_FAILED], start=1):
        (job,) = claim(queue, now)
        job = done(queue, job, result, next_attempt=now + 120 * n, now=now + 30)
        assert job.state is OutState.RETRY_WAIT and job.attempts == n and job.next_attempt == now + 120 * n
        assert queue.next_due() == now + 120 * n
        assert claim(queue, now + 120 * n - 1) == []  # not before it is due
        now += 120 * n
    (job,) = claim(queue, T0 + 5000)
    job = done(queue, job, Result.BUSY, next_attempt=None, now=T0 + 5030)  # the schedule is used up
    assert job.state is OutState.FAILED and job.attempts == 4 and job.last_result == "busy"
    assert job.finished == T0 + 5030 and job.report_state is ReportState.PENDING
    assert [a.result for a in queue.attempts(job.id)] == ["busy", "no_answer", "training_failed", "busy"]
    assert queue.next_due() is None and claim(queue, T0 + 99_999) == []


def test_retry_at_follows_the_routes_schedule(queue: OutboundQueue):
    """The worker's helper driven through the queue: busy three times on [120, 300], then failed."""
    job = submit(queue, T0)
    now, seen = T0, []
    while True:
        (job,) = claim(queue, now)
        outcome = Outcome(Result.BUSY)
        at = retry_at(job, outcome, [120, 300], now + 10)
        job = queue.attempt_done(job.id, now + 10, outcome, next_attempt=at)
        seen.append((job.state.value, at))
        if at is None:
            break
        now = at
    assert seen == [("retry_wait", T0 + 130), ("retry_wait", T0 + 440), ("failed", None)]
    fresh = submit(queue, T0)
    for result, expected in [(Result.SENT, None), (Result.REFUSED, None), (Result.FAR_END_ERROR, None),
                             (Result.CANCELLED, None), (Result.ERROR, None), (Result.UNKNOWN, T0),
                             (Result.NO_ANSWER, T0 + 5), (Result.TRAINING_FAILED, T0 + 5),
                             (Result.DROPPED, T0 + 5), (Result.NO_CARRIER, T0 + 5), (Result.NO_ROUTE, T0 + 5)]:
        assert retry_at(fresh, Outcome(result), [5], T0) == expected, result
    assert retry_at(fresh, Outcome(Result.BUSY), [], T0) is None


def test_a_sent_fax_is_never_retried(queue: OutboundQueue):
    job = in_state(queue, OutState.SENDING)
    with pytest.raises(ValueError, match="never retried"):
        done(queue, job, Result.SENT, next_attempt=T0 + 100)
    assert queue.get(job.id).state is OutState.SENDING and queue.attempts(job.id)[0].finished is None


def test_an_unknown_outcome_is_retried_once_only(queue: OutboundQueue):
    job = in_state(queue, OutState.SENDING)
    job = done(queue, job, Result.UNKNOWN, next_attempt=T0 + 100)
    assert job.state is OutState.RETRY_WAIT and job.resent_after_unknown
    (job,) = claim(queue, T0 + 100)
    job = done(queue, job, Result.UNKNOWN, next_attempt=T0 + 200)
    assert job.state is OutState.FAILED and job.last_result == "unknown" and job.resent_after_unknown


def test_release_gives_an_unanswered_claim_back(queue: OutboundQueue):
    job = in_state(queue, OutState.SENDING)
    back = queue.release(job.id, T0 + 1)
    assert back.state is OutState.QUEUED and back.attempts == 0 and back.next_attempt == T0
    assert [a.result for a in queue.attempts(job.id)] == [ATTEMPT_INTERRUPTED]
    (again,) = claim(queue, T0 + 2)
    queue.attempt_connected(again.id, T0 + 3)
    with pytest.raises(ValueError, match="connected"):
        queue.release(again.id, T0 + 4)
    assert queue.get(job.id).state is OutState.SENDING


# -- the state table: every move made, every other refused ------------------------------------------

MOVES: dict[tuple[OutState, OutState], Callable[[OutboundQueue, OutJob], object]] = {
    (OutState.QUEUED, OutState.SENDING): lambda q, j: claim(q),
    (OutState.QUEUED, OutState.CANCELLED): lambda q, j: q.cancel(j.id, T0 + 1),
    (OutState.RETRY_WAIT, OutState.SENDING): lambda q, j: claim(q, T0 + 1000),
    (OutState.RETRY_WAIT, OutState.CANCELLED): lambda q, j: q.cancel(j.id, T0 + 1),
    (OutState.SENDING, OutState.SENT): lambda q, j: done(q, j, Result.SENT),
    (OutState.SENDING, OutState.FAILED): lambda q, j: done(q, j, Result.NO_CARRIER),
    (OutState.SENDING, OutState.CANCELLED): lambda q, j: done(q, j, Result.CANCELLED),
    (OutState.SENDING, OutState.RETRY_WAIT): lambda q, j: done(q, j, Result.BUSY, next_attempt=T0 + 99),
    (OutState.SENDING, OutState.QUEUED): lambda q, j: q.recover(T0 + 1),
    (OutState.QUEUED, OutState.FAILED): lambda q, j: (q.document_path(j).unlink(), q.recover(T0 + 1)),
    (OutState.RETRY_WAIT, OutState.FAILED): lambda q, j: (q.document_path(j).unlink(), q.recover(T0 + 1)),
}


def test_the_table_is_the_one_the_tests_walk():
    assert set(MOVES) == set(OUT_MOVES.edges())


@pytest.mark.parametrize("edge", list(MOVES), ids=lambda e: f"{e[0]}-{e[1]}")
def test_every_allowed_move(queue: OutboundQueue, edge):
    job = in_state(queue, edge[0])
    MOVES[edge](queue, job)
    assert queue.get(job.id).state is edge[1]


@pytest.mark.parametrize("a", list(OutState))
@pytest.mark.parametrize("b", list(OutState))
def test_every_other_move_is_refused_by_the_table(a: OutState, b: OutState):
    if (a, b) in MOVES:
        assert OUT_MOVES.move(a, b) is b
    else:
        with pytest.raises(LocalProtocolError):
            OUT_MOVES.move(a, b)


@pytest.mark.parametrize("state", [s for s in OutState if s is not OutState.SENDING])
@pytest.mark.parametrize("call", ["connected", "progress", "done", "release"])
def test_the_worker_calls_need_a_call_in_progress(queue: OutboundQueue, state: OutState, call: str):
    job = in_state(queue, state)
    before = (queue.get(job.id), queue.attempts(job.id))
    act = {
        "connected": lambda: queue.attempt_connected(job.id, T0 + 7),
        "progress": lambda: queue.attempt_progress(job.id, 1),
        "done": lambda: done(queue, job, Result.SENT),
        "release": lambda: queue.release(job.id, T0 + 7),
    }[call]
    with pytest.raises(LocalProtocolError, match="no call in progress"):
        act()
    assert (queue.get(job.id), queue.attempts(job.id)) == before


def test_unknown_jobs_are_key_errors(queue: OutboundQueue):
    for act in (lambda: queue.cancel(9, T0), lambda: queue.attempt_connected(9, T0), lambda: queue.delete(9),
                lambda: queue.report_sent(9, T0), lambda: queue.release(9, T0)):
        with pytest.raises(KeyError):
            act()


# -- cancel -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("state", [OutState.QUEUED, OutState.RETRY_WAIT])
def test_cancel_a_waiting_fax_at_once(queue: OutboundQueue, state: OutState):
    job = in_state(queue, state)
    out = queue.cancel(job.id, T0 + 5)
    assert out.state is OutState.CANCELLED and out.finished == T0 + 5 and out.last_result == "cancelled"
    assert out.report_state is ReportState.PENDING and claim(queue, T0 + 10_000) == []
    assert queue.cancel(job.id, T0 + 6) == out  # a second click changes nothing
    assert queue.document_path(out).exists()  # kept for the report and the web page until deleted


def test_cancel_a_sending_fax_asks_the_worker(queue: OutboundQueue):
    job = in_state(queue, OutState.SENDING)
    asked = queue.cancel(job.id, T0 + 5)
    assert asked.state is OutState.SENDING and asked.cancel_requested and asked.finished is None
    # the call ended busy at the same moment: the cancel still wins over the retry
    out = done(queue, job, Result.BUSY, next_attempt=T0 + 500)
    assert out.state is OutState.CANCELLED and out.last_result == "busy" and claim(queue, T0 + 600) == []


def test_cancel_too_late_a_fax_that_was_sent_anyway(queue: OutboundQueue):
    job = in_state(queue, OutState.SENDING)
    queue.cancel(job.id, T0 + 5)
    assert done(queue, job, Result.SENT, pages_confirmed=2).state is OutState.SENT


@pytest.mark.parametrize("state", [OutState.SENT, OutState.FAILED])
def test_cancel_a_finished_fax_is_refused(queue: OutboundQueue, state: OutState):
    job = in_state(queue, state)
    with pytest.raises(ValueError, match=f"already {state.value}"):
        queue.cancel(job.id, T0 + 5)
    assert queue.get(job.id) == job


# -- recovery ---------------------------------------------------------------------------------------

def test_recover_a_call_not_yet_answered_queues_it_again_uncounted(queue: OutboundQueue):
    job = in_state(queue, OutState.SENDING)
    (back,) = queue.recover(T0 + 30)
    assert back.id == job.id and back.state is OutState.QUEUED and back.attempts == 0
    assert not back.resent_after_unknown and back.next_attempt == T0
    (attempt,) = queue.attempts(job.id)
    assert attempt.result == ATTEMPT_INTERRUPTED and "before the call was answered" in attempt.detail
    assert attempt.finished == T0 + 30
    assert queue.recover(T0 + 31) == []


def test_recover_an_answered_call_sends_once_more_then_fails(queue: OutboundQueue):
    job = in_state(queue, OutState.SENDING)
    queue.attempt_connected(job.id, T0 + 3)
    queue.attempt_progress(job.id, 1)
    (back,) = queue.recover(T0 + 30)
    assert back.state is OutState.QUEUED and back.resent_after_unknown and back.attempts == 1
    assert back.last_result == "unknown" and back.next_attempt == T0 + 30 and back.pages_confirmed == 1
    (attempt,) = queue.attempts(job.id)
    assert (attempt.result, attempt.pages_confirmed, attempt.connected) == ("unknown", 1, T0 + 3)
    assert queue.recover(T0 + 31) == []
    (again,) = claim(queue, T0 + 40)
    queue.attempt_connected(again.id, T0 + 41)
    (failed,) = queue.recover(T0 + 60)  # a second unknown: no endless loop
    assert failed.state is OutState.FAILED and failed.last_result == "unknown" and failed.attempts == 2
    assert failed.report_state is ReportState.PENDING and failed.finished == T0 + 60
    assert [a.result for a in queue.attempts(job.id)] == ["unknown", "unknown"]


def test_recover_a_fax_whose_cancel_was_asked_during_the_call(queue: OutboundQueue):
    quiet = in_state(queue, OutState.SENDING)
    answered = in_state(queue, OutState.SENDING)
    queue.attempt_connected(answered.id, T0 + 2)
    queue.cancel(quiet.id, T0 + 3)
    queue.cancel(answered.id, T0 + 3)
    got = {j.id: j for j in queue.recover(T0 + 30)}
    assert got[quiet.id].state is OutState.CANCELLED and got[quiet.id].attempts == 0
    assert got[answered.id].state is OutState.CANCELLED and got[answered.id].last_result == "unknown"


def test_recover_fails_a_job_whose_document_is_gone_and_removes_strays(queue: OutboundQueue):
    lost = submit(queue, T0)
    kept = in_state(queue, OutState.RETRY_WAIT)
    sent = in_state(queue, OutState.SENT)
    queue.document_path(lost).unlink()
    (queue.dir / "0123456789abcdef.tif").write_bytes(TIFF)  # a submit cut off before its commit
    (queue.dir / "x.tif.tmp").write_bytes(b"half")  # a cross-device move cut off
    (got,) = queue.recover(T0 + 30)
    assert got.id == lost.id and got.state is OutState.FAILED and got.last_result == "error"
    assert "went missing" in got.last_detail
    assert files(queue) == {f"{kept.uid}.tif", f"{sent.uid}.tif"}
    assert queue.recover(T0 + 31) == []


# -- reports ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "sender", "state", "owed"), [
    ("always", "ann@example.com", OutState.SENT, True),
    ("always", "ann@example.com", OutState.FAILED, True),
    ("failure", "ann@example.com", OutState.SENT, False),
    ("failure", "ann@example.com", OutState.FAILED, True),
    ("failure", "ann@example.com", OutState.CANCELLED, True),
    ("never", "ann@example.com", OutState.FAILED, False),
    ("always", "", OutState.FAILED, False),
])
def test_a_report_is_owed_as_the_policy_says(queue: OutboundQueue, policy, sender, state, owed):
    job = in_state(queue, state, report=policy, sender=sender)
    assert job.report_state is (ReportState.PENDING if owed else ReportState.NONE)
    assert [j.id for j in queue.reports_due()] == ([job.id] if owed else [])


def test_report_retry_sent_and_abandoned(queue: OutboundQueue):
    a = in_state(queue, OutState.SENT)
    b = in_state(queue, OutState.FAILED)
    assert [j.id for j in queue.reports_due(T0 + 60)] == [a.id, b.id] and queue.next_report_due() == T0 + 60
    queue.report_retry(a.id, "SMTP 451 try later", T0 + 600)
    assert [j.id for j in queue.reports_due(T0 + 61)] == [b.id]
    queue.report_sent(b.id, T0 + 62)
    got = queue.get(b.id)
    assert got.report_state is ReportState.SENT and got.report_sent_at == T0 + 62 and got.report_attempts == 1
    assert [j.id for j in queue.reports_due(T0 + 600)] == [a.id] and queue.status()["reports_pending"] == 1
    queue.report_retry(a.id, "SMTP 550 no such user", T0 + 700, give_up=True)
    got = queue.get(a.id)
    assert got.report_state is ReportState.ABANDONED and got.report_attempts == 2
    assert got.report_error == "SMTP 550 no such user" and queue.reports_due() == []
    for act in (lambda: queue.report_sent(a.id, T0), lambda: queue.report_retry(b.id, "x", T0)):
        with pytest.raises(LocalProtocolError):
            act()
    assert set(REPORT_MOVES.edges()) == {
        (ReportState.NONE, ReportState.PENDING), (ReportState.PENDING, ReportState.PENDING),
        (ReportState.PENDING, ReportState.SENT), (ReportState.PENDING, ReportState.ABANDONED)}


def test_no_report_for_a_fax_still_open(queue: OutboundQueue):
    job = in_state(queue, OutState.QUEUED)
    with pytest.raises(LocalProtocolError):
        queue.report_sent(job.id, T0)


# -- reading ----------------------------------------------------------------------------------------

def test_list_counts_and_status(queue: OutboundQueue):
    q1 = in_state(queue, OutState.QUEUED, now=T0 + 1)
    s1 = in_state(queue, OutState.SENT, now=T0 + 2, sender="bob@example.com")
    r1 = in_state(queue, OutState.RETRY_WAIT, now=T0 + 3)
    c1 = in_state(queue, OutState.SENDING, now=T0 + 4, route="modem")
    assert [j.id for j in queue.list()] == [c1.id, r1.id, s1.id, q1.id]
    assert [j.id for j in queue.list(limit=2)] == [c1.id, r1.id]
    assert [j.id for j in queue.list("sent")] == [s1.id] == [j.id for j in queue.list(sender="bob@example.com")]
    assert queue.list(OutState.FAILED) == []
    with pytest.raises(ValueError):
        queue.list("delivered")
    counts = queue.counts()
    assert counts == {OutState.QUEUED: 1, OutState.SENDING: 1, OutState.RETRY_WAIT: 1, OutState.SENT: 1,
                      OutState.FAILED: 0, OutState.CANCELLED: 0}
    status = queue.status()
    assert status == {
        "jobs": {"queued": 1, "sending": 1, "retry_wait": 1, "sent": 1, "failed": 0, "cancelled": 0},
        "sending": {"modem": 1}, "oldest_waiting": T0 + 1, "next_due": T0 + 1, "reports_pending": 1}


def test_an_empty_queue_reads_empty(queue: OutboundQueue):
    assert queue.list() == [] and queue.next_due() is None and queue.next_report_due() is None
    assert queue.status()["oldest_waiting"] is None and queue.attempts(1) == []


def test_a_read_only_spool_reads_and_refuses_every_write(spool: Spool):
    queue = OutboundQueue(spool)
    job = in_state(queue, OutState.SENT)
    with Spool(spool.root, readonly=True) as ro:
        reader = OutboundQueue(ro)
        assert reader.get(job.id) == job and reader.attempts(job.id) == queue.attempts(job.id)
        assert reader.status() == queue.status()
        for act in (lambda: claim(reader), lambda: reader.cancel(job.id, T0), lambda: reader.recover(T0),
                    lambda: reader.delete(job.id), lambda: reader.report_sent(job.id, T0)):
            with pytest.raises(PermissionError):
                act()
    assert queue.get(job.id) == job


# -- deleting and retention -------------------------------------------------------------------------

@pytest.mark.parametrize("state", list(OutState))
def test_delete_only_a_finished_fax(queue: OutboundQueue, state: OutState):
    job = in_state(queue, state)
    if not job.final:
        with pytest.raises(ValueError, match="cancel it"):
            queue.delete(job.id)
        assert queue.get(job.id) == job and queue.document_path(job).exists()
        return
    gone = queue.delete(job.id)
    assert gone.id == job.id and queue.get(job.id) is None and queue.attempts(job.id) == []
    assert files(queue) == set()
    with pytest.raises(KeyError):
        queue.delete(job.id)


def test_retention_purges_finished_faxes_with_the_spool(spool: Spool, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(outbound, "PURGE_BATCH", 2)  # several batches
    queue = OutboundQueue(spool)
    old = [in_state(queue, OutState.SENT, report="never") for _ in range(3)]
    old.append(in_state(queue, OutState.CANCELLED, report="never"))
    owed = in_state(queue, OutState.FAILED)  # its report is not out yet
    open_ = [in_state(queue, s, report="never") for s in (OutState.QUEUED, OutState.SENDING, OutState.RETRY_WAIT)]
    young = in_state(queue, OutState.SENT, now=T0 + 10_000, report="never")
    assert spool.purge_older_than(T0 + 5000) == 0  # the fax count: no received fax went
    left = {j.id for j in queue.list()}
    assert left == {owed.id, young.id} | {j.id for j in open_}
    assert files(queue) == {f"{queue.get(i).uid}.tif" for i in left}
    for j in old:
        assert queue.attempts(j.id) == []
    queue.report_sent(owed.id, T0 + 1)
    spool.purge_older_than(T0 + 5000)
    assert {j.id for j in queue.list()} == {young.id} | {j.id for j in open_}


# -- the schema -------------------------------------------------------------------------------------

def test_a_version_2_spool_is_migrated_and_keeps_its_faxes(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A spool as the receive-only firmware left it (its schema, user_version 2, one fax)."""
    root = tmp_path / "spool"
    root.mkdir()
    with sqlite3.connect(root / "spool.db") as db:
        db.executescript(store._SCHEMA)
        db.execute("INSERT INTO faxes (uid, state, created) VALUES ('abc', 'no_fax', 1.0)")
        db.execute("PRAGMA user_version=2")
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'out_%'").fetchone()[0] == 0
    with caplog.at_level(logging.INFO, logger="faxbridge.spool"), Spool(root) as s:
        assert s.schema_version() == SCHEMA_VERSION == 3
        assert s.get_fax_by_uid("abc").state == "no_fax"
        queue = OutboundQueue(s)
        job = in_state(queue, OutState.SENT)
        assert queue.get(job.id).state is OutState.SENT
    assert "migrating to version 3" in caplog.text and "migrating to version 2" not in caplog.text
    with sqlite3.connect(root / "spool.db") as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert {"out_jobs", "out_attempts", "out_jobs_due", "out_jobs_report", "out_attempts_job"} <= names
    with caplog.at_level(logging.INFO, logger="faxbridge.spool"), Spool(root) as s:  # once only
        assert OutboundQueue(s).get(job.id).state is OutState.SENT
    assert caplog.text.count("migrating to version 3") == 1


# -- two claimers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shared", [True, False], ids=["one-spool", "two-connections"])
def test_two_threads_never_claim_one_job_twice(spool: Spool, shared: bool):
    queue = OutboundQueue(spool)
    jobs = {submit(queue, T0 + i % 7, route=f"r{i % 3}").id for i in range(150)}
    other = spool if shared else Spool(spool.root)
    claims: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def claimer(q: OutboundQueue, mine: list[int]) -> None:
        start.wait()
        while True:
            got = q.claim_due(T0 + 10, busy_routes={}, limits={"r0": 100, "r1": 100, "r2": 100}, limit=3)
            if not got:
                return
            for job in got:
                mine.append(job.id)
                q.attempt_done(job.id, T0 + 11, Outcome(Result.SENT), next_attempt=None)
            time.sleep(0.002)  # the calls themselves: the other claimer's turn

    threads = [threading.Thread(target=claimer, args=(q, c)) for q, c in
               ((queue, claims[0]), (OutboundQueue(other), claims[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if not shared:
        other.close()
    assert not set(claims[0]) & set(claims[1]), "a job was claimed twice"
    assert sorted(claims[0] + claims[1]) == sorted(jobs)
    assert claims[0] and claims[1], "one thread did all the work: the test proved nothing"
    assert all(len(queue.attempts(i)) == 1 for i in jobs)


def test_two_claimers_together_keep_a_routes_limit(spool: Spool):
    queue = OutboundQueue(spool)
    for i in range(20):
        submit(queue, T0 + i)
    with Spool(spool.root) as other:
        second = OutboundQueue(other)
        start = threading.Barrier(2)
        got: list[int] = []

        def claimer(q: OutboundQueue) -> None:
            start.wait()
            for _ in range(20):
                got.extend(j.id for j in q.claim_due(T0 + 99, busy_routes={}, limits={"pbx": 2}))

        threads = [threading.Thread(target=claimer, args=(q,)) for q in (queue, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(got) == 2 and queue.status()["sending"] == {"pbx": 2}


def test_send_all_helper_and_far_end_log(queue: OutboundQueue, tmp_path: Path):
    """The helper the crash tests finish with sends each due fax exactly once."""
    ids = [submit(queue, T0 + i).id for i in range(5)]
    log = tmp_path / "far"
    far_end_write(log, "first")
    assert send_all(queue, T0 + 10, log) == 5
    assert log.read_text().split() == ["first"] + [queue.get(i).uid for i in ids]
    assert all(queue.get(i).state is OutState.SENT for i in ids)
