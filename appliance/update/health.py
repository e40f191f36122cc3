"""Boot health: what `faxbridge boot-health` does at every boot, as decisions.

A boot is a *trial* when the booted slot is not config.txt's.  Then the new system watches
itself: the daemon answers ``status`` on its control socket, the web UI answers /healthz, the
spool's database opens read-only.  All three within the time limit: commit (RAUC mark-good, which
rewrites config.txt through the backend).  Not within it: mark-bad and an ordinary reboot, which
the firmware answers with config.txt's (old) slot.

A boot that is not a trial may still have to say how the last trial ended: status.json (on the
data partition) says an update was rebooting or on trial into a slot that is not running now, so
the new system never reported back (a panic, a hang, a power cut).  Then it was rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.update.slots import Slots
from appliance.update.status import Status

DEFAULT_TIMEOUT = 300.0
POLL_INTERVAL = 2.0


@dataclass(frozen=True)
class Check:
    """One health check's outcome: ``detail`` says why it failed, in words."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Plan:
    """What this boot does: ``nothing``, ``watch`` (a trial), or record how the last update
    ended (``rolled_back`` with ``reason``, or ``committed``)."""

    kind: str
    reason: str = ""


def plan(slots: Slots, status: Status) -> Plan:
    if slots.on_trial:
        return Plan("watch")
    if status.phase not in ("rebooting", "trial") or not status.target_slot:
        return Plan("nothing")
    if slots.booted is not None and status.target_slot == slots.booted == slots.committed:
        return Plan("committed")  # committed, then cut before status.json said so
    if status.phase == "rebooting":
        return Plan(
            "rolled_back",
            "the new system did not start (the box came back to the old one "
            "by itself, after a crash, a hang or a power cut while starting it)",
        )
    return Plan(
        "rolled_back",
        "the new system stopped before it reported healthy (a crash, a hang or a power cut while it was being checked)",
    )


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str = ""


class HealthWatch:
    """Steps through a trial's checks: ``observe(checks, now)`` until it returns a Verdict."""

    def __init__(self, started: float, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.started = started
        self.deadline = started + timeout
        self.timeout = timeout
        self.last: list[Check] = []

    def observe(self, checks: list[Check], now: float) -> Verdict | None:
        self.last = checks
        if checks and all(c.ok for c in checks):
            return Verdict(True)
        if now >= self.deadline:
            failing = "; ".join(f"{c.detail or c.name + ' failed'}" for c in checks if not c.ok)
            return Verdict(False, f"after {self.timeout:.0f} s on trial: {failing or 'no check ran'}")
        return None

    def waiting(self) -> str:
        """What the trial still waits for, for status.json's message."""
        missing = [c.name for c in self.last if not c.ok]
        return ("waiting for: " + ", ".join(missing)) if missing else "checking"
