"""The durable outbound queue: faxes to send, in the spool's database, with the receive side's
crash safety.

Order of writes, so a crash at any instant loses no accepted fax and sends none twice:

1. ``submit`` moves the rendered TIFF to ``outbound/<uid>.tif``, fsyncs it and the directory,
   and only then commits the job (``queued``).  A crash in between leaves a file no row names,
   which ``recover`` removes: the submitter never heard "accepted", so nothing was promised.
2. ``claim_due`` commits ``sending`` and an open attempt row before the worker dials.
3. ``attempt_connected`` commits the moment the far end answered.  From then on a crash means
   the fax may have arrived: ``recover`` records the attempt as ``unknown`` and sends the fax
   once more with ``resent_after_unknown`` set, so the report can say it may have arrived twice;
   a second unknown attempt fails the job rather than loop.  A crash before that marker means
   nothing reached the far end: the job is simply queued again, no attempt counted.
4. ``attempt_done`` closes the attempt and moves the job (retry, sent, failed, cancelled) and
   owes the sender a report, all in one commit.

Files of finished jobs go with the job (``delete``, and retention through
``Spool.purge_older_than``); rows first, then files, so a crash leaves only strays.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from appliance.fsutil import fsync_dir, fsync_file
from appliance.outbound.outcome import WORDS, Outcome, Result
from appliance.spool.crashpoint import crash_point
from appliance.spool.states import (
    FINAL_OUT_STATES,
    OUT_MOVES,
    REPORT_MOVES,
    WAITING_OUT_STATES,
    OutState,
    ReportState,
)

if TYPE_CHECKING:
    from appliance.spool.store import Spool

__all__ = [
    "ATTEMPT_INTERRUPTED",
    "OUTBOUND_MIGRATION",
    "OUTBOUND_SCHEMA",
    "OutAttempt",
    "OutJob",
    "OutState",
    "OutboundQueue",
    "OutboundStatus",
    "ReportState",
    "purge_outbound",
    "retry_at",
]

log = logging.getLogger("faxbridge.spool")

#: the directory under the spool root that holds the documents to send
OUTBOUND_DIR = "outbound"
#: where a job comes from (the one value per way in; the report and the web page name it)
SOURCES = frozenset({"mail", "web", "api", "cli", "graph"})
#: who gets a report: "always", only on "failure", or "never" (the [outbound] report setting)
REPORT_POLICIES = frozenset({"always", "failure", "never"})
#: an attempt row's result when the box stopped before the far end answered: nothing was sent,
#: and the attempt is not counted (not a `Result`: no call ended that way)
ATTEMPT_INTERRUPTED = "interrupted"
INTERRUPTED_DETAIL = "interrupted before the call was answered (the fax box stopped); nothing was sent"

# Bounds on what a job and an attempt keep: everything here came from a user or a far end.
_MAX_NUMBER = 64
_MAX_SUBJECT = 1000
_MAX_SENDER = 320
_MAX_META = 64_000
_MAX_DETAIL = 2000
_MAX_IDENT = 64
_MAX_WAY = 200
_MAX_ERROR = 2000
#: a T.30 trace keeps its first and last lines (the start and the failure), each line cut short
TRACE_HEAD = 300
TRACE_TAIL = 200
TRACE_LINE = 400
#: how many finished jobs one purge transaction deletes, as the receive side's PURGE_BATCH
PURGE_BATCH = 200

OUTBOUND_SCHEMA = """
CREATE TABLE IF NOT EXISTS out_jobs (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    uid                  TEXT NOT NULL UNIQUE,
    number               TEXT NOT NULL,
    e164                 TEXT NOT NULL,
    route                TEXT NOT NULL,
    state                TEXT NOT NULL,
    created              REAL NOT NULL,
    next_attempt         REAL NOT NULL,
    attempts             INTEGER NOT NULL DEFAULT 0,
    pages                INTEGER NOT NULL,
    sender               TEXT NOT NULL DEFAULT '',
    source               TEXT NOT NULL,
    subject              TEXT NOT NULL DEFAULT '',
    cancel_requested     INTEGER NOT NULL DEFAULT 0,
    last_result          TEXT NOT NULL DEFAULT '',
    last_detail          TEXT NOT NULL DEFAULT '',
    pages_confirmed      INTEGER NOT NULL DEFAULT 0,
    remote_ident         TEXT NOT NULL DEFAULT '',
    finished             REAL,
    report_state         TEXT NOT NULL DEFAULT 'none',
    resent_after_unknown INTEGER NOT NULL DEFAULT 0,
    report_policy        TEXT NOT NULL DEFAULT 'always',
    report_attempts      INTEGER NOT NULL DEFAULT 0,
    report_next          REAL,
    report_error         TEXT NOT NULL DEFAULT '',
    report_sent_at       REAL,
    meta                 TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS out_jobs_due ON out_jobs(state, next_attempt);
CREATE INDEX IF NOT EXISTS out_jobs_created ON out_jobs(created, id);
CREATE INDEX IF NOT EXISTS out_jobs_report ON out_jobs(report_state, report_next);

CREATE TABLE IF NOT EXISTS out_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id          INTEGER NOT NULL REFERENCES out_jobs(id),
    started         REAL NOT NULL,
    connected       REAL,
    finished        REAL,
    result          TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT '',
    pages_confirmed INTEGER NOT NULL DEFAULT 0,
    pages_total     INTEGER NOT NULL DEFAULT 0,
    remote_ident    TEXT NOT NULL DEFAULT '',
    bit_rate        INTEGER NOT NULL DEFAULT 0,
    ecm             INTEGER NOT NULL DEFAULT 0,
    duration        REAL NOT NULL DEFAULT 0,
    way             TEXT NOT NULL DEFAULT '',
    sip_status      INTEGER,
    t30_code        INTEGER,
    trace           TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS out_attempts_job ON out_attempts(job_id);
"""

#: the statements that bring a version 2 spool (receive only) up to version 3
OUTBOUND_MIGRATION: tuple[str, ...] = tuple(s.strip() for s in OUTBOUND_SCHEMA.split(";") if s.strip())


@dataclass
class OutJob:
    """One fax to send.  ``attempts`` counts attempts that ended (an interrupted dial is not one);
    ``pages_confirmed`` is the most pages any attempt had confirmed (what the far end saw at
    least); ``last_result`` is a `Result` value, "" before the first attempt ended."""

    id: int
    uid: str
    number: str
    e164: str
    route: str
    state: OutState
    created: float
    next_attempt: float
    attempts: int
    pages: int
    sender: str
    source: str
    subject: str
    cancel_requested: bool
    last_result: str
    last_detail: str
    pages_confirmed: int
    remote_ident: str
    finished: float | None
    report_state: ReportState
    #: the fax went out again after an attempt whose outcome is unknown: it may have arrived twice
    resent_after_unknown: bool = False
    report_policy: str = "always"
    report_attempts: int = 0
    report_next: float | None = None
    report_error: str = ""
    report_sent_at: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = OutState(self.state)
        self.report_state = ReportState(self.report_state)

    @property
    def final(self) -> bool:
        return self.state in FINAL_OUT_STATES


@dataclass
class OutAttempt:
    """One dial of a job.  ``result`` is "" while the call runs, a `Result` value once it ended,
    or ``ATTEMPT_INTERRUPTED``; ``connected`` is when the far end answered (None: it never did)."""

    id: int
    job_id: int
    started: float
    connected: float | None
    finished: float | None
    result: str
    detail: str
    pages_confirmed: int
    pages_total: int
    remote_ident: str
    bit_rate: int
    ecm: bool
    duration: float
    way: str
    sip_status: int | None
    t30_code: int | None
    trace: list[str]


class OutboundStatus(TypedDict):
    """The outbound queue at a glance (control socket status, dashboard, /metrics)."""

    #: jobs per state, every state present
    jobs: dict[str, int]
    #: calls in progress per route
    sending: dict[str, int]
    #: when the oldest fax still waiting to go out was submitted
    oldest_waiting: float | None
    next_due: float | None
    reports_pending: int


_JOB_COLUMNS = (
    "id, uid, number, e164, route, state, created, next_attempt, attempts, pages, sender, source, subject,"
    " cancel_requested, last_result, last_detail, pages_confirmed, remote_ident, finished, report_state,"
    " resent_after_unknown, report_policy, report_attempts, report_next, report_error, report_sent_at, meta"
)
_ATTEMPT_COLUMNS = (
    "id, job_id, started, connected, finished, result, detail, pages_confirmed, pages_total, remote_ident,"
    " bit_rate, ecm, duration, way, sip_status, t30_code, trace"
)
_JOB_NAMES = tuple(n.strip() for n in _JOB_COLUMNS.split(","))
_ATTEMPT_NAMES = tuple(n.strip() for n in _ATTEMPT_COLUMNS.split(","))
_Jobs = list[OutJob]
_Attempts = list[OutAttempt]


class OutboundQueue:
    """Faxes to send, over one `Spool`'s database (same file, same transactions and lock).

    Thread-safe as the spool is.  A read-only spool gives the read API only (the web process).
    ``recover`` must run before anything is submitted (start-up), as the spool's own does.
    """

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.dir = spool.root / OUTBOUND_DIR
        if not spool.readonly:
            self.dir.mkdir(parents=True, exist_ok=True)

    # -- submitting ---------------------------------------------------------------------------

    def document_path(self, job: OutJob) -> Path:
        return self.dir / f"{job.uid}.tif"

    def submit(
        self,
        tiff: Path,
        now: float,
        *,
        number: str,
        e164: str,
        route: str,
        sender: str,
        source: str,
        subject: str,
        pages: int,
        meta: dict[str, Any],
        report: str = "always",
    ) -> OutJob:
        """Take ``tiff`` (moved, not copied) into the spool and queue it, due at ``now``.

        The file is made durable in ``outbound/`` before the row commits: a crash leaves either
        nothing the caller was told about or a complete job.  ``report`` is the report policy at
        submission ("always", "failure", "never"); it decides whether the sender is owed a mail.
        """
        meta_text = json.dumps(meta or {}, sort_keys=True)
        _check_submission(number, e164, route, sender, source, subject, pages, meta_text, report)
        if Path(tiff).is_symlink():  # the move would take the link, not the document
            raise ValueError(f"{tiff}: a symbolic link, not a rendered fax")
        if not Path(tiff).is_file():
            raise FileNotFoundError(f"no document to send at {tiff}")
        uid = secrets.token_hex(8)
        dest = self.dir / f"{uid}.tif"
        # Under the spool's lock from the move to the commit, so this process's ``recover`` never
        # sees the file between the two and takes it for a stray.
        with self.spool._lock:
            _move_durably(Path(tiff), dest)
            crash_point("out.submit.moved")
            try:
                with self.spool._tx() as db:
                    job_id = db.execute(
                        "INSERT INTO out_jobs (uid, number, e164, route, state, created, next_attempt, pages,"
                        " sender, source, subject, report_policy, meta) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (uid, number, e164, route, OutState.QUEUED.value, now, now, int(pages), sender, source)
                        + (subject, report, meta_text),
                    ).lastrowid
            except BaseException:
                _give_back(dest, Path(tiff))  # not accepted: the caller keeps its file, the spool nothing
                raise
        crash_point("out.submit.committed")
        assert job_id is not None
        log.info("outbound fax %s queued: %d page(s) to %s by route %s", job_id, pages, e164, route)
        return self._get(job_id)

    # -- the worker's side ----------------------------------------------------------------------

    def claim_due(
        self,
        now: float,
        *,
        busy_routes: Mapping[str, int],
        limits: Mapping[str, int],
        limit: int = 4,
        default_limit: int = 1,
    ) -> _Jobs:
        """Move due jobs to ``sending`` (oldest due first) and open an attempt row for each.

        A route takes at most ``limits[route]`` calls (``default_limit`` for a route ``limits``
        does not name, e.g. one removed from the configuration: the worker gets the job and can
        fail it, instead of it waiting unseen for ever) minus the calls already busy on it: the
        larger of ``busy_routes[route]`` and the jobs the database holds as ``sending`` there,
        so a second claimer cannot overfill a route either.  Each job is claimed by one caller.
        """
        if limit <= 0:
            return []
        claimed: list[int] = []
        with self.spool._tx() as db:
            sending: dict[str, int] = {
                r: int(n)
                for r, n in db.execute(
                    "SELECT route, count(*) FROM out_jobs WHERE state=? GROUP BY route", (OutState.SENDING.value,)
                )
            }
            room: dict[str, int] = {}
            full: set[str] = set()

            def free(route: str) -> int:
                if route not in room:
                    busy = max(int(busy_routes.get(route, 0)), sending.get(route, 0))
                    room[route] = int(limits.get(route, default_limit)) - busy
                return room[route]

            while len(claimed) < limit:
                not_full = ",".join("?" for _ in full)
                rows = db.execute(
                    "SELECT id, route, state FROM out_jobs WHERE state IN (?, ?) AND next_attempt <= ?"
                    + (f" AND route NOT IN ({not_full})" if full else "")
                    + " ORDER BY next_attempt, id LIMIT ?",
                    (*WAITING_OUT_STATES, now, *full, limit - len(claimed)),
                ).fetchall()
                if not rows:
                    break
                newly_full = False
                for job_id, route, state in rows:
                    if free(route) <= 0:
                        full.add(route)
                        newly_full = True
                        break
                    OUT_MOVES.move(OutState(state), OutState.SENDING)
                    db.execute("UPDATE out_jobs SET state=? WHERE id=?", (OutState.SENDING.value, job_id))
                    db.execute("INSERT INTO out_attempts (job_id, started) VALUES (?, ?)", (job_id, now))
                    room[route] -= 1
                    claimed.append(job_id)
                    if len(claimed) >= limit:
                        break
                if not newly_full:  # every row taken: the limit is reached or nothing more is due
                    break
        crash_point("out.claim.committed")
        return [self._get(i) for i in claimed]

    def attempt_connected(self, job_id: int, now: float) -> None:
        """The far end answered: from this commit on, a crash means the outcome is unknown.

        Call it as soon as the call is answered, before the first page can have gone out."""
        with self.spool._tx() as db:
            self._sending(db, job_id)
            db.execute(
                "UPDATE out_attempts SET connected=coalesce(connected, ?) WHERE id=?",
                (now, self._open_attempt(db, job_id)),
            )
        crash_point("out.connected.committed")

    def attempt_progress(self, job_id: int, pages_confirmed: int, now: float | None = None) -> None:
        """The far end confirmed ``pages_confirmed`` pages.  A confirmed page implies an answered
        call: an attempt not yet marked connected is marked now (at ``now``, else when it began)."""
        with self.spool._tx() as db:
            self._sending(db, job_id)
            attempt = self._open_attempt(db, job_id)
            db.execute(
                "UPDATE out_attempts SET pages_confirmed=max(pages_confirmed, ?),"
                " connected=coalesce(connected, ?, started) WHERE id=?",
                (int(pages_confirmed), now, attempt),
            )
            db.execute(
                "UPDATE out_jobs SET pages_confirmed=max(pages_confirmed, ?) WHERE id=?", (int(pages_confirmed), job_id)
            )
        crash_point("out.progress.committed")

    def attempt_done(self, job_id: int, now: float, outcome: Outcome, *, next_attempt: float | None) -> OutJob:
        """Close the running attempt with ``outcome`` and move the job, in one commit.

        ``next_attempt`` (the route's schedule, from the worker) puts the job in ``retry_wait``;
        None ends it: ``sent``, ``cancelled`` or ``failed``.  A cancel requested during the call
        wins over a retry.  An unknown outcome is retried at most once per job (the flag the
        report reads); a second one fails the job.
        """
        if outcome.result is Result.SENT and next_attempt is not None:
            raise ValueError("a sent fax is never retried")
        with self.spool._tx() as db:
            job = self._sending(db, job_id)
            attempt = self._open_attempt(db, job_id)
            _close_attempt(db, attempt, now, outcome)
            resent = job.resent_after_unknown
            if outcome.result is Result.SENT:
                to = OutState.SENT
            elif outcome.result is Result.CANCELLED or job.cancel_requested:
                to = OutState.CANCELLED
            elif next_attempt is None:
                to = OutState.FAILED
            elif outcome.result is Result.UNKNOWN:
                to = OutState.FAILED if resent else OutState.RETRY_WAIT
                resent = True
            else:
                to = OutState.RETRY_WAIT
            OUT_MOVES.move(job.state, to)
            db.execute(
                "UPDATE out_jobs SET state=?, attempts=attempts+1, last_result=?, last_detail=?,"
                " pages_confirmed=max(pages_confirmed, ?), remote_ident=?, next_attempt=?,"
                " resent_after_unknown=? WHERE id=?",
                (
                    to.value,
                    outcome.result.value,
                    _cut(outcome.detail, _MAX_DETAIL),
                    int(outcome.pages_confirmed),
                    _cut(outcome.remote_ident, _MAX_IDENT) or job.remote_ident,
                    next_attempt if to is OutState.RETRY_WAIT and next_attempt is not None else job.next_attempt,
                    int(resent),
                    job_id,
                ),
            )
            if to in FINAL_OUT_STATES:
                self._finish(db, job, to, now)
        crash_point("out.done.committed")
        done = self._get(job_id)
        log.info("outbound fax %s: attempt %d %s -> %s", job_id, done.attempts, outcome.result.value, done.state.value)
        return done

    def release(self, job_id: int, now: float) -> OutJob:
        """Give a claimed job back before its call was answered (the worker is stopping): the
        attempt is closed as interrupted and not counted, the job is due again at once."""
        with self.spool._tx() as db:
            job = self._sending(db, job_id)
            attempt = self._open_attempt(db, job_id)
            connected = db.execute("SELECT connected FROM out_attempts WHERE id=?", (attempt,)).fetchone()[0]
            if connected is not None:
                raise ValueError(f"outbound fax {job_id} is connected: end the call with attempt_done")
            self._interrupt(db, job, attempt, now)
        return self._get(job_id)

    def cancel(self, job_id: int, now: float) -> OutJob:
        """Cancel a fax: a waiting one at once, a sending one by a request the worker acts on
        (it hangs up and reports ``cancelled``).  A cancelled fax stays cancelled (a second
        click changes nothing); a sent or failed one is refused (ValueError)."""
        with self.spool._tx() as db:
            job = self._locked_job(db, job_id)
            if job.state in WAITING_OUT_STATES:
                OUT_MOVES.move(job.state, OutState.CANCELLED)
                db.execute(
                    "UPDATE out_jobs SET state=?, cancel_requested=1, last_result=?, last_detail=? WHERE id=?",
                    (OutState.CANCELLED.value, Result.CANCELLED.value, "cancelled before it was sent", job_id),
                )
                self._finish(db, job, OutState.CANCELLED, now)
            elif job.state is OutState.SENDING:
                db.execute("UPDATE out_jobs SET cancel_requested=1 WHERE id=?", (job_id,))
            elif job.state is not OutState.CANCELLED:
                raise ValueError(f"outbound fax {job_id} is already {job.state.value}: nothing to cancel")
        crash_point("out.cancel.committed")
        log.info("outbound fax %s: cancel requested while %s", job_id, job.state.value)
        return self._get(job_id)

    def recover(self, now: float) -> _Jobs:
        """Finish what a crash interrupted (at start-up, before anything is submitted or claimed).

        A ``sending`` job whose call was never answered goes back to ``queued`` (its attempt
        closed as interrupted, not counted); one whose call was answered gets an ``unknown``
        attempt and is queued once more with ``resent_after_unknown``, or fails if it already
        had one; a cancel requested during the call cancels it instead.  An open job whose
        document is gone fails with an error; files no job names are removed.  Returns the jobs
        it changed.  A second run changes nothing.
        """
        changed: list[int] = []
        with self.spool._lock:
            with self.spool._tx() as db:
                for row in db.execute(
                    f"SELECT {_JOB_COLUMNS} FROM out_jobs WHERE state=? ORDER BY id", (OutState.SENDING.value,)
                ).fetchall():
                    job = _job_from_tuple(row)
                    attempt = db.execute(
                        "SELECT id, connected FROM out_attempts WHERE job_id=? AND finished IS NULL ORDER BY id DESC",
                        (job.id,),
                    ).fetchone()
                    if attempt is None or attempt[1] is None:
                        if attempt is None:
                            attempt_id = db.execute(
                                "INSERT INTO out_attempts (job_id, started) VALUES (?, ?)", (job.id, now)
                            ).lastrowid
                            assert attempt_id is not None
                        else:
                            attempt_id = attempt[0]
                        self._interrupt(db, job, attempt_id, now)
                    else:
                        self._unknown(db, job, attempt[0], now)
                    changed.append(job.id)
                uids = {r[0] for r in db.execute("SELECT uid FROM out_jobs")}
                marks = ",".join("?" for _ in WAITING_OUT_STATES)
                for job_id, uid in db.execute(
                    f"SELECT id, uid FROM out_jobs WHERE state IN ({marks}) ORDER BY id", WAITING_OUT_STATES
                ).fetchall():
                    if not (self.dir / f"{uid}.tif").is_file():
                        self._lost_document(db, self._locked_job(db, job_id), now)
                        changed.append(job_id)
            crash_point("out.recover.committed")
            strays = self._remove_strays(uids)
        jobs = [self._get(i) for i in dict.fromkeys(changed)]
        if jobs or strays:
            log.warning(
                "outbound queue checked: %d fax(es) put right after the last stop, %d stray file(s) removed",
                len(jobs),
                strays,
            )
        return jobs

    # -- reports ------------------------------------------------------------------------------

    def reports_due(self, now: float | None = None) -> _Jobs:
        """Finished jobs owing their sender a report (due by ``now``; None: all owed), oldest first."""
        if now is None:
            rows = self._rows("WHERE report_state=? ORDER BY report_next, id", (ReportState.PENDING.value,))
        else:
            rows = self._rows(
                "WHERE report_state=? AND report_next <= ? ORDER BY report_next, id",
                (ReportState.PENDING.value, now),
            )
        return rows

    def next_report_due(self) -> float | None:
        row = self.spool._query(
            "SELECT min(report_next) FROM out_jobs WHERE report_state=?", (ReportState.PENDING.value,)
        )
        return row[0][0]

    def report_sent(self, job_id: int, now: float) -> None:
        with self.spool._tx() as db:
            self._move_report(db, job_id, ReportState.SENT)
            db.execute(
                "UPDATE out_jobs SET report_state=?, report_sent_at=?, report_attempts=report_attempts+1,"
                " report_error='' WHERE id=?",
                (ReportState.SENT.value, now, job_id),
            )

    def report_retry(self, job_id: int, error: str, next_at: float, give_up: bool = False) -> None:
        """A report that could not go out waits for ``next_at``, or is abandoned (never a report
        about a report)."""
        to = ReportState.ABANDONED if give_up else ReportState.PENDING
        with self.spool._tx() as db:
            self._move_report(db, job_id, to)
            db.execute(
                "UPDATE out_jobs SET report_state=?, report_attempts=report_attempts+1, report_error=?,"
                " report_next=? WHERE id=?",
                (to.value, _cut(error, _MAX_ERROR), next_at, job_id),
            )

    # -- reading ------------------------------------------------------------------------------

    def get(self, job_id: int) -> OutJob | None:
        rows = self._rows("WHERE id=?", (int(job_id),))
        return rows[0] if rows else None

    def get_by_uid(self, uid: str) -> OutJob | None:
        rows = self._rows("WHERE uid=?", (uid,))
        return rows[0] if rows else None

    def get_by_idempotency_key(self, key: str) -> OutJob | None:
        """The job a way in already queued under ``meta["idempotency_key"]`` (the Graph watcher's
        "graph:<message id>:<number>"): a mail seen again after a crash is not faxed twice."""
        rows = self._rows("WHERE json_extract(meta, '$.idempotency_key') = ? ORDER BY id LIMIT 1", (key,))
        return rows[0] if rows else None

    def list(self, state: str | None = None, limit: int = 200, *, sender: str | None = None) -> _Jobs:
        """Jobs newest first, optionally of one state and/or one sender (exact address)."""
        clauses, params = [], []
        if state is not None:
            clauses.append("state=?")
            params.append(OutState(state).value)
        if sender is not None:
            clauses.append("sender=?")
            params.append(sender)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._rows(f"{where} ORDER BY created DESC, id DESC LIMIT ?", (*params, int(limit)))

    def attempts(self, job_id: int) -> _Attempts:
        rows = self.spool._query(
            f"SELECT {_ATTEMPT_COLUMNS} FROM out_attempts WHERE job_id=? ORDER BY id", (int(job_id),)
        )
        return [_attempt_from_row(r) for r in rows]

    def next_due(self) -> float | None:
        """When the earliest waiting job becomes due, or None when nothing waits."""
        marks = ",".join("?" for _ in WAITING_OUT_STATES)
        row = self.spool._query(f"SELECT min(next_attempt) FROM out_jobs WHERE state IN ({marks})", WAITING_OUT_STATES)
        return row[0][0]

    def counts(self) -> dict[OutState, int]:
        """Jobs per state, every state present (zero when none)."""
        counts = dict.fromkeys(OutState, 0)
        for state, n in self.spool._query("SELECT state, count(*) FROM out_jobs GROUP BY state"):
            counts[OutState(state)] = int(n)
        return counts

    def status(self) -> OutboundStatus:
        marks = ",".join("?" for _ in WAITING_OUT_STATES)
        with self.spool._lock:
            sending = {
                r: int(n)
                for r, n in self.spool._query(
                    "SELECT route, count(*) FROM out_jobs WHERE state=? GROUP BY route", (OutState.SENDING.value,)
                )
            }
            oldest = self.spool._query(
                f"SELECT min(created) FROM out_jobs WHERE state IN ({marks})", WAITING_OUT_STATES
            )[0][0]
            reports = self.spool._query(
                "SELECT count(*) FROM out_jobs WHERE report_state=?", (ReportState.PENDING.value,)
            )[0][0]
            return OutboundStatus(
                jobs={s.value: n for s, n in self.counts().items()},
                sending=sending,
                oldest_waiting=oldest,
                next_due=self.next_due(),
                reports_pending=int(reports),
            )

    # -- deleting -----------------------------------------------------------------------------

    def delete(self, job_id: int) -> OutJob:
        """Remove a finished job for good (rows, then its document); an open one is refused
        (ValueError: cancel it first).  A report still owed is dropped with it."""
        with self.spool._tx() as db:
            job = self._locked_job(db, job_id)
            if not job.final:
                raise ValueError(f"outbound fax {job_id} is {job.state.value}: cancel it before deleting it")
            _delete_rows(db, [job_id])
        crash_point("out.delete.committed")
        _delete_files(self.dir, [job.uid])
        log.info("outbound fax %s deleted", job_id)
        return job

    # -- internals ----------------------------------------------------------------------------

    def _rows(self, tail: str, params: tuple[Any, ...]) -> _Jobs:
        return [
            _job_from_tuple(tuple(r)) for r in self.spool._query(f"SELECT {_JOB_COLUMNS} FROM out_jobs {tail}", params)
        ]

    def _get(self, job_id: int) -> OutJob:
        job = self.get(job_id)
        if job is None:
            raise KeyError(f"no outbound fax {job_id}")
        return job

    @staticmethod
    def _locked_job(db: sqlite3.Connection, job_id: int) -> OutJob:
        row = db.execute(f"SELECT {_JOB_COLUMNS} FROM out_jobs WHERE id=?", (int(job_id),)).fetchone()
        if row is None:
            raise KeyError(f"no outbound fax {job_id}")
        return _job_from_tuple(row)

    def _sending(self, db: sqlite3.Connection, job_id: int) -> OutJob:
        """The job, which must be ``sending``: anything else is the worker's bug (LocalProtocolError)."""
        job = self._locked_job(db, job_id)
        if job.state is not OutState.SENDING:
            raise OUT_MOVES.error(f"outbound fax {job_id}: no call in progress (it is {job.state.value})")
        return job

    @staticmethod
    def _open_attempt(db: sqlite3.Connection, job_id: int) -> int:
        row = db.execute(
            "SELECT id FROM out_attempts WHERE job_id=? AND finished IS NULL ORDER BY id DESC", (job_id,)
        ).fetchone()
        if row is None:
            raise OUT_MOVES.error(f"outbound fax {job_id}: no attempt in progress")
        return int(row[0])

    def _interrupt(self, db: sqlite3.Connection, job: OutJob, attempt: int, now: float) -> None:
        """Nothing reached the far end: close the attempt uncounted; queue the job again (or
        cancel it, when that was asked for meanwhile)."""
        db.execute(
            "UPDATE out_attempts SET finished=?, result=?, detail=? WHERE id=?",
            (now, ATTEMPT_INTERRUPTED, INTERRUPTED_DETAIL, attempt),
        )
        if job.cancel_requested:
            OUT_MOVES.move(job.state, OutState.CANCELLED)
            db.execute(
                "UPDATE out_jobs SET state=?, last_result=?, last_detail=? WHERE id=?",
                (OutState.CANCELLED.value, Result.CANCELLED.value, "cancelled before it was sent", job.id),
            )
            self._finish(db, job, OutState.CANCELLED, now)
            return
        OUT_MOVES.move(job.state, OutState.QUEUED)
        db.execute(
            "UPDATE out_jobs SET state=?, next_attempt=min(next_attempt, ?) WHERE id=?",
            (OutState.QUEUED.value, now, job.id),
        )

    def _unknown(self, db: sqlite3.Connection, job: OutJob, attempt: int, now: float) -> None:
        """The far end had answered: the fax may have arrived.  Sent once more, never twice."""
        unknown = Outcome(Result.UNKNOWN, detail=WORDS[Result.UNKNOWN])
        row = db.execute("SELECT pages_confirmed FROM out_attempts WHERE id=?", (attempt,)).fetchone()
        unknown.pages_confirmed = int(row[0])
        _close_attempt(db, attempt, now, unknown)
        if job.cancel_requested:
            to = OutState.CANCELLED
        elif job.resent_after_unknown:
            to = OutState.FAILED
        else:
            to = OutState.QUEUED
        OUT_MOVES.move(job.state, to)
        db.execute(
            "UPDATE out_jobs SET state=?, attempts=attempts+1, last_result=?, last_detail=?,"
            " resent_after_unknown=?, next_attempt=? WHERE id=?",
            (
                to.value,
                Result.UNKNOWN.value,
                unknown.detail,
                int(job.resent_after_unknown or to is OutState.QUEUED),
                now if to is OutState.QUEUED else job.next_attempt,
                job.id,
            ),
        )
        if to in FINAL_OUT_STATES:
            self._finish(db, job, to, now)

    def _lost_document(self, db: sqlite3.Connection, job: OutJob, now: float) -> None:
        log.error("outbound fax %s: its document %s is missing; it cannot be sent", job.id, self.document_path(job))
        OUT_MOVES.move(job.state, OutState.FAILED)
        db.execute(
            "UPDATE out_jobs SET state=?, last_result=?, last_detail=? WHERE id=?",
            (OutState.FAILED.value, Result.ERROR.value, "the document to send went missing from the spool", job.id),
        )
        self._finish(db, job, OutState.FAILED, now)

    @staticmethod
    def _finish(db: sqlite3.Connection, job: OutJob, to: OutState, now: float) -> None:
        """The job's life is over: stamp it and owe the sender a report if the policy says so."""
        owed = bool(job.sender) and (
            job.report_policy == "always" or (job.report_policy == "failure" and to is not OutState.SENT)
        )
        report = REPORT_MOVES.move(job.report_state, ReportState.PENDING) if owed else job.report_state
        db.execute(
            "UPDATE out_jobs SET finished=?, report_state=?, report_next=? WHERE id=?",
            (now, report.value, now if owed else None, job.id),
        )

    @staticmethod
    def _move_report(db: sqlite3.Connection, job_id: int, to: ReportState) -> None:
        row = db.execute("SELECT report_state FROM out_jobs WHERE id=?", (int(job_id),)).fetchone()
        if row is None:
            raise KeyError(f"no outbound fax {job_id}")
        REPORT_MOVES.move(ReportState(row[0]), to)

    def _remove_strays(self, uids: set[str]) -> int:
        """Delete files in ``outbound/`` no job names (a submit cut off before its commit, a
        delete or purge cut off after its commit, a move's temporary file)."""
        removed = 0
        for p in self.dir.iterdir():
            if p.name.endswith(".tif") and p.name[:-4] in uids:
                continue
            log.warning("removing %s: no outbound fax points at it", p)
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
        if removed:
            fsync_dir(self.dir)
        return removed


def retry_at(job: OutJob, outcome: Outcome, retries: Sequence[int], now: float) -> float | None:
    """The ``next_attempt`` for ``attempt_done`` on a route whose schedule is ``retries`` (seconds
    before the first, second, ... retry): None when the fax was sent, the result is not worth
    another call, or the schedule is used up.  ``job`` as claimed (``attempts`` not yet counting
    the attempt that just ended).  An unknown outcome is tried again at once: the queue lets
    that happen once per job."""
    if outcome.result is Result.UNKNOWN:
        return now
    if not outcome.retryable or job.attempts >= len(retries):
        return None
    return now + retries[job.attempts]


def purge_outbound(spool: Spool, cutoff: float) -> int:
    """Retention for sent faxes: delete finished jobs that ended before ``cutoff`` (rows, then
    documents), in batches.  An open job, or one whose report is still owed, is kept whatever
    its age.  Called by ``Spool.purge_older_than``; returns how many went."""
    total = 0
    finals = ",".join("?" for _ in FINAL_OUT_STATES)
    directory = spool.root / OUTBOUND_DIR
    while True:
        with spool._tx() as db:
            rows = db.execute(
                f"SELECT id, uid FROM out_jobs WHERE state IN ({finals}) AND report_state != ?"
                " AND coalesce(finished, created) < ? ORDER BY id LIMIT ?",
                (*FINAL_OUT_STATES, ReportState.PENDING.value, float(cutoff), PURGE_BATCH),
            ).fetchall()
            if rows:
                _delete_rows(db, [r[0] for r in rows])
        if not rows:
            break
        crash_point("out.purge.committed")
        _delete_files(directory, [r[1] for r in rows])
        total += len(rows)
        if len(rows) < PURGE_BATCH:
            break
    if total:
        log.info("retention: %d sent fax(es) finished before %s purged", total, cutoff)
    return total


def _check_submission(
    number: str,
    e164: str,
    route: str,
    sender: str,
    source: str,
    subject: str,
    pages: int,
    meta_text: str,
    report: str,
) -> None:
    """Refuse (ValueError, naming the field) what the ways in should never hand over: these
    fields end up in the report mail's headers and on the web page."""
    for name, text, allowed in (
        ("number", number, ""),
        ("route", route, ""),
        ("sender", sender, ""),
        ("subject", subject, "\t"),
    ):
        if any((ord(c) < 0x20 and c not in allowed) or ord(c) == 0x7F for c in text):
            raise ValueError(f"{name}: control characters are not allowed")
    if not number or len(number) > _MAX_NUMBER:
        raise ValueError(f"number: must be 1 to {_MAX_NUMBER} characters")
    if not e164.startswith("+") or not e164[1:].isdigit() or len(e164) > 16:
        raise ValueError(f"e164: {e164[:20]!r} is not an E.164 number")
    if not route or len(route) > _MAX_NUMBER:
        raise ValueError("route: must be a route's name")
    if len(sender) > _MAX_SENDER:
        raise ValueError(f"sender: longer than {_MAX_SENDER} characters")
    if source not in SOURCES:
        raise ValueError(f"source: {source[:20]!r} is not one of {', '.join(sorted(SOURCES))}")
    if len(subject) > _MAX_SUBJECT:
        raise ValueError(f"subject: longer than {_MAX_SUBJECT} characters")
    if isinstance(pages, bool) or not isinstance(pages, int) or pages < 1:
        raise ValueError("pages: a fax has at least one page")
    if len(meta_text) > _MAX_META:
        raise ValueError(f"meta: more than {_MAX_META} characters as JSON")
    if report not in REPORT_POLICIES:
        raise ValueError(f"report: {report[:20]!r} is not one of {', '.join(sorted(REPORT_POLICIES))}")


def _move_durably(src: Path, dest: Path) -> None:
    """``src`` becomes ``dest``, on disk for good (file and both directories fsynced); across
    file systems through a temporary copy, so ``dest`` is never seen half written."""
    try:
        os.replace(src, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(src, tmp)
        fsync_file(tmp)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        src.unlink()
        fsync_dir(src.parent)
        return
    fsync_file(dest)
    fsync_dir(dest.parent)
    if src.parent.resolve() != dest.parent.resolve():
        fsync_dir(src.parent)


def _give_back(dest: Path, src: Path) -> None:
    try:
        os.replace(dest, src)
    except OSError:
        dest.unlink(missing_ok=True)


def _close_attempt(db: sqlite3.Connection, attempt: int, now: float, outcome: Outcome) -> None:
    """Store every field of ``outcome`` on the attempt row (bounded: it came off a line)."""
    db.execute(
        "UPDATE out_attempts SET finished=?, result=?, detail=?, pages_confirmed=max(pages_confirmed, ?),"
        " pages_total=?, remote_ident=?, bit_rate=?, ecm=?, duration=?, way=?, sip_status=?, t30_code=?,"
        " trace=? WHERE id=?",
        (
            now,
            outcome.result.value,
            _cut(outcome.detail, _MAX_DETAIL),
            int(outcome.pages_confirmed),
            int(outcome.pages_total),
            _cut(outcome.remote_ident, _MAX_IDENT),
            int(outcome.bit_rate),
            int(bool(outcome.ecm)),
            float(outcome.duration),
            _cut(outcome.way, _MAX_WAY),
            outcome.sip_status,
            outcome.t30_code,
            json.dumps(bounded_trace(outcome.trace)),
            attempt,
        ),
    )


def bounded_trace(trace: list[str]) -> list[str]:
    """The trace as stored: its first ``TRACE_HEAD`` and last ``TRACE_TAIL`` lines, each cut to
    ``TRACE_LINE`` characters, with one line saying how many were left out between."""
    lines = [_cut(str(line), TRACE_LINE) for line in trace[:TRACE_HEAD]]
    if len(trace) > TRACE_HEAD + TRACE_TAIL:
        lines.append(f"... {len(trace) - TRACE_HEAD - TRACE_TAIL} lines left out ...")
        lines += [_cut(str(line), TRACE_LINE) for line in trace[-TRACE_TAIL:]]
    else:
        lines += [_cut(str(line), TRACE_LINE) for line in trace[TRACE_HEAD:]]
    return lines


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _delete_rows(db: sqlite3.Connection, job_ids: list[int]) -> None:
    marks = ",".join("?" for _ in job_ids)
    db.execute(f"DELETE FROM out_attempts WHERE job_id IN ({marks})", job_ids)
    db.execute(f"DELETE FROM out_jobs WHERE id IN ({marks})", job_ids)


def _delete_files(directory: Path, uids: list[str]) -> None:
    removed = False
    for uid in uids:
        try:
            (directory / f"{uid}.tif").unlink()
            removed = True
        except FileNotFoundError:
            pass
    if removed:
        fsync_dir(directory)


def _job_from_tuple(row: tuple[Any, ...] | sqlite3.Row) -> OutJob:
    d = dict(zip(_JOB_NAMES, tuple(row), strict=True))
    d["cancel_requested"] = bool(d["cancel_requested"])
    d["resent_after_unknown"] = bool(d["resent_after_unknown"])
    d["meta"] = json.loads(d["meta"] or "{}")
    return OutJob(**d)


def _attempt_from_row(row: tuple[Any, ...] | sqlite3.Row) -> OutAttempt:
    d = dict(zip(_ATTEMPT_NAMES, tuple(row), strict=True))
    d["ecm"] = bool(d["ecm"])
    d["trace"] = json.loads(d["trace"] or "[]")
    return OutAttempt(**d)
