"""Real-time scheduling for the event loop that carries every call's media.

Why: one thread sends every call's RTP every 20 ms, and a fax modem at the far end fails on a
packet that comes tens of milliseconds late. Under CPU contention (the web process rendering a
preview, a backup, an attacker keeping us busy) a normal-priority thread waits its turn for
10-60 ms; a SCHED_RR thread does not (Asterisk's `-p` and FreeSWITCH's `-rp` exist for the same
reason). The daemon's other threads (fsync, TIFF, SMTP, the control socket's reader) run at
SCHED_RR one step below the loop: they share its GIL, and a normal-priority worker holding the
GIL that the kernel puts off for a busy process kept the loop waiting 8-12 ms (decision 0011).
The kernel still keeps 5 % of each second for everyone else (sched_rt_runtime_us), so a runaway
thread cannot lock the box.

On the appliance the unit sets `LimitRTPRIO=`, which lets the unprivileged service raise itself;
elsewhere it works as root and is skipped (with one log line) when not permitted.
"""

from __future__ import annotations

import os
import threading

__all__ = ["promote_this_thread", "worker_this_thread"]


def promote_this_thread(priority: int) -> str:
    """SCHED_RR at `priority` for the calling thread; "" when done, else why not (for the log)."""
    if priority <= 0:
        return "real-time scheduling is off (system.realtime_priority = 0)"
    if not hasattr(os, "sched_setscheduler"):
        return "this system has no sched_setscheduler"
    try:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_RR, os.sched_param(priority))
    except OSError as e:
        return f"not permitted ({e.strerror or e}); the systemd unit allows it with LimitRTPRIO"
    except ValueError as e:  # unlike an OSError, it has no strerror
        return f"not permitted ({e}); the systemd unit allows it with LimitRTPRIO"
    return ""


def worker_this_thread() -> str:
    """For a thread that shares the loop's GIL: SCHED_RR one below the loop's priority when it
    inherited the loop's real-time policy (above every normal task and every lower real-time one,
    below the loop), else left as it is. Returns the policy it ends with, for the log."""
    tid = threading.get_native_id()
    if not hasattr(os, "sched_getscheduler"):
        return "normal"
    try:
        if os.sched_getscheduler(tid) in (os.SCHED_RR, os.SCHED_FIFO):
            priority = max(1, os.sched_getparam(tid).sched_priority - 1)
            os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(priority))
            return f"SCHED_RR {priority}"
    except OSError:  # a sandbox may refuse: the thread keeps what it inherited
        pass
    return "normal"
