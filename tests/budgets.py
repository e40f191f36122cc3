"""How long a test waits for something that a busy machine makes slow but never makes wrong.

CI runs four test workers on two cores beside real-time fax calls (daemons at SCHED_RR), chromium
and short fuzz runs: a thread can wait about a second for a CPU, and one lost DNS packet holds a
lookup for 5 s (glibc's resolver timeout). So a client's timeout, or a wait for something that
will happen, is `LOADED`: load never decides the test, and a test whose event never comes still
fails, only later. A timeout that is what a test checks ("a silent server times out") stays short
and is written where it is tested. `FAXBRIDGE_TEST_BUDGET_SCALE` multiplies the budget for a
slower machine (an emulated ARM board, valgrind).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Callable, TypeVar

T = TypeVar("T")

#: multiplies every budget here (FAXBRIDGE_TEST_BUDGET_SCALE, default 1)
SCALE = float(os.environ.get("FAXBRIDGE_TEST_BUDGET_SCALE") or 1.0)
#: seconds (whole, so it also fits an integer setting such as delivery.timeout): a client's
#: timeout or a wait for what will come, on a loaded CI machine
LOADED = max(1, round(30 * SCALE))


class _Deadline:
    """One wait's budget: `poll` runs the check, returns what it found or None, and fails naming
    `what` once the budget is spent; the two waits below differ only in how they sleep."""

    def __init__(self, what: str, budget: float) -> None:
        self.what, self.budget, self.at = what, budget, time.monotonic() + budget

    def poll(self, check: Callable[[], T]) -> T | None:
        result = check()
        if result:
            return result
        if time.monotonic() >= self.at:
            raise AssertionError(f"not within {self.budget:.0f} s: {self.what}")
        return None


def wait_until(check: Callable[[], T], what: str, budget: float = LOADED, every: float = 0.05) -> T:
    """Poll `check` until it returns something true and return that; fail naming `what` when it
    has not within `budget` seconds (a fixed sleep and then an assertion fails under load)."""
    deadline = _Deadline(what, budget)
    while (result := deadline.poll(check)) is None:
        time.sleep(every)
    return result


async def async_wait_until(check: Callable[[], T], what: str, budget: float = LOADED, every: float = 0.01) -> T:
    """`wait_until` inside an event loop: the loop keeps running (and serving) between checks."""
    deadline = _Deadline(what, budget)
    while (result := deadline.poll(check)) is None:
        await asyncio.sleep(every)
    return result
