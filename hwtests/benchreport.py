"""The bench run's results: one line per check, PASS, FAIL or SKIPPED with its reason.

A bench report is only worth something when it cannot look better than the box: a check that did
not run says SKIPPED and why, never PASS, and one FAIL makes the run's exit status non-zero.
Pure: the checks are values, the table and the Markdown are strings (tests/hwbench/).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass, field


class Status(enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class Check:
    """One check's outcome. ``detail`` says what was measured (PASS), what went wrong (FAIL) or
    why it did not run (SKIPPED: never empty)."""

    name: str
    status: Status
    detail: str = ""
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.status is Status.SKIPPED and not self.detail:
            raise ValueError(f"check {self.name!r} skipped without a reason")

    @property
    def label(self) -> str:
        return self.status.value if self.status is not Status.SKIPPED else f"SKIPPED({self.detail})"


def passed(name: str, detail: str = "", seconds: float | None = None) -> Check:
    return Check(name, Status.PASS, detail, seconds)


def failed(name: str, detail: str, seconds: float | None = None) -> Check:
    return Check(name, Status.FAIL, detail, seconds)


def skipped(name: str, reason: str) -> Check:
    return Check(name, Status.SKIPPED, reason)


@dataclass
class Report:
    """The checks in the order they ran, and facts worth recording that are not checks (the
    version, the certificate's fingerprint, timings)."""

    checks: list[Check] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    def has(self, name: str, status: Status = Status.PASS) -> bool:
        return any(c.name == name and c.status is status for c in self.checks)

    def exit_status(self) -> int:
        return exit_status(self.checks)


def exit_status(checks: Iterable[Check]) -> int:
    """1 when any check failed, else 0 (skips are reported, not failures: the table names them)."""
    return 1 if any(c.status is Status.FAIL for c in checks) else 0


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def table(checks: Iterable[Check], detail_width: int = 90) -> str:
    """The summary for a terminal: check, result, seconds, detail (one line each)."""
    rows = [(c.name, c.status.value, "" if c.seconds is None else f"{c.seconds:.0f}", c.detail) for c in checks]
    w0 = max([len("check")] + [len(r[0]) for r in rows])
    w1 = max([len("result")] + [len(r[1]) for r in rows])
    w2 = max([len("s")] + [len(r[2]) for r in rows])
    head = f"{'check':<{w0}}  {'result':<{w1}}  {'s':>{w2}}  detail"
    lines = [head, "-" * len(head)]
    for name, status, seconds, detail in rows:
        lines.append(f"{name:<{w0}}  {status:<{w1}}  {seconds:>{w2}}  {_cell(detail, detail_width)}".rstrip())
    counts = {s: sum(1 for r in rows if r[1] == s.value) for s in Status}
    lines.append("-" * len(head))
    lines.append(f"{counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, {counts[Status.SKIPPED]} skipped")
    return "\n".join(lines)


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown(report: Report, box: str) -> str:
    """The same as a Markdown section to paste into the bench report (BENCH.md, section R)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report.started))
    out = [f"### bench.py against {_md(box)}, {when}", ""]
    if report.facts:
        out += ["| fact | value |", "|---|---|"]
        out += [f"| {_md(k)} | {_md(v)} |" for k, v in report.facts.items()]
        out.append("")
    out += ["| check | result | s | detail |", "|---|---|---:|---|"]
    for c in report.checks:
        seconds = "" if c.seconds is None else f"{c.seconds:.0f}"
        out.append(f"| {_md(c.name)} | {c.status.value} | {seconds} | {_md(c.detail)} |")
    out += ["", f"exit status {report.exit_status()}", ""]
    return "\n".join(out)
