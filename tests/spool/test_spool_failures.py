"""The spool when things go wrong: an exception at each step of finish_fax, a full disk, a locked or
damaged database, readers running beside the writer (WAL).

The crash points are the ones the SIGKILL tests in test_spool_crash.py stop a child process at; here
an exception is raised there in-process (a bug, an I/O error), the spool is closed and opened again,
and after ``recover`` the fax must be there exactly once with its pages.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from appliance.spool import store
from appliance.spool.states import FaxState, JobState
from appliance.spool.store import Spool
from appliance.spool.tiffpages import readable_pages
from spool_helpers import damage_last_page, make_tiff

T0 = 1_700_000_000.0
PAGES = 3
TIFF = make_tiff(PAGES)
FINISH_POINTS = ["finish.counted", "finish.fsynced", "finish.renamed", "finish.dirsynced", "finish.committed"]


class Cut(Exception):
    """Stands for whatever stopped the writer at a crash point."""


def cut_at(monkeypatch: pytest.MonkeyPatch, label: str) -> list[str]:
    """Raise Cut at ``label``; returns the labels passed, in order."""
    seen: list[str] = []

    def point(name: str) -> None:
        seen.append(name)
        if name == label:
            raise Cut(name)

    monkeypatch.setattr(store, "crash_point", point)
    return seen


def reopen(spool: Spool) -> Spool:
    root = spool.root
    spool.close()
    return Spool(root)


def only_fax(spool: Spool):
    faxes = spool.list_faxes(limit=100)
    assert len(faxes) == 1, f"{len(faxes)} faxes, expected exactly one"
    assert spool.count_faxes() == 1
    return faxes[0]


def files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# -- an exception between fsync, rename and commit ----------------------------------------------

def test_finish_passes_its_crash_points_in_order(spool: Spool, monkeypatch: pytest.MonkeyPatch):
    seen = cut_at(monkeypatch, "never")
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(TIFF)
    spool.finish_fax(fax.id, T0 + 30, complete=True)
    assert seen == ["begin.committed"] + FINISH_POINTS


@pytest.mark.parametrize("label", FINISH_POINTS)
def test_an_exception_in_finish_then_reopen_keeps_the_fax_once(spool: Spool, monkeypatch: pytest.MonkeyPatch,
                                                               label: str):
    cut_at(monkeypatch, label)
    fax = spool.begin_fax(T0, caller_number="5550100")
    spool.incoming_path(fax).write_bytes(TIFF)
    with pytest.raises(Cut):
        spool.finish_fax(fax.id, T0 + 30, complete=True)
    committed = label == "finish.committed"
    assert spool.get_fax(fax.id).state == ("received" if committed else "receiving")
    monkeypatch.setattr(store, "crash_point", lambda name: None)
    spool = reopen(spool)
    try:
        counts = spool.recover(T0 + 60)
        assert counts["finished"] == (0 if committed else 1) and counts["no_fax"] == 0
        got = only_fax(spool)
        assert got.uid == fax.uid and got.state == FaxState.RECEIVED and got.pages == PAGES
        assert got.complete == committed  # recovery cannot know the call ended well
        assert files(spool.faxes_dir) == [f"{fax.uid}.tif"] and files(spool.incoming_dir) == []
        assert readable_pages(spool.image_path(got)) == (PAGES, PAGES)
        assert [f.uid for f in counts["unrouted"]] == [fax.uid]
        spool.add_jobs(got.id, ["a@example.com"], T0 + 61)
        again = spool.recover(T0 + 62)  # a second recovery finds nothing left to do
        assert again["finished"] == again["no_fax"] == again["requeued"] == again["cleaned"] == 0
        assert again["unrouted"] == [] and len(spool.jobs_for(got.id)) == 1
    finally:
        spool.close()


@pytest.mark.parametrize("label", FINISH_POINTS[:-1])
def test_finishing_again_in_the_same_process_completes_the_fax(spool: Spool, monkeypatch: pytest.MonkeyPatch,
                                                               label: str):
    """The daemon's own retry (or recover without a restart) picks up from the file wherever it is."""
    cut_at(monkeypatch, label)
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(TIFF)
    with pytest.raises(Cut):
        spool.finish_fax(fax.id, T0 + 30, complete=True)
    monkeypatch.setattr(store, "crash_point", lambda name: None)
    done = spool.finish_fax(fax.id, T0 + 40, complete=True)
    assert done.state == "received" and done.complete and done.pages == PAGES and done.finished == T0 + 40
    assert files(spool.faxes_dir) == [f"{fax.uid}.tif"] and files(spool.incoming_dir) == []


def test_an_exception_after_the_no_fax_commit_leaves_a_stray_that_recover_sweeps(
        spool: Spool, monkeypatch: pytest.MonkeyPatch):
    cut_at(monkeypatch, "finish.nofax_committed")
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(b"II*\x00no pages here")
    with pytest.raises(Cut):
        spool.finish_fax(fax.id, T0 + 30, complete=False)
    assert files(spool.incoming_dir) == [f"{fax.uid}.tif"]
    monkeypatch.setattr(store, "crash_point", lambda name: None)
    spool = reopen(spool)
    try:
        counts = spool.recover(T0 + 60)
        assert counts["cleaned"] == 1 and counts["unrouted"] == []
        assert only_fax(spool).state == FaxState.NO_FAX and files(spool.incoming_dir) == []
    finally:
        spool.close()


