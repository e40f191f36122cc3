"""Durability of the outbound queue: kill a sender at every step (and at random), recover, send
what is left, and check the promise: no accepted fax lost, none twice at the far end unless an
attempt's outcome was unknown (and then the job says so), every document where it belongs.

The far end is a file the child appends each fax's uid to, fsynced, between the call being
answered and the attempt being closed, as a real far end gets the pages then.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from outbound_helpers import TIFF, send_all, submit

from appliance.spool.outbound import ATTEMPT_INTERRUPTED, OutboundQueue
from appliance.spool.states import OutState
from appliance.spool.store import Spool

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("outbound_child.py")


def run_child(root: Path, far_end: Path, mode: str, count: int, crash_at: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(CHILD.parent)]))
    env.pop("FAXBRIDGE_CRASH_AT", None)
    if crash_at:
        env["FAXBRIDGE_CRASH_AT"] = crash_at
    return subprocess.Popen([sys.executable, str(CHILD), str(root), str(far_end), mode, str(count)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def parse(out: str) -> tuple[set[str], set[str]]:
    return set(re.findall(r"^submitted (\w+)$", out, re.M)), set(re.findall(r"^sent (\w+)$", out, re.M))


def arrivals(far_end: Path) -> Counter[str]:
    return Counter(far_end.read_text().split()) if far_end.exists() else Counter()


def check(queue: OutboundQueue, far_end: Path, submitted: set[str], sent: set[str]) -> None:
    """After recovery and sending what was left: every promise kept, nothing extra anywhere."""
    jobs = queue.list(limit=100_000)
    by_uid = {j.uid: j for j in jobs}
    assert len(by_uid) == len(jobs), "a job was duplicated"
    assert submitted <= set(by_uid), f"accepted faxes lost: {submitted - set(by_uid)}"
    seen = arrivals(far_end)
    for job in jobs:
        assert job.state is OutState.SENT, f"{job.uid} is {job.state}"
        assert queue.document_path(job).read_bytes() == TIFF
        n = seen[job.uid]
        assert n >= 1, f"{job.uid} never reached the far end"
        # twice only when an attempt's outcome was unknown, and then the job says so
        assert n == 1 or (n == 2 and job.resent_after_unknown), f"{job.uid} arrived {n} times"
        results = [a.result for a in queue.attempts(job.id)]
        assert results[-1] == "sent" and results.count("sent") == 1
        assert job.attempts == len([r for r in results if r != ATTEMPT_INTERRUPTED])
        assert job.resent_after_unknown == ("unknown" in results)
    for uid in sent:
        assert seen[uid] == 1 and not by_uid[uid].resent_after_unknown  # a finished send is never repeated
    assert set(seen) <= set(by_uid), "the far end got a fax the queue does not know"
    assert {p.name for p in queue.dir.iterdir()} == {f"{j.uid}.tif" for j in jobs}


def recover_and_finish(root: Path, far_end: Path) -> tuple[Spool, OutboundQueue]:
    spool = Spool(root)
    queue = OutboundQueue(spool)
    queue.recover(time.time())
    send_all(queue, time.time(), far_end)
    return spool, queue


SEND_LABELS = ["out.submit.moved", "out.submit.committed", "out.claim.committed", "out.connected.committed",
               "far.written", "out.progress.committed", "out.done.committed"]


@pytest.mark.parametrize("label", SEND_LABELS)
def test_crash_at_each_step_of_a_send(tmp_path: Path, label: str):
    root, far_end = tmp_path / "spool", tmp_path / "far-end"
    child = run_child(root, far_end, "send", 1, crash_at=label)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 137, f"the crash point {label} was never reached: {err[-2000:]}"
    submitted, sent = parse(out)
    assert len(submitted) == (label not in ("out.submit.moved", "out.submit.committed")) and not sent
    answered = SEND_LABELS.index(label) >= SEND_LABELS.index("out.connected.committed")
    assert sum(arrivals(far_end).values()) == (label in ("far.written", "out.progress.committed",
                                                         "out.done.committed"))
    spool, queue = recover_and_finish(root, far_end)
    try:
        check(queue, far_end, submitted, sent)
        jobs = queue.list()
        if label == "out.submit.moved":  # never accepted: nothing left, not even the file
            assert jobs == [] and list(queue.dir.iterdir()) == []
            return
        (job,) = jobs  # a submit that committed is kept, announced or not
        results = [a.result for a in queue.attempts(job.id)]
        if label == "out.done.committed":
            assert results == ["sent"]
        elif answered:
            assert results == ["unknown", "sent"] and job.resent_after_unknown
        elif label == "out.claim.committed":
            assert results == [ATTEMPT_INTERRUPTED, "sent"] and job.attempts == 1
        else:
            assert results == ["sent"]
        assert queue.recover(time.time()) == []  # a second recovery changes nothing
    finally:
        spool.close()


@pytest.mark.parametrize(("mode", "label"), [("delete", "out.delete.committed"), ("purge", "out.purge.committed")])
def test_crash_after_a_delete_commit_leaves_only_a_stray(tmp_path: Path, mode: str, label: str):
    root, far_end = tmp_path / "spool", tmp_path / "far-end"
    child = run_child(root, far_end, mode, 1, crash_at=label)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 137, err[-2000:]
    (uid,) = parse(out)[1]
    assert (root / "outbound" / f"{uid}.tif").exists()  # the rows went, the file not yet
    with Spool(root) as spool:
        queue = OutboundQueue(spool)
        assert queue.get_by_uid(uid) is None
        queue.recover(time.time())
        assert list(queue.dir.iterdir()) == [] and arrivals(far_end)[uid] == 1


def test_crash_during_recovery_is_recovered_again(tmp_path: Path):
    root, far_end = tmp_path / "spool", tmp_path / "far-end"
    with Spool(root) as spool:  # a job cut off after its call was answered
        queue = OutboundQueue(spool)
        job = submit(queue, time.time())
        queue.claim_due(time.time(), busy_routes={}, limits={"pbx": 1})
        queue.attempt_connected(job.id, time.time())
        (queue.dir / "0123456789abcdef.tif").write_bytes(TIFF)
    child = run_child(root, far_end, "recover", 0, crash_at="out.recover.committed")
    assert child.wait(timeout=120) == 137
    with Spool(root) as spool:
        queue = OutboundQueue(spool)
        mid = queue.get(job.id)  # the commit made it: recovered once, the stray still there
        assert mid.state is OutState.QUEUED and mid.resent_after_unknown
        assert (queue.dir / "0123456789abcdef.tif").exists()
        assert queue.recover(time.time()) == []  # the unknown attempt is not counted twice
        assert not (queue.dir / "0123456789abcdef.tif").exists()
        assert [a.result for a in queue.attempts(job.id)] == ["unknown"] and queue.get(job.id).attempts == 1


def test_sigkill_at_random_moments(tmp_path: Path):
    """A sender loops over faxes and is SIGKILLed at random instants, round after round."""
    rng = random.Random(int(os.environ.get("FAXBRIDGE_CRASH_SEED", "1414")))
    root, far_end = tmp_path / "spool", tmp_path / "far-end"
    submitted: set[str] = set()
    sent: set[str] = set()
    Spool(root).close()
    rounds = 8
    for _ in range(rounds):
        child = run_child(root, far_end, "send", 1000)
        assert child.stdout is not None
        first = child.stdout.readline()  # counts from the child's first fax, whatever its start-up
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
        s, d = parse(first + out)
        submitted |= s
        sent |= d
        spool, queue = recover_and_finish(root, far_end)
        try:
            check(queue, far_end, submitted, sent)
        finally:
            spool.close()
    assert len(sent) >= 3, "the sender never got far enough for the test to mean anything"
