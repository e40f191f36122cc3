"""One received fax call's life, sans-I/O: T.30 events in, call facts and "hang up now" out.

The timeouts are what other fax servers lack (calls that never hang up after phase E, calls that
carry no fax at all): the session decides, the driver only asks ``poll(now)`` and acts.  So is the
page that will not end: spandsp 0.0.6 keeps a page's rows in memory until the page ends, with no
limit, so a page that grows past the longest a fax page can be (``fax.pagelimits``) ends the call
and is not kept.  A page that arrived whole is left to the spool, which refuses it on storage
while the call goes on with the next page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from appliance.calls.facts import CallFacts, PageFacts
from appliance.config import FaxConfig
from appliance.fax.pagelimits import PAGE_TOO_LARGE, page_problem
from appliance.fax.t30decode import is_log_line
from appliance.spandsp.t30 import FaxStats, PageDone, PhaseB, PhaseE, T30Terminal

#: what the spool keeps of a call's T.30 trace: its last lines, within a size the fax page shows
TRACE_LINES = 400
TRACE_BYTES = 64 * 1024


def _newest(indexes: list[int], lines: list[str], count: int, size: int) -> list[int]:
    """The newest of ``indexes`` whose lines fit in ``count`` lines and ``size`` bytes of text."""
    out: list[int] = []
    for i in reversed(indexes[-count:] if count > 0 else []):
        size -= len(lines[i]) + 1
        if size < 0:
            break
        out.append(i)
    return out[::-1]


def bounded_trace(lines: list[str]) -> list[str]:
    """At most TRACE_LINES lines and about TRACE_BYTES of the trace.

    A long call's trace would otherwise lose its start (the handshake: DIS, DCS, the training) to
    spandsp's chatter: the frames and problems are kept first (the newest, when even they do not
    fit), then as much of spandsp's FLOW log as fits, taken from its start and its end alike, with
    a note where lines were left out."""
    if len(lines) <= TRACE_LINES and sum(len(x) + 1 for x in lines) <= TRACE_BYTES:
        return list(lines)
    essential = [i for i, x in enumerate(lines) if not is_log_line(x)]
    kept = _newest(essential, lines, TRACE_LINES, TRACE_BYTES)
    if len(kept) < len(essential):
        return [lines[i] for i in kept]
    room_lines = TRACE_LINES - len(kept) - 1  # one for the note
    room_bytes = TRACE_BYTES - sum(len(lines[i]) + 1 for i in kept) - 80
    logs = [i for i, x in enumerate(lines) if is_log_line(x)]
    chosen = set(kept)
    lo, hi, from_start = 0, len(logs), True
    while lo < hi and room_lines > 0:
        i = logs[lo] if from_start else logs[hi - 1]
        room_bytes -= len(lines[i]) + 1
        if room_bytes < 0:
            break
        room_lines -= 1
        chosen.add(i)
        lo, hi = (lo + 1, hi) if from_start else (lo, hi - 1)
        from_start = not from_start
    gap = logs[lo:hi]
    out: list[str] = []
    for i in sorted(chosen):
        if gap and i > gap[0]:
            out.append(f"FLOW fb0 ({len(gap)} lines of spandsp's log left out here)")
            gap = []
        out.append(lines[i])
    if gap:
        out.append(f"FLOW fb0 ({len(gap)} lines of spandsp's log left out here)")
    return out


@dataclass
class ReceiveSession:
    terminal: T30Terminal
    started: float
    cfg: FaxConfig
    signal_at: float | None = None
    phase_e: PhaseE | None = None
    phase_e_at: float | None = None
    pages: list[FaxStats] = field(default_factory=list)
    hangup_reason: str = ""
    signal_window_from: float | None = None
    earlier_trace: list[str] = field(default_factory=list)

    def poll(self, now: float) -> str | None:
        """Process the terminal's events; return why the call should be ended now, if it should."""
        while (ev := self.terminal.next_event()) is not None:
            if isinstance(ev, PhaseB):
                self.signal_at = self.signal_at or now
            elif isinstance(ev, PageDone):
                self.pages.append(ev.stats)
            elif isinstance(ev, PhaseE):
                self.phase_e, self.phase_e_at = ev, now
        if self.hangup_reason:
            return None
        if self.phase_e_at is None and (oversized := self._page_growing_too_large()):
            self.hangup_reason = f"{PAGE_TOO_LARGE}: {oversized}"
        elif self.phase_e_at is not None:
            if now - self.phase_e_at >= self.cfg.post_phase_e_timeout:
                self.hangup_reason = "far end did not hang up after the fax ended"
        elif self.signal_at is None and now - (self.signal_window_from or self.started) >= self.cfg.no_signal_timeout:
            self.hangup_reason = "no fax signal"
        elif now - self.started >= self.cfg.max_call_duration:
            self.hangup_reason = "call exceeded the maximum duration"
        return self.hangup_reason or None

    def _page_growing_too_large(self) -> str | None:
        """Why the page arriving now is over the size limits, or None (also for a page that ended)."""
        if not self.terminal.alive:
            return None
        live = self.terminal.stats()
        if live.length <= 0 or live.width <= 0:
            return None
        last = self.pages[-1] if self.pages else None
        if last is not None and (last.pages_rx, last.length) == (live.pages_rx, live.length):
            return None  # the last page ended whole: the spool refuses it, the call goes on
        return page_problem(live.width, live.length, live.y_dpi or None, live.pages_rx + 1)

    def restart(self, terminal: T30Terminal, now: float) -> None:
        """The call switched media (G.711 <-> T.38) before any page: T.30 starts over on ``terminal``.

        The wait for a fax signal starts again (the far end trains anew); the call's overall limit
        still counts from its start.  The old terminal's trace is kept.
        """
        self.earlier_trace.extend(self.terminal.trace)
        self.terminal = terminal
        self.phase_e = self.phase_e_at = None
        self.signal_at = None
        self.signal_window_from = now

    @property
    def complete(self) -> bool:
        return self.phase_e is not None and self.phase_e.ok

    def facts(self, now: float) -> CallFacts:
        """What the spool records about the call (numbers from SIP are added by the caller)."""
        stats = self.phase_e.stats if self.phase_e else self.terminal.stats()
        last = self.pages[-1] if self.pages else stats
        if self.phase_e:
            code, text = self.phase_e.code, self.phase_e.text
        else:
            code, text = -1, "call ended before the fax completed"
        if self.hangup_reason and not self.complete:
            text = f"{self.hangup_reason} ({text})"  # why we ended it says more than "call dropped"
        return CallFacts(
            remote_ident=stats.remote_ident,
            bit_rate=stats.bit_rate,
            ecm=stats.ecm,
            resolution=last.resolution,
            bad_rows=sum(p.bad_rows for p in self.pages),
            duration=round(now - self.started, 1),
            result_code=code,
            result_text=text,
            pages=len(self.pages),
            page_stats=[
                PageFacts(
                    bad_rows=p.bad_rows,
                    longest_bad_row_run=p.longest_bad_row_run,
                    width=p.width,
                    length=p.length,
                    resolution=p.resolution,
                )
                for p in self.pages
            ],
            remote_vendor=stats.remote_vendor,
            remote_model=stats.remote_model,
            hangup_reason=self.hangup_reason,
            trace=bounded_trace(self.earlier_trace + list(self.terminal.trace)),
        )

    def progress(self) -> SessionProgress:
        """The fax so far, for the dashboard (cheap: one spandsp stats call)."""
        pages = len(self.pages)
        page = pages + 1 if self.signal_at is not None and self.phase_e is None else None
        try:
            st = self.terminal.stats()
        except Exception:  # noqa: BLE001 - a status read: what a terminal in teardown raises must not reach the dashboard
            return SessionProgress(pages=pages, page=page, bit_rate=0, ecm=None, remote_ident="")
        return SessionProgress(
            pages=pages, page=page, bit_rate=st.bit_rate, ecm=bool(st.ecm), remote_ident=st.remote_ident
        )


class SessionProgress(TypedDict):
    """How far a session is (part of the control socket's ``calls``)."""

    pages: int
    page: int | None  # the page arriving now, if one is
    bit_rate: int
    ecm: bool | None  # None: not known (the terminal is closing)
    remote_ident: str