def test_an_exception_inside_add_jobs_rolls_the_jobs_back(spool: Spool, monkeypatch: pytest.MonkeyPatch):
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(TIFF)
    spool.finish_fax(fax.id, T0 + 30, complete=True)
    cut_at(monkeypatch, "add_jobs.inserted")
    with pytest.raises(Cut):
        spool.add_jobs(fax.id, ["a@example.com", "b@example.com"], T0 + 31)
    assert spool.jobs_for(fax.id) == [] and spool.get_fax(fax.id).state == "received"
    monkeypatch.setattr(store, "crash_point", lambda name: None)
    jobs = spool.add_jobs(fax.id, ["a@example.com", "b@example.com"], T0 + 32)
    assert [j.message_id for j in jobs] == [f"<{fax.uid}.1@faxbridge>", f"<{fax.uid}.2@faxbridge>"]


def test_an_exception_during_recovery_is_finished_by_the_next(spool: Spool, monkeypatch: pytest.MonkeyPatch):
    uids = []
    for i in range(3):
        fax = spool.begin_fax(T0 + i)
        spool.incoming_path(fax).write_bytes(TIFF)
        uids.append(fax.uid)
    spool = reopen(spool)
    calls = {"n": 0}

    def second_rename_fails(name: str) -> None:
        if name == "finish.renamed":
            calls["n"] += 1
            if calls["n"] == 2:
                raise Cut(name)

    monkeypatch.setattr(store, "crash_point", second_rename_fails)
    with pytest.raises(Cut):
        spool.recover(T0 + 60)
    monkeypatch.setattr(store, "crash_point", lambda name: None)
    spool = reopen(spool)
    try:
        counts = spool.recover(T0 + 70)
        assert counts["finished"] == 2  # the first was finished before the cut
        faxes = spool.list_faxes()
        assert sorted(f.uid for f in faxes) == sorted(uids) and all(f.state == "received" for f in faxes)
        assert files(spool.faxes_dir) == sorted(f"{u}.tif" for u in uids)
    finally:
        spool.close()


# -- a full disk ---------------------------------------------------------------------------------

def enospc(*_args: object, **_kw: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["fsync_file", "replace", "fsync_dir"])
def test_a_full_disk_in_finish_leaves_the_fax_receiving_for_recovery(spool: Spool, monkeypatch: pytest.MonkeyPatch,
                                                                     where: str):
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(TIFF)
    if where == "replace":
        monkeypatch.setattr(store.os, "replace", enospc)
    else:
        monkeypatch.setattr(store, where, enospc)
    with pytest.raises(OSError) as e:
        spool.finish_fax(fax.id, T0 + 30, complete=True)
    assert e.value.errno == errno.ENOSPC
    assert spool.get_fax(fax.id).state == "receiving"  # never committed as received without a durable file
    monkeypatch.undo()
    spool = reopen(spool)
    try:
        spool.recover(T0 + 60)
        got = only_fax(spool)
        assert got.state == "received" and got.pages == PAGES
        assert files(spool.faxes_dir) == [f"{fax.uid}.tif"] and files(spool.incoming_dir) == []
    finally:
        spool.close()


def test_a_full_disk_while_trimming_keeps_the_whole_file(spool: Spool, monkeypatch: pytest.MonkeyPatch):
    """keep_first_pages cannot write: the good pages still count, the file stays as it came."""
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(damage_last_page(TIFF))
    monkeypatch.setattr(store, "keep_first_pages", enospc)
    done = spool.finish_fax(fax.id, T0 + 30, complete=True)
    assert done.state == "received" and done.pages == PAGES - 1


def test_a_full_disk_for_diagnostics_costs_only_the_diagnostics(spool: Spool, monkeypatch: pytest.MonkeyPatch):
    fax = spool.begin_fax(T0)
    real = Path.write_bytes

    def half_then_full(self: Path, data: bytes) -> int:
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError):
        spool.save_diagnostics(fax, {"sip.txt": b"INVITE sip:fax@box SIP/2.0\r\n" * 10})
    monkeypatch.undo()
    assert not spool.diagnostics_path(fax, "sip.txt").exists()  # never a half file under the real name
    assert files(spool.calls_dir) == [f"{fax.uid}.sip.txt.tmp"]
    spool.incoming_path(fax).write_bytes(TIFF)
    spool.finish_fax(fax.id, T0 + 30, complete=True)
    assert spool.recover(T0 + 60)["cleaned"] == 1 and files(spool.calls_dir) == []


