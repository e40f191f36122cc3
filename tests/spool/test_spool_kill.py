"""More kills: after a delete's commit, in the middle of deliveries, and a reader watching finish_fax.

test_spool_crash.py kills a writer at each step of receiving; these cover the other writers (delete,
claim) and check the promise the write order makes to readers: a fax whose record says it has an
image always has that image on disk, at every instant.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.spool.store import Spool
from spool_helpers import make_tiff

REPO = Path(__file__).resolve().parents[2]
TIFF = make_tiff(2)

#: a child that opens the spool and runs the Python given after it; ``spool`` and ``time`` are bound
CHILD = """
import sys, time
from pathlib import Path
from appliance.spool.store import Spool
spool = Spool(Path(sys.argv[1]))
exec(sys.argv[2])
"""


def child(root: Path, code: str, crash_at: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("FAXBRIDGE_CRASH_AT", None)
    if crash_at:
        env["FAXBRIDGE_CRASH_AT"] = crash_at
    return subprocess.Popen([sys.executable, "-c", CHILD, str(root), code], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def routed(spool: Spool, recipients: list[str], now: float | None = None):
    now = time.time() if now is None else now
    fax = spool.begin_fax(now, caller_number="5550100")
    spool.incoming_path(fax).write_bytes(TIFF)
    spool.finish_fax(fax.id, now, complete=True)
    return fax, spool.add_jobs(fax.id, recipients, now)


def test_a_kill_after_a_deletes_commit_leaves_files_that_recover_removes(tmp_path: Path):
    root = tmp_path / "spool"
    with Spool(root) as spool:
        fax, _ = routed(spool, ["a@example.com"])
        spool.save_diagnostics(fax, {"sip.txt": b"INVITE"})
        keep, _ = routed(spool, ["b@example.com"])
    proc = child(root, f"spool.delete_fax({fax.id})", crash_at="delete.committed")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 137, err
    with Spool(root) as spool:
        assert spool.get_fax(fax.id) is None and spool.final_path(fax).exists()  # rows gone, files not yet
        counts = spool.recover(time.time())
        assert counts["cleaned"] == 2  # the image and the diagnostics
        assert not spool.final_path(fax).exists() and not spool.diagnostics_path(fax, "sip.txt").exists()
        assert [f.id for f in spool.list_faxes()] == [keep.id] and spool.final_path(keep).exists()


def test_a_worker_killed_mid_delivery_resends_the_same_messages_once_each(tmp_path: Path):
    root = tmp_path / "spool"
    with Spool(root) as spool:
        fax, jobs = routed(spool, [f"r{i}@example.com" for i in range(6)])
    ids = {j.id: j.message_id for j in jobs}
    code = ("import os, signal\n"
            "for job in spool.claim_due_jobs(time.time() + 10, limit=10):\n"
            "    if job.recipient in ('r0@example.com', 'r1@example.com'):\n"
            "        spool.job_delivered(job.id, time.time(), '250 ok')\n"
            "print('claimed', flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = child(root, code)
    out, err = proc.communicate(timeout=60)
    assert "claimed" in out and proc.returncode == -9, err
    with Spool(root) as spool:
        assert len(spool.list_jobs(state="delivering")) == 4
        assert spool.recover(time.time())["requeued"] == 4
        again = spool.claim_due_jobs(time.time() + 10, limit=100)
        assert sorted(j.recipient for j in again) == [f"r{i}@example.com" for i in range(2, 6)]
        assert all(j.message_id == ids[j.id] for j in again)  # a resend is the same message
        for j in again:
            spool.job_delivered(j.id, time.time(), "250 ok")
        assert spool.get_fax(fax.id).state == "delivered"
        assert all(len(spool.attempts(j)) == 1 for j in ids)  # one accepted attempt per job, never two


@pytest.mark.parametrize("label", ["finish.fsynced", "finish.renamed", "finish.dirsynced"])
def test_a_reader_beside_a_killed_writer_never_sees_a_missing_image(tmp_path: Path, label: str):
    root = tmp_path / "spool"
    Spool(root).close()
    tiff = tmp_path / "in.tif"
    tiff.write_bytes(TIFF)
    code = ("for i in range(5):\n"
            "    fax = spool.begin_fax(time.time())\n"
            f"    spool.incoming_path(fax).write_bytes(Path({str(tiff)!r}).read_bytes())\n"
            "    if i == 4:\n"
            f"        import os; os.environ['FAXBRIDGE_CRASH_AT'] = {label!r}\n"
            "    spool.finish_fax(fax.id, time.time(), complete=True)\n")
    problems = watch_images(root, lambda: child(root, code).communicate(timeout=60))
    assert problems == []
    with Spool(root) as spool:
        spool.recover(time.time())
        faxes = spool.list_faxes()
        assert len(faxes) == 5 and all(f.state == "received" and f.pages == 2 for f in faxes)
        assert all(spool.image_path(f).is_file() for f in faxes)


def test_a_reader_beside_a_busy_writer_never_sees_a_missing_image(tmp_path: Path):
    root = tmp_path / "spool"
    with Spool(root) as spool:
        def write() -> None:
            for i in range(30):
                fax = spool.begin_fax(time.time())
                spool.incoming_path(fax).write_bytes(TIFF)
                spool.finish_fax(fax.id, time.time(), complete=True)
                if i % 3 == 0:
                    spool.add_jobs(fax.id, ["a@example.com"], time.time())
                if i % 5 == 4:
                    spool.delete_fax(fax.id)
        assert watch_images(root, write) == []
        assert spool.count_faxes() == 24


def watch_images(root: Path, writer) -> list[str]:
    """Run ``writer`` while a reader checks, over and over, that every recorded image exists."""
    problems: list[str] = []
    stop = threading.Event()
    rounds = [0]

    def reader() -> None:
        with Spool(root, readonly=True) as ro:
            while not stop.is_set():
                for fax in ro.list_faxes(limit=1000):
                    path = ro.image_path(fax)
                    if path is not None and not path.exists() and ro.get_fax(fax.id) is not None:
                        problems.append(f"fax {fax.id} ({fax.state}) records {fax.image}, which is missing")
                rounds[0] += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        writer()
    finally:
        stop.set()
        t.join(timeout=30)
    assert rounds[0] > 0, "the reader never ran"
    return problems
