"""Durability: kill a writer at every step of finish_fax/add_jobs (and at random), then recover.

After ``recover()`` and routing, every fax the writer began is present exactly once: either fully
received with the right pages and a readable file, or kept as incomplete/no_fax; never lost,
never with a duplicate job.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.spool.store import Spool
from appliance.spool.tiffpages import readable_pages
from spool_helpers import damage_last_page, make_tiff

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")
RECIPIENTS = ["a@example.com", "b@example.com"]


def run_child(root: Path, tiff: Path, count: int, crash_at: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("FAXBRIDGE_CRASH_AT", None)
    if crash_at:
        env["FAXBRIDGE_CRASH_AT"] = crash_at
    return subprocess.Popen([sys.executable, str(CHILD), str(root), str(tiff), str(count)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def recover_and_route(root: Path) -> Spool:
    spool = Spool(root)
    for fax in spool.recover(time.time())["unrouted"]:
        spool.add_jobs(fax.id, RECIPIENTS, time.time())
    return spool


def check_invariants(spool: Spool, full_pages: int, begun: set[str], done: set[str],
                     only: set[str] | None = None) -> None:
    """``only``: decode just these faxes' files (the rest were checked in earlier rounds)."""
    faxes = spool.list_faxes(limit=100_000)
    by_uid = {f.uid: f for f in faxes}
    assert len(by_uid) == len(faxes), "a fax was duplicated"
    assert begun <= set(by_uid), f"lost faxes: {begun - set(by_uid)}"
    referenced = {f.image for f in faxes if f.image}
    for fax in faxes:
        assert fax.state != "receiving"
        if only is not None and fax.uid not in only:
            continue
        if fax.state == "no_fax":
            assert fax.image is None and fax.pages == 0
            continue
        assert 1 <= fax.pages <= full_pages
        assert readable_pages(spool.image_path(fax)) == (fax.pages, fax.pages)
        if fax.complete:
            assert fax.pages == full_pages
        jobs = spool.jobs_for(fax.id)
        assert sorted(j.recipient for j in jobs) == RECIPIENTS
        assert {j.message_id for j in jobs} == {f"<{fax.uid}.{n}@faxbridge>" for n in (1, 2)}
    for uid in done if only is None else done & only:
        fax = by_uid[uid]
        assert fax.state != "no_fax" and fax.pages == full_pages and fax.complete
    assert list(spool.incoming_dir.iterdir()) == []
    assert {str(p.relative_to(spool.root)) for p in spool.faxes_dir.iterdir()} == referenced


def parse(out: str) -> tuple[set[str], set[str]]:
    begun = set(re.findall(r"^begun (\w+)$", out, re.M))
    done = set(re.findall(r"^done (\w+) received", out, re.M))
    return begun, done


LABELS = ["begin.committed", "finish.counted", "finish.fsynced", "finish.renamed",
          "finish.dirsynced", "finish.committed", "add_jobs.inserted", "add_jobs.committed"]


@pytest.mark.parametrize("label", LABELS + ["trim.written"])
def test_crash_at_each_step(tmp_path: Path, label: str):
    pages = 3
    data = make_tiff(pages)
    if label == "trim.written":
        data = damage_last_page(data)
        pages = 2
    tiff = tmp_path / "in.tif"
    tiff.write_bytes(data)
    root = tmp_path / "spool"
    child = run_child(root, tiff, 1, crash_at=label)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 137, f"the crash point {label} was never reached"
    begun, done = parse(out)
    assert len(begun) == (label != "begin.committed") and not done

    spool = recover_and_route(root)
    try:
        check_invariants(spool, pages, begun, done)
        (fax,) = spool.list_faxes()
        if label == "begin.committed":  # the call is logged though no page was written
            assert fax.state == "no_fax"
            return
        assert fax.state == "routed" and fax.pages == pages  # the whole file was there: nothing lost
        # complete=True is only claimed when the writer's commit made it to disk.
        assert fax.complete == (label in ("finish.committed", "add_jobs.inserted", "add_jobs.committed"))
        assert spool.recover(time.time())["unrouted"] == []  # a second recovery changes nothing
        check_invariants(spool, pages, begun, done)
    finally:
        spool.close()


def test_crash_after_no_fax_commit(tmp_path: Path):
    tiff = tmp_path / "in.tif"
    tiff.write_bytes(b"II*\x00not really a fax")
    root = tmp_path / "spool"
    child = run_child(root, tiff, 1, crash_at="finish.nofax_committed")
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 137
    spool = recover_and_route(root)
    try:
        (fax,) = spool.list_faxes()
        assert fax.state == "no_fax"
        assert list(spool.incoming_dir.iterdir()) == []  # the stray file is swept
    finally:
        spool.close()


def test_sigkill_at_random_moments(tmp_path: Path):
    """A writer loops over faxes and is SIGKILLed at random instants, round after round."""
    rng = random.Random(int(os.environ.get("FAXBRIDGE_CRASH_SEED", "1234")))
    pages = 2
    tiff = tmp_path / "in.tif"
    tiff.write_bytes(make_tiff(pages))
    root = tmp_path / "spool"
    begun: set[str] = set()
    done: set[str] = set()
    Spool(root).close()  # so the child's start-up cost is the same each round
    rounds = 10
    for _ in range(rounds):
        with Spool(root, readonly=True) as ro:
            known = {f.uid for f in ro.list_faxes(limit=100_000)}
        child = run_child(root, tiff, 1000)
        assert child.stdout is not None
        first = child.stdout.readline()  # the random moment counts from the child's first fax, so
        time.sleep(rng.uniform(0.0, 0.4))  # a slow start-up on a busy machine cannot eat the round
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=60)
        out = first + out
        assert child.returncode == -signal.SIGKILL
        b, d = parse(out)
        begun |= b
        done |= d
        spool = recover_and_route(root)
        try:
            fresh = {f.uid for f in spool.list_faxes(limit=100_000)} - known
            check_invariants(spool, pages, begun, done, only=fresh)
        finally:
            spool.close()
    spool = Spool(root)
    try:
        check_invariants(spool, pages, begun, done)
        # at most one row per kill was committed but not yet announced
        assert len(begun) <= spool.count_faxes() <= len(begun) + rounds
    finally:
        spool.close()
    assert len(done) >= 3, "the writer never got far enough for the test to mean anything"