def test_a_full_database_refuses_the_write_and_keeps_what_was_committed(spool: Spool):
    first = spool.begin_fax(T0, caller_number="5550100")
    pages = spool._db.execute("PRAGMA page_count").fetchone()[0]
    # the spool's own connection, for a limit only it can set: SQLite's way of saying "disk full"
    spool._db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        for i in range(1000):
            spool.begin_fax(T0 + i, caller_name="x" * 4000)
    kept = spool.list_faxes(limit=10_000)
    assert first.id in {f.id for f in kept}
    assert all(f.state == "receiving" for f in kept)
    spool._db.execute("PRAGMA max_page_count=1073741823")
    later = spool.begin_fax(T0 + 5000)
    assert spool.get_fax(later.id).state == "receiving"


# -- a locked or damaged database ----------------------------------------------------------------

def test_a_writer_waits_for_another_processes_lock(spool: Spool):
    other = sqlite3.connect(spool.db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    start = time.monotonic()
    fax = spool.begin_fax(T0)
    assert time.monotonic() - start >= 0.25  # it waited for the lock instead of failing
    assert spool.get_fax(fax.id).state == "receiving"
    other.close()


def test_a_lock_held_too_long_fails_the_write_cleanly(spool: Spool):
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(TIFF)
    spool._db.execute("PRAGMA busy_timeout=100")  # the spool waits 5 s; the test need not
    other = sqlite3.connect(spool.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        spool.finish_fax(fax.id, T0 + 30, complete=True)
    other.execute("ROLLBACK")
    other.close()
    assert spool.get_fax(fax.id).state == "receiving"
    # the file was made durable and renamed before the commit failed: finishing again commits it
    done = spool.finish_fax(fax.id, T0 + 40, complete=True)
    assert done.state == "received" and done.pages == PAGES
    assert files(spool.faxes_dir) == [f"{fax.uid}.tif"]


def test_readers_are_never_blocked_by_a_writer(spool: Spool):
    fax = spool.begin_fax(T0)
    other = sqlite3.connect(spool.db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE faxes SET caller_number='uncommitted' WHERE id=?", (fax.id,))
    with Spool(spool.root, readonly=True) as ro:
        start = time.monotonic()
        assert ro.get_fax(fax.id).caller_number == ""  # WAL: the last committed version
        assert spool.get_fax(fax.id).caller_number == ""
        assert time.monotonic() - start < 1.0
    other.execute("COMMIT")
    other.close()
    assert spool.get_fax(fax.id).caller_number == "uncommitted"


def test_concurrent_readers_see_only_whole_commits(spool: Spool):
    """Threads read (read-only spools, as the web process does) while the daemon's spool writes."""
    errors: list[BaseException] = []
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        try:
            with Spool(spool.root, readonly=True) as ro:
                last = 0
                while not stop.is_set():
                    faxes = ro.list_faxes(limit=1000)
                    jobs = ro.jobs_for_faxes([f.id for f in faxes])
                    for f in faxes:
                        # add_jobs commits the jobs and the routed state together, so a routed fax
                        # has its jobs (read later, the jobs can only be more: two reads, two snapshots)
                        assert f.state != "routed" or len(jobs[f.id]) == 2, (f.state, jobs[f.id])
                        assert f.state in ("receiving", "received", "routed")
                    assert len(faxes) >= last  # nothing committed ever disappears
                    last = len(faxes)
                    seen.append(last)
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(25):
            fax = spool.begin_fax(T0 + i)
            spool.incoming_path(fax).write_bytes(TIFF)
            spool.finish_fax(fax.id, T0 + i + 1, complete=True)
            spool.add_jobs(fax.id, ["a@example.com", "b@example.com"], T0 + i + 2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    assert seen and max(seen) <= 25 and spool.count_faxes() == 25


def test_claims_from_two_spools_never_share_a_job(spool: Spool):
    """Two writers (two objects, two connections) claiming at once: each job goes to one of them."""
    fax = spool.begin_fax(T0)
    spool.incoming_path(fax).write_bytes(TIFF)
    spool.finish_fax(fax.id, T0 + 1, complete=True)
    spool.add_jobs(fax.id, [f"r{i}@example.com" for i in range(40)], T0 + 2)
    second = Spool(spool.root)
    got: dict[str, list[int]] = {"a": [], "b": []}

    def claim(name: str, s: Spool) -> None:
        while batch := s.claim_due_jobs(T0 + 10, limit=3):
            got[name] += [j.id for j in batch]

    threads = [threading.Thread(target=claim, args=("a", spool)), threading.Thread(target=claim, args=("b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    second.close()
    assert sorted(got["a"] + got["b"]) == [j.id for j in spool.jobs_for(fax.id)]
    assert all(j.state == JobState.DELIVERING for j in spool.jobs_for(fax.id))


def test_a_damaged_database_is_refused_at_open(tmp_path: Path):
    root = tmp_path / "spool"
    Spool(root).close()
    db = root / "spool.db"
    db.write_bytes(b"this is not an SQLite database, it was overwritten " * 100)
    for name in ("spool.db-wal", "spool.db-shm"):
        (root / name).unlink(missing_ok=True)
    with pytest.raises(sqlite3.DatabaseError):
        Spool(root)
    with pytest.raises(sqlite3.DatabaseError):
        Spool(root, readonly=True).list_faxes()

