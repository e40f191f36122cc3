"""Scheduling of the daemon's threads: the loop real-time, everything sharing its GIL just below."""
from __future__ import annotations

import os
import threading

import pytest

from appliance.rtsched import promote_this_thread, worker_this_thread


def policy_of_new_thread(promote: int) -> tuple[str, str, int, int]:
    """In a fresh thread (so the test's own thread keeps its policy): promote it, start a worker
    from it as the executor does, and report (promotion, worker's answer, worker's policy, priority)."""
    out: dict[str, object] = {}

    def worker() -> None:
        out["answer"] = worker_this_thread()
        tid = threading.get_native_id()
        out["policy"], out["priority"] = os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority

    def loop() -> None:
        out["promoted"] = promote_this_thread(promote)
        t = threading.Thread(target=worker)
        t.start()
        t.join()

    t = threading.Thread(target=loop)
    t.start()
    t.join()
    return out["promoted"], out["answer"], out["policy"], out["priority"]  # type: ignore[return-value]


def test_a_worker_started_by_the_real_time_loop_runs_just_below_it() -> None:
    promoted, answer, policy, priority = policy_of_new_thread(10)
    if promoted and os.geteuid() != 0:
        pytest.skip(f"real-time scheduling not permitted here: {promoted}")
    assert promoted == "" and answer == "SCHED_RR 9"
    assert (policy, priority) == (os.SCHED_RR, 9)


def test_a_worker_of_a_normal_loop_stays_normal() -> None:
    promoted, answer, policy, priority = policy_of_new_thread(0)
    assert "off" in promoted and answer == "normal" and (policy, priority) == (os.SCHED_OTHER, 0)


@pytest.mark.parametrize("error", [PermissionError(1, "Operation not permitted"), ValueError("bad priority")])
def test_a_refused_promotion_is_a_reason_for_the_log(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def refuse(*args: object) -> None:
        raise error

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    reason = promote_this_thread(10)
    assert reason.startswith("not permitted (") and reason.endswith("LimitRTPRIO")
    assert ("Operation not permitted" if isinstance(error, OSError) else "bad priority") in reason
