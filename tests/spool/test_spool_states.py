"""The spool's states as types: stored values unchanged, one table per machine, illegal moves refused.

A model-based (hypothesis) test drives the public API with random operations and checks after each
that every job moved only as JOB_MOVES allows and every fax's state is the one its jobs imply.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from appliance.sip.errors import LocalProtocolError
from appliance.spool.states import (ALERT_MOVES, DELIVERY_STATES, FAX_MOVES, JOB_MOVES, AlertState, FaxState,
                                    JobState, derived_fax_state, move)
from appliance.spool.store import FAX_STATES, JOB_STATES, FaxRecord, Job, Spool
from spool_helpers import make_tiff

T0 = 1_700_000_000.0
TIFF = make_tiff(1)


def routed(spool: Spool, recipients: list[str], now: float = T0) -> tuple[FaxRecord, list[Job]]:
    fax = spool.begin_fax(now, caller_number="5550100")
    spool.incoming_path(fax).write_bytes(TIFF)
    spool.finish_fax(fax.id, now + 1, complete=True)
    return fax, spool.add_jobs(fax.id, recipients, now + 2)


def stored(spool: Spool, sql: str, *params: object) -> list[tuple]:
    """Read the database as another process would (no spool internals)."""
    with sqlite3.connect(spool.db_path) as db:
        return db.execute(sql, params).fetchall()


# -- the enums are the strings they always were ------------------------------------------------

def test_the_enum_values_are_the_published_strings():
    assert FAX_STATES == ("receiving", "received", "no_fax", "routed", "delivering", "delivered",
                          "failed_retrying", "dead")
    assert JOB_STATES == ("queued", "delivering", "delivered", "failed_retrying", "dead")
    assert [s.value for s in AlertState] == ["pending", "sent", "abandoned"]
    assert all(type(s) is str for s in FAX_STATES + JOB_STATES)  # argparse shows them as they are


@pytest.mark.parametrize("state", list(FaxState) + list(JobState) + list(AlertState))
def test_a_state_reads_writes_and_prints_as_its_string(state):
    assert state == state.value and str(state) == state.value and f"{state:<16}" == f"{state.value:<16}"
    assert json.dumps({state: state}) == json.dumps({state.value: state.value})
    assert {state.value: 1}[state] == 1  # dicts keyed by the plain name still find it
    with sqlite3.connect(":memory:") as db:
        (back,) = db.execute("SELECT ?", (state,)).fetchone()
    assert back == state.value and type(back) is str


def test_records_carry_the_enum_whatever_they_were_built_from():
    fax = FaxRecord(id=1, uid="ab", state="received", created=T0)  # as delivery/trial.py builds one
    assert fax.state is FaxState.RECEIVED
    job = Job(1, 1, "a@example.com", "<m>", "queued", 0, T0, "", None, T0)
    assert job.state is JobState.QUEUED
    with pytest.raises(ValueError):
        FaxRecord(id=1, uid="ab", state="lost", created=T0)
    with pytest.raises(ValueError):
        Job(1, 1, "a@example.com", "<m>", "sent", 0, T0, "", None, T0)


def test_records_read_from_the_spool_carry_enums(spool: Spool):
    fax, (job,) = routed(spool, ["a@example.com"])
    assert spool.get_fax(fax.id).state is FaxState.ROUTED
    assert spool.get_job(job.id).state is JobState.QUEUED
    assert spool.list_faxes()[0].state is FaxState.ROUTED
    assert spool.list_jobs()[0].state is JobState.QUEUED


# -- the tables --------------------------------------------------------------------------------

def test_move_returns_the_new_state_or_raises_our_own_error():
    assert move(JOB_MOVES, JobState.QUEUED, JobState.DELIVERING) is JobState.DELIVERING
    with pytest.raises(LocalProtocolError, match="job 7: no move from delivered to delivering"):
        move(JOB_MOVES, JobState.DELIVERED, JobState.DELIVERING, "job 7")
    with pytest.raises(LocalProtocolError, match="FaxState: no move from no_fax to received"):
        move(FAX_MOVES, FaxState.NO_FAX, FaxState.RECEIVED)


def test_the_fax_table():
    assert {b for a, b in FAX_MOVES if a == FaxState.RECEIVING} == {FaxState.RECEIVED, FaxState.NO_FAX}
    assert {b for a, b in FAX_MOVES if a == FaxState.RECEIVED} == set(DELIVERY_STATES)
    assert not any(a == FaxState.NO_FAX for a, _ in FAX_MOVES)  # a call without a page stays so
    assert not any(b in (FaxState.RECEIVING, FaxState.RECEIVED, FaxState.NO_FAX)
                   for a, b in FAX_MOVES if a in DELIVERY_STATES)  # delivery never goes back to reception
    assert not any(a == b for a, b in FAX_MOVES)


def test_the_job_table():
    assert {a for a, b in JOB_MOVES if b == JobState.DELIVERING} == {JobState.QUEUED, JobState.FAILED_RETRYING}
    assert {b for a, b in JOB_MOVES if a == JobState.DELIVERING} == {
        JobState.QUEUED, JobState.DELIVERED, JobState.FAILED_RETRYING, JobState.DEAD}
    # an outcome is only ever recorded for a job in flight
    outcomes = (JobState.DELIVERED, JobState.FAILED_RETRYING, JobState.DEAD)
    assert {a for a, b in JOB_MOVES if b in outcomes} == {JobState.DELIVERING}


def test_the_alert_table():
    assert {a for a, _ in ALERT_MOVES} == {AlertState.PENDING}  # sent and abandoned are final


@given(st.lists(st.sampled_from(list(JobState)), min_size=1, max_size=8))
def test_derived_fax_state_is_worst_job_first(jobs):
    got = derived_fax_state(jobs)
    if all(j == JobState.DELIVERED for j in jobs):
        assert got == FaxState.DELIVERED
    elif JobState.DEAD in jobs:
        assert got == FaxState.DEAD
    elif JobState.FAILED_RETRYING in jobs:
        assert got == FaxState.FAILED_RETRYING
    elif set(jobs) == {JobState.QUEUED}:
        assert got == FaxState.ROUTED
    else:
        assert got == FaxState.DELIVERING
    assert got in DELIVERY_STATES and derived_fax_state(sorted(jobs)) == got  # order does not matter


# -- illegal moves through the public API -------------------------------------------------------

@pytest.mark.parametrize("outcome", ["job_delivered", "job_retry", "job_dead"])
def test_an_outcome_for_a_job_never_claimed_is_refused(spool: Spool, outcome: str):
    fax, (job,) = routed(spool, ["a@example.com"])
    args = {"job_delivered": ("250 ok",), "job_retry": ("451 later", T0 + 99), "job_dead": ("550 no",)}[outcome]
    with pytest.raises(LocalProtocolError, match=f"job {job.id}: no move from queued"):
        getattr(spool, outcome)(job.id, T0 + 5, *args)
    # nothing was written: the transaction rolled back whole
    assert spool.get_job(job.id).state == "queued" and spool.attempts(job.id) == []
    assert spool.get_fax(fax.id).state == "routed"
    assert stored(spool, "SELECT count(*) FROM attempts") == [(0,)]


def test_a_second_outcome_for_one_attempt_is_refused(spool: Spool):
    fax, (job,) = routed(spool, ["a@example.com"])
    spool.claim_due_jobs(T0 + 10)
    spool.job_delivered(job.id, T0 + 11, "250 ok")
    with pytest.raises(LocalProtocolError):
        spool.job_dead(job.id, T0 + 12, "550 too late", alert_to="admin@example.com")
    assert spool.get_job(job.id).state == "delivered" and spool.get_alert(job.id) is None
    assert len(spool.attempts(job.id)) == 1 and spool.get_fax(fax.id).state == "delivered"


def test_an_alert_is_sent_once(spool: Spool):
    _, (job,) = routed(spool, ["a@example.com"])
    spool.claim_due_jobs(T0 + 10)
    spool.job_dead(job.id, T0 + 11, "550 no", alert_to="admin@example.com")
    assert spool.get_alert(job.id)["state"] == "pending"
    spool.alert_retry(job.id, "421 busy", T0 + 60)
    assert spool.get_alert(job.id)["state"] == "pending" and spool.get_alert(job.id)["attempts"] == 1
    spool.alert_sent(job.id, T0 + 61)
    with pytest.raises(LocalProtocolError, match="no move from sent to sent"):
        spool.alert_sent(job.id, T0 + 62)
    with pytest.raises(LocalProtocolError):
        spool.alert_retry(job.id, "421 busy", T0 + 99)
    alert = spool.get_alert(job.id)
    assert alert["state"] == "sent" and alert["attempts"] == 2 and alert["sent_at"] == T0 + 61


def test_an_abandoned_alert_stays_abandoned(spool: Spool):
    _, (job,) = routed(spool, ["a@example.com"])
    spool.claim_due_jobs(T0 + 10)
    spool.job_dead(job.id, T0 + 11, "550 no", alert_to="admin@example.com")
    spool.alert_retry(job.id, "550 admin unknown", T0 + 60, give_up=True)
    assert spool.get_alert(job.id)["state"] == "abandoned" and spool.next_alert_due() is None
    with pytest.raises(LocalProtocolError, match="no move from abandoned to sent"):
        spool.alert_sent(job.id, T0 + 61)


def test_alert_calls_for_a_job_without_an_alert_change_nothing(spool: Spool):
    _, (job,) = routed(spool, ["a@example.com"])
    spool.alert_sent(job.id, T0)
    spool.alert_retry(job.id, "x", T0)
    assert spool.get_alert(job.id) is None


def test_a_fax_moved_behind_our_back_is_refused_on_its_next_move(spool: Spool):
    """A job outcome whose derived fax state is no move from the stored one rolls back whole."""
    fax, (job,) = routed(spool, ["a@example.com"])
    with sqlite3.connect(spool.db_path) as db:
        db.execute("UPDATE faxes SET state='received' WHERE id=?", (fax.id,))
        db.execute("UPDATE jobs SET state='delivering' WHERE id=?", (job.id,))
    spool.job_delivered(job.id, T0 + 5, "250 ok")  # received -> delivered: a move the table has
    assert spool.get_fax(fax.id).state == "delivered"
    with sqlite3.connect(spool.db_path) as db:
        db.execute("UPDATE faxes SET state='receiving' WHERE id=?", (fax.id,))
        db.execute("UPDATE jobs SET state='delivering' WHERE id=?", (job.id,))
    with pytest.raises(LocalProtocolError, match=f"fax {fax.id}: no move from receiving to delivered"):
        spool.job_delivered(job.id, T0 + 6, "250 ok")
    assert spool.get_job(job.id).state == "delivering" and len(spool.attempts(job.id)) == 1


def test_releasing_unclaimed_jobs_moves_nothing(spool: Spool):
    fax, jobs = routed(spool, ["a@example.com", "b@example.com"])
    spool.release_jobs([j.id for j in jobs])
    assert spool.get_fax(fax.id).state == "routed"
    assert [j.state for j in spool.jobs_for(fax.id)] == ["queued", "queued"]
    spool.release_jobs([])  # nothing to do


# -- model-based: random operations through the public API -------------------------------------

class SpoolMachine(RuleBasedStateMachine):
    """Random begin/finish/route/claim/outcome/resend/release/recover/delete against one spool."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile
        self.dir = tempfile.TemporaryDirectory()
        self.spool = Spool(Path(self.dir.name) / "spool")
        self.now = T0
        self.before: dict[int, JobState] = {}

    def teardown(self) -> None:
        self.spool.close()
        self.dir.cleanup()

    def tick(self) -> float:
        self.now += 1
        return self.now

    def snapshot(self) -> None:
        self.before = {j.id: j.state for j in self.spool.list_jobs(limit=10_000)}

    @rule(pages=st.booleans())
    def receive(self, pages: bool) -> None:
        self.snapshot()
        fax = self.spool.begin_fax(self.tick())
        if pages:
            self.spool.incoming_path(fax).write_bytes(TIFF)
        done = self.spool.finish_fax(fax.id, self.tick(), complete=True)
        assert done.state == ("received" if pages else "no_fax")

    @rule(n=st.integers(1, 3), pick=st.integers(0, 50))
    def route(self, n: int, pick: int) -> None:
        self.snapshot()
        received = self.spool.list_faxes(state="received", limit=100)
        if received:
            fax = received[pick % len(received)]
            self.spool.add_jobs(fax.id, [f"r{i}@example.com" for i in range(n)], self.tick())

    @rule(limit=st.integers(1, 4))
    def claim(self, limit: int) -> None:
        self.snapshot()
        for job in self.spool.claim_due_jobs(self.now + 10_000, limit):
            assert job.state == "delivering"

    @rule(pick=st.integers(0, 50), outcome=st.sampled_from(["ok", "retry", "dead"]))
    def attempt(self, pick: int, outcome: str) -> None:
        self.snapshot()
        flying = self.spool.list_jobs(state="delivering")
        if not flying:
            return
        job = flying[pick % len(flying)]
        if outcome == "ok":
            self.spool.job_delivered(job.id, self.tick(), "250 ok")
        elif outcome == "retry":
            self.spool.job_retry(job.id, self.tick(), "451 later", self.now + 5)
        else:
            self.spool.job_dead(job.id, self.tick(), "550 no", alert_to="admin@example.com")

    @rule(pick=st.integers(0, 50))
    def illegal_outcome(self, pick: int) -> None:
        self.snapshot()
        waiting = [j for j in self.spool.list_jobs() if j.state != "delivering"]
        if waiting:
            job = waiting[pick % len(waiting)]
            try:
                self.spool.job_delivered(job.id, self.tick(), "250 ok")
            except LocalProtocolError:
                pass
            else:
                raise AssertionError(f"a {job.state} job was marked delivered")

    @rule(pick=st.integers(0, 50), new=st.booleans())
    def resend(self, pick: int, new: bool) -> None:
        self.snapshot()
        faxes = [f for f in self.spool.list_faxes(limit=100) if f.state not in ("receiving", "no_fax")]
        if not faxes:
            return
        fax = faxes[pick % len(faxes)]
        rcpt = "late@example.com" if new else "r0@example.com"
        try:
            self.spool.resend(fax.id, rcpt, self.tick())
        except ValueError:  # still in flight: refused, nothing changes
            pass

    @rule()
    def release_all(self) -> None:
        self.snapshot()
        self.spool.release_jobs([j.id for j in self.spool.list_jobs(state="delivering")])

    @rule()
    def restart(self) -> None:
        self.snapshot()
        root = self.spool.root
        self.spool.close()
        self.spool = Spool(root)
        self.spool.recover(self.tick())
        assert self.spool.list_jobs(state="delivering") == []

    @rule(pick=st.integers(0, 50))
    def delete(self, pick: int) -> None:
        self.snapshot()
        faxes = self.spool.list_faxes(limit=100)
        if faxes:
            try:
                self.spool.delete_fax(faxes[pick % len(faxes)].id)
            except ValueError:
                pass

    @invariant()
    def jobs_moved_only_by_the_table(self) -> None:
        for job in self.spool.list_jobs(limit=10_000):
            old = self.before.get(job.id)
            if old is None:
                assert job.state == "queued", "a new job starts queued"
            elif old != job.state:
                assert (old, job.state) in JOB_MOVES, f"job {job.id} went {old} -> {job.state}"

    @invariant()
    def fax_state_follows_its_jobs(self) -> None:
        faxes = self.spool.list_faxes(limit=10_000)
        jobs = self.spool.jobs_for_faxes([f.id for f in faxes])
        for fax in faxes:
            mine = [j.state for j in jobs[fax.id]]
            assert fax.state != "receiving"
            if fax.state == "no_fax":
                assert fax.image is None
            elif mine:
                assert fax.state == derived_fax_state(mine)
            else:
                assert fax.state == "received"


TestSpoolMachine = SpoolMachine.TestCase
TestSpoolMachine.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])


def test_records_serialise_exactly_as_before(spool: Spool):
    """What the API, record.json and the control socket emit: the state as the plain string."""
    import dataclasses
    fax, (job,) = routed(spool, ["a@example.com"])
    fax = spool.get_fax(fax.id)
    as_json = json.loads(json.dumps(dataclasses.asdict(fax), default=str))
    assert as_json["state"] == "routed" and type(as_json["state"]) is str
    assert json.dumps({"state": fax.state}) == '{"state": "routed"}'
    assert json.dumps(dataclasses.asdict(spool.get_job(job.id))["state"]) == '"queued"'
    assert f"{fax.state}" == "routed" and "%s" % job.state == "queued" and repr(job.state.value) == "'queued'"
    # the stored column holds the bare string, as every older firmware wrote and reads it
    assert stored(spool, "SELECT state, typeof(state) FROM faxes") == [("routed", "text")]
    assert stored(spool, "SELECT state, typeof(state) FROM jobs") == [("queued", "text")]
