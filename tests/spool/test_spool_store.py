"""The spool's state machine, queries and files, in one process."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from appliance.spool.store import FAX_STATES, Spool
from appliance.spool.tiffpages import readable_pages
from spool_helpers import damage_last_page, make_tiff

T0 = 1_700_000_000.0


def receive(spool: Spool, data: bytes | None, *, complete: bool = True, **facts):
    fax = spool.begin_fax(T0, caller_number="+1 555 0100", called_number="5551000", **facts)
    if data is not None:
        spool.incoming_path(fax).write_bytes(data)
    return spool.finish_fax(fax.id, T0 + 30, complete=complete)


def test_layout_and_pragmas(spool: Spool):
    assert (spool.root / "incoming").is_dir()
    assert (spool.root / "faxes").is_dir()
    other = sqlite3.connect(spool.db_path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is kept in the file
    other.close()
    # per connection, so only the spool's own can tell: FULL, a commit is on disk when it returns
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_begin_fax_is_committed_at_once(spool: Spool):
    fax = spool.begin_fax(T0, line="sip:udp:127.0.0.1:5060", call_id="abc", extra={"t38": True})
    assert fax.state == "receiving" and len(fax.uid) == 16 and int(fax.uid, 16) >= 0
    other = sqlite3.connect(spool.root / "spool.db")
    assert other.execute("SELECT state, call_id FROM faxes WHERE id=?", (fax.id,)).fetchone() == ("receiving", "abc")
    assert spool.incoming_path(fax) == spool.root / "incoming" / f"{fax.uid}.tif"
    assert fax.extra == {"t38": True}


def test_unknown_fact_is_an_error(spool: Spool):
    with pytest.raises(TypeError):
        spool.begin_fax(T0, state="delivered")
    fax = spool.begin_fax(T0)
    with pytest.raises(TypeError):
        spool.update_facts(fax.id, uid="x")


def test_update_facts_merges_extra(spool: Spool):
    fax = spool.begin_fax(T0, extra={"dcs": "V.17"})
    spool.update_facts(fax.id, remote_ident="+49 30 1234", ecm=True, extra={"t38": False})
    got = spool.get_fax(fax.id)
    assert got.remote_ident == "+49 30 1234" and got.ecm is True
    assert got.extra == {"dcs": "V.17", "t38": False}


def test_finish_moves_file_and_counts_pages_from_file(spool: Spool):
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(make_tiff(3))
    done = spool.finish_fax(fax.id, T0 + 5, complete=True, pages=7, result_text="OK")
    assert done.state == "received" and done.pages == 3 and done.complete
    assert done.image == f"faxes/{fax.uid}.tif" and done.finished == T0 + 5
    assert done.result_text == "OK"
    assert not spool.incoming_path(fax).exists()
    assert readable_pages(spool.image_path(done)) == (3, 3)


def test_finish_drops_undecodable_last_page(spool: Spool):
    done = receive(spool, damage_last_page(make_tiff(3)), complete=False)
    assert done.state == "received" and done.pages == 2 and not done.complete
    assert readable_pages(spool.image_path(done)) == (2, 2)
    assert list(spool.incoming_dir.iterdir()) == []


@pytest.mark.parametrize("data", [None, b"", b"II*\x00garbage", make_tiff(2)[:300]])
def test_no_pages_is_no_fax(spool: Spool, data):
    done = receive(spool, data, complete=False)
    assert done.state == "no_fax" and done.pages == 0 and done.image is None
    assert spool.image_path(done) is None
    assert list(spool.incoming_dir.iterdir()) == [] and list(spool.faxes_dir.iterdir()) == []
    with pytest.raises(ValueError):
        spool.add_jobs(done.id, ["a@x"], T0)


def test_finish_is_idempotent(spool: Spool):
    done = receive(spool, make_tiff(1))
    again = spool.finish_fax(done.id, T0 + 99, complete=False)
    assert again == done


def test_add_jobs_stable_ids_and_idempotent(spool: Spool):
    fax = receive(spool, make_tiff(1))
    jobs = spool.add_jobs(fax.id, ["a@x", "b@x", "a@x"], T0)
    assert [j.recipient for j in jobs] == ["a@x", "b@x"]
    assert [j.message_id for j in jobs] == [f"<{fax.uid}.1@faxbridge>", f"<{fax.uid}.2@faxbridge>"]
    assert all(j.state == "queued" and j.attempts == 0 for j in jobs)
    assert spool.get_fax(fax.id).state == "routed"
    again = spool.add_jobs(fax.id, ["b@x", "c@x"], T0 + 1)
    assert [(j.recipient, j.message_id) for j in again] == [
        ("b@x", jobs[1].message_id), ("c@x", f"<{fax.uid}.3@faxbridge>")]
    assert len(spool.jobs_for(fax.id)) == 3


def test_job_lifecycle_and_fax_state(spool: Spool):
    fax = receive(spool, make_tiff(2))
    a, b = spool.add_jobs(fax.id, ["a@x", "b@x"], T0)
    assert spool.claim_due_jobs(T0 - 1) == []
    claimed = spool.claim_due_jobs(T0, limit=1)
    assert [j.id for j in claimed] == [a.id] and claimed[0].state == "delivering"
    assert spool.get_fax(fax.id).state == "delivering"
    assert spool.claim_due_jobs(T0, limit=1)[0].id == b.id
    assert spool.claim_due_jobs(T0) == []  # nobody claims a job twice

    spool.job_retry(a.id, T0 + 1, "451 try later", T0 + 60)
    assert spool.get_fax(fax.id).state == "failed_retrying"
    assert spool.next_due() == T0 + 60
    spool.job_delivered(b.id, T0 + 2, "250 ok")
    assert spool.get_fax(fax.id).state == "failed_retrying"
    assert spool.claim_due_jobs(T0 + 59) == []
    assert [j.id for j in spool.claim_due_jobs(T0 + 60)] == [a.id]
    spool.job_delivered(a.id, T0 + 61, "250 queued as X")
    assert spool.get_fax(fax.id).state == "delivered"
    got = spool.get_job(a.id)
    assert got.attempts == 2 and got.delivered_at == T0 + 61 and got.last_error == ""
    assert spool.attempts(a.id) == [
        {"job_id": a.id, "time": T0 + 1, "ok": False, "reply": "451 try later"},
        {"job_id": a.id, "time": T0 + 61, "ok": True, "reply": "250 queued as X"}]
    assert spool.next_due() is None


def test_dead_job_makes_fax_dead(spool: Spool):
    fax = receive(spool, make_tiff(1))
    a, b = spool.add_jobs(fax.id, ["a@x", "b@x"], T0)
    spool.claim_due_jobs(T0)
    spool.job_delivered(a.id, T0, "250 ok")
    spool.job_dead(b.id, T0, "550 5.1.1 no such user")
    assert spool.get_fax(fax.id).state == "dead"
    assert spool.get_job(b.id).last_error == "550 5.1.1 no such user"


def test_recover_requeues_and_returns_unrouted(spool: Spool, caplog: pytest.LogCaptureFixture):
    routed = receive(spool, make_tiff(1))
    (job,) = spool.add_jobs(routed.id, ["a@x"], T0)
    spool.claim_due_jobs(T0)
    unrouted = receive(spool, make_tiff(2))
    partial = spool.begin_fax(T0)
    spool.incoming_path(partial).write_bytes(damage_last_page(make_tiff(3)))
    empty = spool.begin_fax(T0)
    (spool.incoming_dir / "leftover.tif.trim").write_bytes(b"x")

    caplog.set_level(logging.INFO, logger="faxbridge.spool")
    counts = spool.recover(T0 + 100)
    assert counts["finished"] == 1 and counts["no_fax"] == 1 and counts["requeued"] == 1
    assert [f.id for f in counts["unrouted"]] == [unrouted.id, partial.id]
    again = spool.get_job(job.id)
    assert again.state == "queued" and again.message_id == job.message_id
    assert spool.get_fax(routed.id).state == "routed"
    p = spool.get_fax(partial.id)
    assert p.state == "received" and p.pages == 2 and not p.complete
    assert spool.get_fax(empty.id).state == "no_fax"
    assert list(spool.incoming_dir.iterdir()) == []
    # the terminal's line says it in words (it was a Python dict)
    (said,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("spool checked:")]
    assert said == ("spool checked: 1 fax(es) cut off by the last stop, kept, 1 call(s) cut off before a page, "
                    "1 delivery job(s) queued again, 1 stray file(s) removed, 2 fax(es) routed now"), said


def test_recover_after_rename_before_commit(spool: Spool):
    fax = spool.begin_fax(T0)
    os.replace(_write(spool.incoming_path(fax), make_tiff(2)), spool.faxes_dir / f"{fax.uid}.tif")
    spool.recover(T0)
    got = spool.get_fax(fax.id)
    assert got.state == "received" and got.pages == 2 and got.image == f"faxes/{fax.uid}.tif"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_list_count_search(spool: Spool):
    ids = []
    for i in range(5):
        fax = spool.begin_fax(T0 + i, caller_number=f"+1555010{i}", called_number="5551000" if i % 2 else "5552000",
                              remote_ident=f"ACME {i}", caller_name="Ärzte GmbH" if i == 3 else "")
        ids.append(fax.id)
    spool.incoming_path(spool.get_fax(ids[0])).write_bytes(make_tiff(1))
    spool.finish_fax(ids[0], T0, complete=True)
    spool.add_jobs(ids[0], ["Sales@Example.com"], T0)

    assert [f.id for f in spool.list_faxes()] == ids[::-1]
    assert [f.id for f in spool.list_faxes(limit=2, offset=1)] == [ids[3], ids[2]]
    assert spool.count_faxes() == 5
    assert spool.count_faxes(state="receiving") == 4
    assert [f.id for f in spool.list_faxes(state="routed")] == [ids[0]]
    assert spool.count_faxes(search="5551000") == 2
    assert [f.id for f in spool.list_faxes(search="acme 4")] == [ids[4]]
    assert [f.id for f in spool.list_faxes(search="sales@example")] == [ids[0]]
    assert [f.id for f in spool.list_faxes(search="ärzte")] == [ids[3]]
    assert spool.list_faxes(search="%") == []
    assert spool.get_fax(9999) is None


def test_readonly_from_another_connection(spool: Spool):
    fax = receive(spool, make_tiff(1))
    ro = Spool(spool.root, readonly=True)
    try:
        assert ro.get_fax(fax.id).pages == 1
        assert ro.count_faxes() == 1
        with pytest.raises(PermissionError):
            ro.begin_fax(T0)
        spool.begin_fax(T0 + 1)  # the writer is not blocked by an open reader
        assert ro.count_faxes() == 2
    finally:
        ro.close()


def test_readonly_needs_an_existing_spool(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        Spool(tmp_path / "nothing", readonly=True)


def test_states_are_the_published_ones(spool: Spool):
    assert FAX_STATES == ("receiving", "received", "no_fax", "routed", "delivering", "delivered",
                          "failed_retrying", "dead")


def test_release_jobs_gives_claimed_jobs_back(spool: Spool):
    fax = receive(spool, make_tiff(1))
    (job,) = spool.add_jobs(fax.id, ["a@x"], T0)
    spool.claim_due_jobs(T0)
    spool.release_jobs([job.id])
    got = spool.get_job(job.id)
    assert got.state == "queued" and got.attempts == 0 and spool.attempts(job.id) == []
    assert spool.get_fax(fax.id).state == "routed"


def test_list_queries_stay_fast_at_100k_rows(spool: Spool):
    import time as _time
    rows = [(f"{i:016x}", FAX_STATES[i % len(FAX_STATES)], T0 + i, f"555{i:07d}", "5551000", f"TSI {i}")
            for i in range(100_000)]
    db = sqlite3.connect(spool.db_path)
    with db:
        db.executemany("INSERT INTO faxes (uid, state, created, caller_number, called_number, remote_ident)"
                       " VALUES (?, ?, ?, ?, ?, ?)", rows)
    plan = " ".join(str(r[3]) for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM faxes WHERE state=? ORDER BY created DESC, id DESC LIMIT 50",
        ("dead",)))
    assert "faxes_state_created" in plan and "TEMP B-TREE" not in plan
    plan = " ".join(str(r[3]) for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM faxes ORDER BY created DESC, id DESC LIMIT 50"))
    db.close()
    assert "faxes_created" in plan and "TEMP B-TREE" not in plan
    start = _time.perf_counter()
    assert len(spool.list_faxes(offset=1000)) == 50
    assert len(spool.list_faxes(state="dead")) == 50
    assert spool.count_faxes(state="dead") == 12_500
    assert [f.uid for f in spool.list_faxes(search="tsi 99999")] == [f"{99_999:016x}"]
    assert _time.perf_counter() - start < 2.0


def test_call_diagnostics_live_and_go_with_the_fax(spool: Spool, tmp_path: Path):
    """A call's SIP messages and media capture sit beside its fax; deleting the fax, purging it or
    losing its row (strays at start-up) takes them too; another fax's stay."""
    fax = spool.begin_fax(T0, caller_number="+1")
    keep = spool.begin_fax(T0, caller_number="+2")
    spool.save_diagnostics(fax, {"sip.txt": b"INVITE ...", "pcap": bytearray(b"\xd4\xc3\xb2\xa1")})
    spool.save_diagnostics(keep, {"sip.txt": b"kept"})
    assert spool.diagnostics_path(fax, "pcap").read_bytes() == b"\xd4\xc3\xb2\xa1"
    assert spool.diagnostics_path(fax, "sip.txt").parent == spool.root / "calls"
    assert not list((spool.root / "calls").glob("*.tmp"))
    with pytest.raises(ValueError):
        spool.diagnostics_path(fax, "../spool.db")
    done = spool.finish_fax(fax.id, T0 + 30, complete=False)  # no pages: no_fax, diagnostics kept
    assert done.state == "no_fax" and spool.diagnostics_path(fax, "sip.txt").is_file()
    spool.delete_fax(fax.id)
    assert not spool.diagnostics_path(fax, "sip.txt").exists() and not spool.diagnostics_path(fax, "pcap").exists()
    assert spool.diagnostics_path(keep, "sip.txt").read_bytes() == b"kept"
    # a file no row points at (a crash between delete's commit and its unlink), and a half-written one
    (spool.root / "calls" / "0123456789abcdef.pcap").write_bytes(b"x")
    (spool.root / "calls" / f"{keep.uid}.pcap.tmp").write_bytes(b"x")
    spool.recover(T0 + 100)
    assert sorted(p.name for p in (spool.root / "calls").iterdir()) == [f"{keep.uid}.sip.txt"]
    spool.finish_fax(keep.id, T0 + 30, complete=False)
    assert spool.purge_older_than(T0 + 1) == 1 and not list((spool.root / "calls").iterdir())
