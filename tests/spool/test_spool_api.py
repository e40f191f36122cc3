"""Every public method of the spool, one by one: what it returns, what it refuses, what it leaves."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.spool import store
from appliance.spool.store import (DIAGNOSTIC_FILES, SCHEMA_VERSION, FaxQuery, FaxRecord, Spool, refusal_text)
from appliance.spool.tiffpages import PageScan, RefusedPage
from spool_helpers import make_tiff

T0 = 1_700_000_000.0
TIFF = make_tiff(1)


def received(spool: Spool, now: float = T0, **facts) -> FaxRecord:
    fax = spool.begin_fax(now, **facts)
    spool.incoming_path(fax).write_bytes(TIFF)
    return spool.finish_fax(fax.id, now + 30, complete=True)


def no_fax(spool: Spool, now: float = T0) -> FaxRecord:
    fax = spool.begin_fax(now)
    return spool.finish_fax(fax.id, now + 30, complete=False)


# -- opening ---------------------------------------------------------------------------------------

def test_open_makes_the_layout_and_is_a_context_manager(tmp_path: Path):
    root = tmp_path / "a" / "spool"
    with Spool(root) as s:
        assert [p.name for p in sorted(root.iterdir()) if p.is_dir()] == ["calls", "faxes", "incoming"]
        assert s.db_path == root / "spool.db" and s.schema_version() == SCHEMA_VERSION
    with pytest.raises(sqlite3.ProgrammingError):
        s.count_faxes()  # closed


def test_a_version_1_database_is_migrated(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "spool"
    with Spool(root):
        pass
    with sqlite3.connect(root / "spool.db") as db:
        db.execute("DROP INDEX faxes_created_id")
        db.execute("DROP INDEX faxes_state_created_id")
        db.execute("CREATE INDEX faxes_created ON faxes(created)")
        db.execute("PRAGMA user_version=1")
    with caplog.at_level(logging.INFO, logger="faxbridge.spool"), Spool(root) as s:
        assert s.schema_version() == SCHEMA_VERSION
    assert "migrating to version 2" in caplog.text
    with sqlite3.connect(root / "spool.db") as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"faxes_created_id", "faxes_state_created_id"} <= names and "faxes_created" not in names


def test_a_newer_database_keeps_its_version(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "spool"
    with Spool(root):
        pass
    with sqlite3.connect(root / "spool.db") as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 3}")
    with caplog.at_level(logging.WARNING, logger="faxbridge.spool"), Spool(root) as s:
        assert s.schema_version() == SCHEMA_VERSION + 3
    assert "newer than this firmware's" in caplog.text


@pytest.mark.parametrize("write", [
    lambda s: s.begin_fax(T0), lambda s: s.update_facts(1, pages=2), lambda s: s.add_jobs(1, ["a@x"], T0),
    lambda s: s.claim_due_jobs(T0), lambda s: s.release_jobs([1]), lambda s: s.job_delivered(1, T0, "ok"),
    lambda s: s.resend(1, "a@x", T0), lambda s: s.delete_fax(1), lambda s: s.purge_older_than(T0),
    lambda s: s.alert_sent(1, T0), lambda s: s.recover(T0),
])
def test_a_read_only_spool_refuses_every_write(spool: Spool, write):
    received(spool)
    with Spool(spool.root, readonly=True) as ro:
        with pytest.raises(PermissionError):
            write(ro)
    assert spool.get_fax(1).state == "received" and spool.list_jobs() == []


# -- facts -----------------------------------------------------------------------------------------

def test_begin_fax_stores_every_fact(spool: Spool):
    facts = dict(line="modem:ttyACM0", call_id="c1", caller_number="+1", caller_name="A", called_number="2",
                 remote_ident="TSI", pages=0, bad_rows=3, bit_rate=14400, ecm=1, resolution="fine",
                 duration=12.5, result_code=-1, result_text="hangup", extra={"k": [1, 2]})
    fax = spool.begin_fax(T0, **facts)
    for k, v in facts.items():
        assert getattr(fax, k) == (True if k == "ecm" else v), k
    assert fax.ecm is True and fax.created == T0 and fax.finished is None and not fax.complete
    assert spool.get_fax_by_uid(fax.uid) == fax and spool.get_fax_by_uid("0" * 16) is None


def test_update_facts(spool: Spool):
    fax = spool.begin_fax(T0, extra={"a": 1, "b": 2})
    spool.update_facts(fax.id)  # nothing to store: nothing happens
    spool.update_facts(fax.id, remote_ident="X", extra={"b": 3, "c": 4})
    got = spool.get_fax(fax.id)
    assert got.remote_ident == "X" and got.extra == {"a": 1, "b": 3, "c": 4}
    spool.update_facts(fax.id, ecm=0, bit_rate=9600)
    got = spool.get_fax(fax.id)
    assert got.ecm is False and got.bit_rate == 9600 and got.extra == {"a": 1, "b": 3, "c": 4}
    with pytest.raises(KeyError):
        spool.update_facts(999, pages=1)
    with pytest.raises(KeyError):
        spool.update_facts(999, extra={"x": 1})
    with pytest.raises(TypeError, match="not fax facts: state, uid"):
        spool.update_facts(fax.id, state="received", uid="x")


def test_finish_fax_stores_last_facts_and_refuses_unknown_faxes(spool: Spool):
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(TIFF)
    done = spool.finish_fax(fax.id, T0 + 9, complete=True, result_code=0, result_text="OK", pages=99)
    assert (done.result_text, done.result_code, done.finished) == ("OK", 0, T0 + 9)
    assert done.pages == 1  # the file's count wins over what the call reported
    with pytest.raises(KeyError):
        spool.finish_fax(12345, T0, complete=True)


# -- paths and files ---------------------------------------------------------------------------------

def test_paths(spool: Spool):
    fax = received(spool)
    assert spool.incoming_path(fax) == spool.root / "incoming" / f"{fax.uid}.tif"
    assert spool.final_path(fax) == spool.root / "faxes" / f"{fax.uid}.tif" == spool.image_path(fax)
    for kind in DIAGNOSTIC_FILES:
        assert spool.diagnostics_path(fax, kind) == spool.root / "calls" / f"{fax.uid}.{kind}"
    with pytest.raises(ValueError):
        spool.diagnostics_path(fax, "../../etc/passwd")
    assert spool.image_path(no_fax(spool)) is None


def test_save_diagnostics_replaces_whole_files(spool: Spool):
    fax = spool.begin_fax(T0)
    spool.save_diagnostics(fax, {"sip.txt": b"one", "pcap": bytearray(b"\xd4\xc3\xb2\xa1")})
    spool.save_diagnostics(fax, {"sip.txt": b"two"})
    assert spool.diagnostics_path(fax, "sip.txt").read_bytes() == b"two"
    assert spool.diagnostics_path(fax, "pcap").read_bytes() == b"\xd4\xc3\xb2\xa1"
    assert sorted(p.name for p in spool.calls_dir.iterdir()) == [f"{fax.uid}.pcap", f"{fax.uid}.sip.txt"]
    with pytest.raises(ValueError):
        spool.save_diagnostics(fax, {"exe": b"x"})


# -- listing -----------------------------------------------------------------------------------------

def test_list_faxes_filters(spool: Spool):
    a = received(spool, T0, caller_number="+4930111", caller_name="Dr. Müller", called_number="100",
                 remote_ident="ACME")
    b = received(spool, T0 + 100, caller_number="+4930222", called_number="200", remote_ident="50%_off")
    c = no_fax(spool, T0 + 200)
    spool.add_jobs(a.id, ["sales@example.com"], T0 + 300)

    def ids(**kw) -> list[int]:
        return [f.id for f in spool.list_faxes(query=FaxQuery(**kw))]

    assert ids() == [c.id, b.id, a.id]
    assert ids(state="no_fax") == [c.id] and ids(state="routed") == [a.id]
    assert ids(since=T0 + 100) == [c.id, b.id] and ids(until=T0 + 100) == [a.id]
    assert ids(caller="müller") == [a.id] and ids(caller="MÜLLER") == [a.id] and ids(caller="30222") == [b.id]
    assert ids(called="200") == [b.id] and ids(tsi="acme") == [a.id]
    assert ids(recipient="SALES") == [a.id] and ids(recipient="nobody") == []
    assert ids(tsi="50%") == [b.id] and ids(tsi="0%_") == [b.id] and ids(tsi="5_") == []  # no wildcards
    assert ids(search="acme", since=T0 + 1) == []
    assert spool.count_faxes(query=FaxQuery(caller="+4930")) == 2
    assert FaxQuery().active() is False and FaxQuery(tsi="x").active() and not FaxQuery(search="").active()


def test_count_faxes_cap(spool: Spool):
    for i in range(7):
        spool.begin_fax(T0 + i)
    assert spool.count_faxes() == 7
    assert spool.count_faxes(cap=3) == 4  # "more than 3"
    assert spool.count_faxes(cap=10) == 7
    assert spool.count_faxes(state="receiving", cap=0) == 1


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(created=st.lists(st.integers(0, 5), min_size=0, max_size=15), page=st.integers(1, 4))
def test_cursors_walk_every_fax_once_both_ways(tmp_path_factory, created, page):
    with Spool(tmp_path_factory.mktemp("s") / "spool") as spool:
        for c in created:
            spool.begin_fax(T0 + c)  # many share a time: the id breaks the tie
        everything = [f.id for f in spool.list_faxes(limit=1000)]
        assert everything == [f.id for f in sorted(spool.list_faxes(limit=1000),
                                                   key=lambda f: (f.created, f.id), reverse=True)]
        walked: list[int] = []
        batch = spool.list_faxes(limit=page)
        while batch:
            walked += [f.id for f in batch]
            batch = spool.list_faxes(limit=page, before=(batch[-1].created, batch[-1].id))
        assert walked == everything
        back: list[int] = []
        if everything:
            last = spool.get_fax(everything[-1])
            back = [last.id]
            batch = spool.list_faxes(limit=page, after=(last.created, last.id))
            while batch:
                back = [f.id for f in batch] + back
                batch = spool.list_faxes(limit=page, after=(batch[0].created, batch[0].id))
        assert back == everything


def test_jobs_for_faxes(spool: Spool):
    a, b, c = received(spool), received(spool, T0 + 1), received(spool, T0 + 2)
    spool.add_jobs(a.id, ["x@e", "y@e"], T0 + 40)
    spool.add_jobs(c.id, ["z@e"], T0 + 40)
    got = spool.jobs_for_faxes([a.id, b.id, c.id])
    assert {k: [j.recipient for j in v] for k, v in got.items()} == {a.id: ["x@e", "y@e"], b.id: [], c.id: ["z@e"]}
    assert spool.jobs_for_faxes([]) == {}


# -- jobs ------------------------------------------------------------------------------------------

def test_add_jobs(spool: Spool):
    fax = received(spool)
    jobs = spool.add_jobs(fax.id, ["a@e", "b@e", "a@e"], T0 + 40)
    assert [(j.recipient, j.message_id, j.state, j.attempts) for j in jobs] == [
        ("a@e", f"<{fax.uid}.1@faxbridge>", "queued", 0), ("b@e", f"<{fax.uid}.2@faxbridge>", "queued", 0)]
    more = spool.add_jobs(fax.id, ["b@e", "c@e"], T0 + 50)
    assert [(j.recipient, j.message_id) for j in more] == [("b@e", f"<{fax.uid}.2@faxbridge>"),
                                                            ("c@e", f"<{fax.uid}.3@faxbridge>")]
    assert len(spool.jobs_for(fax.id)) == 3 and spool.get_fax(fax.id).state == "routed"
    with pytest.raises(KeyError):
        spool.add_jobs(999, ["a@e"], T0)
    receiving = spool.begin_fax(T0)
    with pytest.raises(ValueError, match="receiving"):
        spool.add_jobs(receiving.id, ["a@e"], T0)
    nothing = no_fax(spool)
    with pytest.raises(ValueError, match="no_fax"):
        spool.add_jobs(nothing.id, ["a@e"], T0)


def test_a_notice_on_a_call_without_pages_keeps_it_no_fax(spool: Spool):
    nothing = no_fax(spool)
    (job,) = spool.add_jobs(nothing.id, ["um@e"], T0 + 40, notice=True)
    spool.claim_due_jobs(T0 + 50)
    spool.job_delivered(job.id, T0 + 51, "250 ok")
    assert spool.get_fax(nothing.id).state == "no_fax" and spool.get_job(job.id).state == "delivered"


def test_claim_due_jobs_order_limit_and_once(spool: Spool):
    fax = received(spool)
    jobs = spool.add_jobs(fax.id, ["a@e", "b@e", "c@e"], T0 + 40)
    spool.claim_due_jobs(T0 + 40, limit=1)
    spool.job_retry(jobs[0].id, T0 + 41, "451", T0 + 45)  # due before the others are claimed again
    assert spool.claim_due_jobs(T0 + 39) == []  # not due yet
    assert [j.recipient for j in spool.claim_due_jobs(T0 + 100, limit=2)] == ["b@e", "c@e"]
    assert [j.recipient for j in spool.claim_due_jobs(T0 + 100)] == ["a@e"]
    assert spool.claim_due_jobs(T0 + 10**6) == []  # all in flight: nobody claims them twice
    assert spool.get_fax(fax.id).state == "delivering"


def test_next_due(spool: Spool):
    assert spool.next_due() is None
    fax = received(spool)
    a, b = spool.add_jobs(fax.id, ["a@e", "b@e"], T0 + 40)
    assert spool.next_due() == T0 + 40
    spool.claim_due_jobs(T0 + 40)
    assert spool.next_due() is None  # both in flight
    spool.job_retry(a.id, T0 + 41, "451", T0 + 500)
    spool.job_delivered(b.id, T0 + 41, "250")
    assert spool.next_due() == T0 + 500


@pytest.mark.parametrize("call", [lambda s: s.job_delivered(77, T0, "x"), lambda s: s.job_retry(77, T0, "x", T0),
                                  lambda s: s.job_dead(77, T0, "x")])
def test_an_outcome_for_an_unknown_job_is_a_key_error(spool: Spool, call):
    with pytest.raises(KeyError):
        call(spool)


def test_get_job_and_list_jobs(spool: Spool):
    fax = received(spool)
    a, b, c = spool.add_jobs(fax.id, ["a@e", "b@e", "c@e"], T0 + 40)
    spool.claim_due_jobs(T0 + 40, limit=1)
    assert spool.get_job(a.id).state == "delivering" and spool.get_job(9999) is None
    assert [j.id for j in spool.list_jobs()] == [c.id, b.id, a.id]
    assert [j.id for j in spool.list_jobs(state="queued")] == [c.id, b.id]
    assert [j.id for j in spool.list_jobs(limit=1)] == [c.id]


def test_attempts_are_kept_in_order(spool: Spool):
    fax = received(spool)
    (job,) = spool.add_jobs(fax.id, ["a@e"], T0 + 40)
    for i, reply in enumerate(["451 one", "451 two"]):
        spool.claim_due_jobs(T0 + 10**5)
        spool.job_retry(job.id, T0 + 50 + i, reply, T0 + 60 + i)
    spool.claim_due_jobs(T0 + 10**5)
    spool.job_delivered(job.id, T0 + 70, "250 ok")
    assert spool.attempts(job.id) == [
        {"job_id": job.id, "time": T0 + 50, "ok": False, "reply": "451 one"},
        {"job_id": job.id, "time": T0 + 51, "ok": False, "reply": "451 two"},
        {"job_id": job.id, "time": T0 + 70, "ok": True, "reply": "250 ok"}]
    got = spool.get_job(job.id)
    assert got.attempts == 3 and got.last_error == "" and got.delivered_at == T0 + 70


def test_dead_letter_alerts(spool: Spool):
    fax = received(spool)
    a, b = spool.add_jobs(fax.id, ["a@e", "b@e"], T0 + 40)
    spool.claim_due_jobs(T0 + 40)
    spool.job_dead(a.id, T0 + 50, "550 no", alert_to="admin@e")
    spool.job_dead(b.id, T0 + 60, "550 no")  # no admin: nothing owed
    assert spool.get_alert(b.id) is None
    alert = spool.get_alert(a.id)
    assert (alert["admin"], alert["state"], alert["next_attempt"], alert["created"]) == ("admin@e", "pending",
                                                                                         T0 + 50, T0 + 50)
    assert spool.due_alerts(T0 + 49) == [] and [x["job_id"] for x in spool.due_alerts(T0 + 50)] == [a.id]
    assert spool.next_alert_due() == T0 + 50
    spool.alert_retry(a.id, "421 later", T0 + 90)
    assert spool.due_alerts(T0 + 89) == [] and spool.next_alert_due() == T0 + 90
    assert spool.get_alert(a.id)["last_error"] == "421 later"
    spool.alert_sent(a.id, T0 + 95)
    assert spool.due_alerts(T0 + 10**6) == [] and spool.next_alert_due() is None


# -- resending -----------------------------------------------------------------------------------------

def test_resend_rearms_a_finished_job_with_a_new_message_id(spool: Spool):
    fax = received(spool)
    (job,) = spool.add_jobs(fax.id, ["a@e"], T0 + 40)
    spool.claim_due_jobs(T0 + 40)
    spool.job_dead(job.id, T0 + 50, "550 no", alert_to="admin@e")
    again = spool.resend(fax.id, "a@e", T0 + 100)
    assert again.id == job.id and again.message_id != job.message_id and again.message_id.startswith(f"<{fax.uid}.")
    assert (again.state, again.attempts, again.last_error, again.created, again.next_attempt) == (
        "queued", 0, "", T0 + 100, T0 + 100)
    assert spool.get_alert(job.id) is None and len(spool.attempts(job.id)) == 1  # the history stays
    assert spool.get_fax(fax.id).state == "routed"


def test_resend_to_a_new_recipient_and_its_refusals(spool: Spool):
    fax = received(spool)
    (job,) = spool.add_jobs(fax.id, ["a@e"], T0 + 40)
    new = spool.resend(fax.id, "b@e", T0 + 41)
    assert new.recipient == "b@e" and new.state == "queued" and len(spool.jobs_for(fax.id)) == 2
    with pytest.raises(ValueError, match="still queued"):
        spool.resend(fax.id, "a@e", T0 + 42)
    spool.claim_due_jobs(T0 + 50)
    with pytest.raises(ValueError, match="still delivering"):
        spool.resend(fax.id, "a@e", T0 + 51)
    with pytest.raises(KeyError):
        spool.resend(999, "a@e", T0)
    with pytest.raises(ValueError, match="receiving"):
        spool.resend(spool.begin_fax(T0).id, "a@e", T0)
    with pytest.raises(ValueError, match="no_fax"):
        spool.resend(no_fax(spool).id, "a@e", T0)


# -- deleting ------------------------------------------------------------------------------------------

def test_delete_fax_removes_rows_and_files(spool: Spool):
    fax = received(spool)
    (job,) = spool.add_jobs(fax.id, ["a@e"], T0 + 40)
    spool.claim_due_jobs(T0 + 40)
    spool.job_dead(job.id, T0 + 50, "550", alert_to="admin@e")
    spool.save_diagnostics(fax, {"sip.txt": b"x"})
    cache = spool.root / "cache"
    cache.mkdir()
    (cache / f"{fax.uid}-1.png").write_bytes(b"png")
    (cache / "other-1.png").write_bytes(b"png")
    gone = spool.delete_fax(fax.id)
    assert gone.id == fax.id and spool.get_fax(fax.id) is None and spool.get_job(job.id) is None
    assert spool.attempts(job.id) == [] and spool.get_alert(job.id) is None
    assert not spool.final_path(fax).exists() and not spool.diagnostics_path(fax, "sip.txt").exists()
    assert [p.name for p in cache.iterdir()] == ["other-1.png"]
    with pytest.raises(KeyError):
        spool.delete_fax(fax.id)


def test_delete_fax_refuses_while_busy(spool: Spool):
    receiving = spool.begin_fax(T0)
    with pytest.raises(ValueError, match="still being received"):
        spool.delete_fax(receiving.id)
    fax = received(spool)
    spool.add_jobs(fax.id, ["a@e", "b@e"], T0 + 40)
    spool.claim_due_jobs(T0 + 40, limit=1)
    with pytest.raises(ValueError, match="being delivered"):
        spool.delete_fax(fax.id)
    assert len(spool.jobs_for(fax.id)) == 2 and spool.final_path(fax).exists()


def test_purge_keeps_what_is_still_owed(spool: Spool, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture):
    monkeypatch.setattr(store, "PURGE_BATCH", 2)
    old = [received(spool, T0 + i) for i in range(5)]
    for f in old:
        spool.add_jobs(f.id, ["a@e"], T0 + 40)
    spool.claim_due_jobs(T0 + 100, limit=4)
    for f in old[:4]:
        spool.job_delivered(spool.jobs_for(f.id)[0].id, T0 + 101, "250")
    owed = old[4]  # still queued
    nothing = no_fax(spool, T0 + 10)
    receiving = spool.begin_fax(T0 + 11)
    unrouted = received(spool, T0 + 12)
    young = no_fax(spool, T0 + 10**6)
    with caplog.at_level(logging.INFO, logger="faxbridge.spool"):
        assert spool.purge_older_than(T0 + 1000) == 5
    assert "5 fax(es)" in caplog.text
    left = {f.id for f in spool.list_faxes(limit=100)}
    assert left == {owed.id, receiving.id, unrouted.id, young.id} and nothing.id not in left
    assert spool.purge_older_than(T0 + 1000) == 0


# -- recovery ------------------------------------------------------------------------------------------

def test_recover_reports_in_words(spool: Spool, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="faxbridge.spool"):
        counts = spool.recover(T0)
    assert counts == {"finished": 0, "no_fax": 0, "requeued": 0, "cleaned": 0, "unrouted": []}
    assert "spool checked: all in order" in caplog.text
    spool.begin_fax(T0)
    (spool.faxes_dir / "stray.tif").write_bytes(b"x")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="faxbridge.spool"):
        counts = spool.recover(T0 + 1)
    assert counts["no_fax"] == 1 and counts["cleaned"] == 1
    assert "1 call(s) cut off before a page" in caplog.text and "1 stray file(s) removed" in caplog.text


def test_recover_requeues_in_flight_jobs_due_now(spool: Spool):
    fax = received(spool)
    a, b = spool.add_jobs(fax.id, ["a@e", "b@e"], T0 + 40)
    spool.claim_due_jobs(T0 + 40)
    spool.job_retry(a.id, T0 + 41, "451", T0 + 10**6)
    counts = spool.recover(T0 + 60)
    assert counts["requeued"] == 1
    assert spool.get_job(b.id).state == "queued" and spool.get_job(b.id).next_attempt == T0 + 40
    assert spool.get_job(a.id).state == "failed_retrying"  # a retry keeps its own time
    assert spool.get_fax(fax.id).state == "failed_retrying"


# -- the refusal text ----------------------------------------------------------------------------------

def refused(n: int) -> tuple[RefusedPage, ...]:
    return tuple(RefusedPage(i + 1, 9000, 9000, 196.0, f"page {i + 1} too large") for i in range(n))


@pytest.mark.parametrize("scan, text", [
    (PageScan(3, 3), ""),
    (PageScan(1, 1, refused(1)), "refused, not delivered: page 1 too large"),
    (PageScan(4, 4, refused(2)), "2 of 4 pages refused, not delivered: page 1 too large; page 2 too large"),
    (PageScan(9, 9, refused(5)), "5 of 9 pages refused, not delivered: page 1 too large; page 2 too large; "
                                 "page 3 too large; and 2 more"),
])
def test_refusal_text(scan: PageScan, text: str):
    assert refusal_text(scan) == text
