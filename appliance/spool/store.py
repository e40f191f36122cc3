"""The durable spool: one SQLite database (WAL) for facts and jobs, one file per fax image.

Order of writes, so a crash at any instant loses nothing:

1. ``begin_fax`` commits a row in state ``receiving`` before the first page arrives; the fax
   engine writes ``incoming/<uid>.tif``.
2. ``finish_fax`` counts the pages the file really holds (refusing, undecoded, any page longer
   or larger than a fax page can be), fsyncs it, renames it to ``faxes/<uid>.tif``, fsyncs the
   directory, and only then commits ``received``.
3. ``add_jobs`` commits one job per recipient in one transaction, each with a Message-ID fixed
   at creation, so a resend after a crash is the same message.

A call's diagnostics (its SIP messages; a pcap of its media when capture is on for its peer) are
kept in ``calls/<uid>.*`` beside the fax and go with it.

``recover`` at start-up finishes whatever a crash interrupted: a ``receiving`` row is finished
from whichever file exists (incoming or already renamed), ``delivering`` jobs are queued again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from appliance.fsutil import fsync_dir, fsync_file
from appliance.spool.crashpoint import crash_point
from appliance.spool.outbound import OUTBOUND_MIGRATION, OUTBOUND_SCHEMA, purge_outbound
from appliance.spool.states import (
    ALERT_MOVES,
    FAX_MOVES,
    JOB_MOVES,
    OPEN_JOB_STATES,
    WAITING_JOB_STATES,
    AlertState,
    FaxState,
    JobState,
    derived_fax_state,
    move,
)
from appliance.spool.tiffpages import PageScan, keep_first_pages, scan_pages

log = logging.getLogger("faxbridge.spool")

#: the states as plain strings, in their order of life (the web's filter, the CLI's choices)
FAX_STATES: tuple[str, ...] = tuple(s.value for s in FaxState)
JOB_STATES: tuple[str, ...] = tuple(s.value for s in JobState)

#: user_version of the database; each step in ``_MIGRATIONS`` brings an older one up to date
SCHEMA_VERSION = 3
#: how many faxes one purge transaction deletes, so the daemon's writes never wait long
PURGE_BATCH = 200
#: what a call may leave for its diagnostics in ``calls/<uid>.<kind>``: its SIP messages as text,
#: and the pcap of its media when the owner switched capture on for its peer
DIAGNOSTIC_FILES = ("sip.txt", "pcap")


@dataclass
class FaxRecord:
    #: the fax's number: what the web UI, the CLI, the mails and the log call it (decision 0014);
    #: AUTOINCREMENT, so a deleted fax's number is never given to another
    id: int
    #: internal key, unique beyond this box: file names and Message-IDs, never shown as the fax's name
    uid: str
    state: FaxState
    created: float
    finished: float | None = None
    complete: bool = False
    line: str = ""
    call_id: str = ""
    caller_number: str = ""
    caller_name: str = ""
    called_number: str = ""
    remote_ident: str = ""
    pages: int = 0
    bad_rows: int = 0
    bit_rate: int = 0
    ecm: bool = False
    resolution: str = ""
    duration: float = 0.0
    result_code: int = 0
    result_text: str = ""
    image: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = FaxState(self.state)  # a plain string from a caller becomes the state it names


@dataclass
class Job:
    id: int
    fax_id: int
    recipient: str
    message_id: str
    state: JobState
    attempts: int
    next_attempt: float
    last_error: str
    delivered_at: float | None
    created: float

    def __post_init__(self) -> None:
        self.state = JobState(self.state)


@dataclass(frozen=True)
class FaxTally:
    """Counts over the calls of a period (a day for the dashboard, all time for /metrics)."""

    calls: int = 0
    #: calls that brought at least one page
    faxes: int = 0
    pages: int = 0
    #: calls without a page or incomplete, and faxes whose delivery died
    failures: int = 0


@dataclass(frozen=True)
class ResultCount:
    """How many calls ended without a complete fax with one T.30 result code."""

    result_code: int
    calls: int


@dataclass(frozen=True)
class DeadLetter:
    """A job that failed for good, with the caller of its fax."""

    id: int
    fax_id: int
    recipient: str
    last_error: str
    created: float
    caller_number: str


#: FaxRecord fields the call may report; the rest belong to the spool.
FACT_FIELDS = (
    "line",
    "call_id",
    "caller_number",
    "caller_name",
    "called_number",
    "remote_ident",
    "pages",
    "bad_rows",
    "bit_rate",
    "ecm",
    "resolution",
    "duration",
    "result_code",
    "result_text",
    "extra",
)

_FAX_COLUMNS = tuple(f.name for f in dataclasses.fields(FaxRecord))
_JOB_COLUMNS = tuple(f.name for f in dataclasses.fields(Job))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS faxes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    uid           TEXT NOT NULL UNIQUE,
    state         TEXT NOT NULL,
    created       REAL NOT NULL,
    finished      REAL,
    complete      INTEGER NOT NULL DEFAULT 0,
    line          TEXT NOT NULL DEFAULT '',
    call_id       TEXT NOT NULL DEFAULT '',
    caller_number TEXT NOT NULL DEFAULT '',
    caller_name   TEXT NOT NULL DEFAULT '',
    called_number TEXT NOT NULL DEFAULT '',
    remote_ident  TEXT NOT NULL DEFAULT '',
    pages         INTEGER NOT NULL DEFAULT 0,
    bad_rows      INTEGER NOT NULL DEFAULT 0,
    bit_rate      INTEGER NOT NULL DEFAULT 0,
    ecm           INTEGER NOT NULL DEFAULT 0,
    resolution    TEXT NOT NULL DEFAULT '',
    duration      REAL NOT NULL DEFAULT 0,
    result_code   INTEGER NOT NULL DEFAULT 0,
    result_text   TEXT NOT NULL DEFAULT '',
    image         TEXT,
    extra         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS faxes_created_id ON faxes(created, id);
CREATE INDEX IF NOT EXISTS faxes_state_created_id ON faxes(state, created, id);
CREATE INDEX IF NOT EXISTS faxes_caller ON faxes(caller_number);
CREATE INDEX IF NOT EXISTS faxes_called ON faxes(called_number);
CREATE INDEX IF NOT EXISTS faxes_ident ON faxes(remote_ident);

CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    fax_id       INTEGER NOT NULL REFERENCES faxes(id),
    recipient    TEXT NOT NULL,
    message_id   TEXT NOT NULL UNIQUE,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error   TEXT NOT NULL DEFAULT '',
    delivered_at REAL,
    created      REAL NOT NULL,
    UNIQUE (fax_id, recipient)
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, next_attempt);
CREATE INDEX IF NOT EXISTS jobs_recipient ON jobs(recipient);

CREATE TABLE IF NOT EXISTS attempts (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    time   REAL NOT NULL,
    ok     INTEGER NOT NULL,
    reply  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts(job_id);

CREATE TABLE IF NOT EXISTS alerts (
    job_id       INTEGER PRIMARY KEY REFERENCES jobs(id),
    admin        TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error   TEXT NOT NULL DEFAULT '',
    created      REAL NOT NULL,
    sent_at      REAL
);
CREATE INDEX IF NOT EXISTS alerts_due ON alerts(state, next_attempt);
"""

#: version -> statements that bring a database of the version before it up to it.  The list
#: pages walk (created, id) newest first, with or without a state; version 1 indexed created
#: alone, which leaves SQLite a temporary B-tree sort for the id tie-break on every page.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "CREATE INDEX IF NOT EXISTS faxes_created_id ON faxes(created, id)",
        "CREATE INDEX IF NOT EXISTS faxes_state_created_id ON faxes(state, created, id)",
        "DROP INDEX IF EXISTS faxes_created",
        "DROP INDEX IF EXISTS faxes_state_created",
    ),
    3: OUTBOUND_MIGRATION,  # the outbound queue (issue 14): its tables, in appliance/spool/outbound.py
}


@dataclass(frozen=True)
class FaxQuery:
    """What the fax list is narrowed to; every text is a case-insensitive substring.

    ``since``/``until`` bound ``created`` (since inclusive, until exclusive); ``search`` looks in
    caller number and name, called number, TSI and the jobs' recipients all at once.
    """

    state: str | None = None
    search: str | None = None
    since: float | None = None
    until: float | None = None
    caller: str | None = None
    called: str | None = None
    tsi: str | None = None
    recipient: str | None = None

    def active(self) -> bool:
        return any(v is not None and v != "" for v in dataclasses.astuple(self))


#: the start-up recovery's counts in words, for the log line a newcomer reads in the terminal
_RECOVERED = {
    "finished": "fax(es) cut off by the last stop, kept",
    "no_fax": "call(s) cut off before a page",
    "requeued": "delivery job(s) queued again",
    "cleaned": "stray file(s) removed",
    "unrouted": "fax(es) routed now",
}


class Spool:
    """Faxes and delivery jobs on disk; thread-safe, one SQLite connection per object."""

    def __init__(self, root: Path, *, readonly: bool = False):
        self.root = Path(root)
        self.readonly = readonly
        self.incoming_dir = self.root / "incoming"
        self.faxes_dir = self.root / "faxes"
        self.calls_dir = self.root / "calls"
        self.db_path = self.root / "spool.db"
        self._lock = threading.RLock()
        if readonly:
            if not self.db_path.exists():
                raise FileNotFoundError(f"no spool database at {self.db_path}")
            uri = self.db_path.resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.create_function("fb_fold", 1, _fold, deterministic=True)
            return
        for d in (self.root, self.incoming_dir, self.faxes_dir, self.calls_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.create_function("fb_fold", 1, _fold, deterministic=True)
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            fresh = db.execute("SELECT count(*) FROM sqlite_master WHERE name='faxes'").fetchone()[0] == 0
            for stmt in (_SCHEMA + OUTBOUND_SCHEMA).split(";"):
                if stmt.strip():
                    db.execute(stmt)
            if not fresh:
                for step in sorted(_MIGRATIONS):
                    if version < step:
                        log.info("spool database: migrating to version %d", step)
                        for stmt in _MIGRATIONS[step]:
                            db.execute(stmt)
            if version > SCHEMA_VERSION:
                # a newer firmware's database after a downgrade: keep its number, it knows more
                log.warning("spool database is version %d, newer than this firmware's %d", version, SCHEMA_VERSION)
            else:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        fsync_dir(self.root)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; BEGIN IMMEDIATE so readers never block it midway."""
        if self.readonly:
            raise PermissionError("spool opened read-only")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite already rolled back after SQLITE_FULL, for one
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] | list[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._db.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    # -- faxes --------------------------------------------------------------------------------

    def begin_fax(self, now: float, **facts: Any) -> FaxRecord:
        """Record a call before any page arrives, so even a crash mid-page leaves a trace."""
        cols = _fact_columns(facts)
        uid = secrets.token_hex(8)
        cols.update(uid=uid, state=FaxState.RECEIVING.value, created=now)
        names = ", ".join(cols)
        marks = ", ".join("?" for _ in cols)
        with self._tx() as db:
            fax_id = db.execute(f"INSERT INTO faxes ({names}) VALUES ({marks})", tuple(cols.values())).lastrowid
        assert fax_id is not None  # an INSERT always sets it
        crash_point("begin.committed")
        fax = self.get_fax(fax_id)
        assert fax is not None
        return fax

    def incoming_path(self, fax: FaxRecord) -> Path:
        return self.incoming_dir / f"{fax.uid}.tif"

    def final_path(self, fax: FaxRecord) -> Path:
        return self.faxes_dir / f"{fax.uid}.tif"

    def diagnostics_path(self, fax: FaxRecord, kind: str) -> Path:
        """Where the call's diagnostics file of ``kind`` (one of DIAGNOSTIC_FILES) is kept."""
        if kind not in DIAGNOSTIC_FILES:
            raise ValueError(f"no diagnostics file {kind!r}")
        return self.calls_dir / f"{fax.uid}.{kind}"

    def save_diagnostics(self, fax: FaxRecord, files: dict[str, bytes | bytearray]) -> None:
        """Keep the call's diagnostics beside its fax (written to a temporary name, then renamed: a
        reader sees a whole file or none).  Not fsync'ed: unlike the fax, losing it costs nothing."""
        for kind, data in files.items():
            path = self.diagnostics_path(fax, kind)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    def update_facts(self, fax_id: int, **facts: Any) -> None:
        """Store call facts as they become known; ``extra`` is merged key by key."""
        cols = _fact_columns(facts)
        if not cols:
            return
        with self._tx() as db:
            if "extra" in cols:
                row = db.execute("SELECT extra FROM faxes WHERE id=?", (fax_id,)).fetchone()
                if row is None:
                    raise KeyError(f"no fax {fax_id}")
                merged = json.loads(row[0] or "{}")
                merged.update(facts["extra"])
                cols["extra"] = json.dumps(merged)
            sets = ", ".join(f"{k}=?" for k in cols)
            n = db.execute(f"UPDATE faxes SET {sets} WHERE id=?", (*cols.values(), fax_id)).rowcount
        if n == 0:
            raise KeyError(f"no fax {fax_id}")

    def finish_fax(self, fax_id: int, now: float, *, complete: bool, **facts: Any) -> FaxRecord:
        """Make the received file durable, then commit ``received`` (or ``no_fax``).

        A page larger than a fax page can be (``appliance.fax.pagelimits``) is never decoded: the
        file keeps it as it came, ``pages`` counts only the pages that can be delivered, and the
        result text and ``extra["refused_pages"]`` say which were refused and why; such a fax is
        incomplete.  One whose every page is refused is still ``received`` (its image kept, no
        page to deliver), never ``no_fax``: it came, and the owner must be able to see why it failed.

        Idempotent: a fax that is no longer ``receiving`` is returned unchanged.
        """
        fax = self.get_fax(fax_id)
        if fax is None:
            raise KeyError(f"no fax {fax_id}")
        if fax.state != FaxState.RECEIVING:
            return fax
        if facts:
            self.update_facts(fax_id, **facts)
        incoming, final = self.incoming_path(fax), self.final_path(fax)
        # After a crash between rename and commit, the file is already in faxes/.
        src = incoming if incoming.exists() or not final.exists() else final
        scan = scan_pages(src)
        crash_point("finish.counted")
        if scan.readable == 0:
            return self._commit_no_fax(fax, now, complete=complete)
        if scan.readable < scan.claimed:
            log.warning(
                "fax %s: %d of %d pages decode; keeping the first %d",
                fax.id,
                scan.readable,
                scan.claimed,
                scan.readable,
            )
            try:
                keep_first_pages(src, scan.readable)
                scan = scan_pages(src)
            except Exception:  # a damaged tail must not cost the good pages
                log.exception("fax %s: could not rewrite without the damaged page", fax.id)
            if scan.readable == 0:
                return self._commit_no_fax(fax, now, complete=complete)
        fsync_file(src)
        crash_point("finish.fsynced")
        if src != final:
            os.replace(src, final)
            crash_point("finish.renamed")
            fsync_dir(self.faxes_dir)
            fsync_dir(self.incoming_dir)
        crash_point("finish.dirsynced")
        image = str(final.relative_to(self.root))
        good = scan.deliverable
        received = move(FAX_MOVES, fax.state, FaxState.RECEIVED, f"fax {fax.id}")
        with self._tx() as db:
            if scan.refused:
                # The file stays as it came (the owner can see what was sent); the record says which
                # pages are not delivered and why, and the fax counts as incomplete.
                complete = False
                row = db.execute("SELECT result_text, extra FROM faxes WHERE id=?", (fax_id,)).fetchone()
                extra = json.loads(row[1] or "{}")
                extra["refused_pages"] = [r.as_dict() for r in scan.refused]
                text = refusal_text(scan) + (f" ({row[0]})" if row[0] else "")
                db.execute(
                    "UPDATE faxes SET result_text=?, extra=? WHERE id=? AND state=?",
                    (text, json.dumps(extra), fax_id, fax.state.value),
                )
            db.execute(
                "UPDATE faxes SET state=?, pages=?, complete=?, finished=?, image=? WHERE id=? AND state=?",
                (received.value, good, int(complete), now, image, fax_id, fax.state.value),
            )
        crash_point("finish.committed")
        if scan.refused:
            log.warning("fax %s: %s", fax.id, refusal_text(scan))
        log.info("fax %s received: %d page(s)%s", fax.id, good, "" if complete else ", incomplete")
        done = self.get_fax(fax_id)
        assert done is not None
        return done

    def _commit_no_fax(self, fax: FaxRecord, now: float, *, complete: bool) -> FaxRecord:
        no_fax = move(FAX_MOVES, fax.state, FaxState.NO_FAX, f"fax {fax.id}")
        with self._tx() as db:
            db.execute(
                "UPDATE faxes SET state=?, pages=0, complete=?, finished=?, image=NULL WHERE id=? AND state=?",
                (no_fax.value, int(complete), now, fax.id, fax.state.value),
            )
        crash_point("finish.nofax_committed")
        for p in (self.incoming_path(fax), self.final_path(fax)):
            p.unlink(missing_ok=True)
        log.info("fax %s: the call ended without a readable page", fax.id)
        done = self.get_fax(fax.id)
        assert done is not None
        return done

    def get_fax(self, fax_id: int) -> FaxRecord | None:
        rows = self._query("SELECT * FROM faxes WHERE id=?", (fax_id,))
        return _fax_from_row(rows[0]) if rows else None

    def get_fax_by_uid(self, uid: str) -> FaxRecord | None:
        rows = self._query("SELECT * FROM faxes WHERE uid=?", (uid,))
        return _fax_from_row(rows[0]) if rows else None

    def image_path(self, fax: FaxRecord) -> Path | None:
        return self.root / fax.image if fax.image else None

    def list_faxes(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        state: str | None = None,
        search: str | None = None,
        query: FaxQuery | None = None,
        before: tuple[float, int] | None = None,
        after: tuple[float, int] | None = None,
    ) -> list[FaxRecord]:
        """Newest first; ``search`` is a case-insensitive substring of numbers, names, TSI or recipient.

        ``before``/``after`` are keyset cursors, a (created, id) pair of a listed fax: the page
        of faxes just older (or just newer) than it.  Unlike a deep OFFSET they cost the same
        on the thousandth page as on the first, because the (created, id) index is entered
        at the cursor instead of being walked from the newest fax.
        """
        where, params = _filters(query or FaxQuery(state=state, search=search))
        order = "DESC"
        if before is not None:
            where = _and(where, "(created, id) < (?, ?)")  # a row value: SQLite seeks the index
            params += [float(before[0]), int(before[1])]
        elif after is not None:
            where = _and(where, "(created, id) > (?, ?)")
            params += [float(after[0]), int(after[1])]
            order = "ASC"
        rows = self._query(
            f"SELECT * FROM faxes {where} ORDER BY created {order}, id {order} LIMIT ? OFFSET ?",
            (*params, int(limit), int(offset)),
        )
        faxes = [_fax_from_row(r) for r in rows]
        return faxes[::-1] if order == "ASC" else faxes

    def count_faxes(
        self,
        *,
        state: str | None = None,
        search: str | None = None,
        query: FaxQuery | None = None,
        cap: int | None = None,
    ) -> int:
        """How many faxes match; with ``cap``, counting stops at cap + 1 ("more than cap")."""
        where, params = _filters(query or FaxQuery(state=state, search=search))
        if cap is None:
            return int(self._query(f"SELECT count(*) FROM faxes {where}", params)[0][0])
        return int(
            self._query(f"SELECT count(*) FROM (SELECT 1 FROM faxes {where} LIMIT ?)", (*params, int(cap) + 1))[0][0]
        )

    def jobs_for_faxes(self, fax_ids: list[int]) -> dict[int, list[Job]]:
        """The jobs of many faxes in one query (a list page), by fax id, each in creation order."""
        out: dict[int, list[Job]] = {i: [] for i in fax_ids}
        if not fax_ids:
            return out
        marks = ",".join("?" for _ in fax_ids)
        for r in self._query(f"SELECT * FROM jobs WHERE fax_id IN ({marks}) ORDER BY id", fax_ids):
            out[r["fax_id"]].append(_job_from_row(r))
        return out

    # -- jobs ---------------------------------------------------------------------------------

    def add_jobs(self, fax_id: int, recipients: list[str], now: float, *, notice: bool = False) -> list[Job]:
        """One job per recipient, all in one transaction; calling again adds nothing twice.

        ``notice``: the fax has no page but its recipients are owed a message anyway (an Exchange
        UM missed-call notice); the record stays ``no_fax``."""
        with self._tx() as db:
            row = db.execute("SELECT uid, state FROM faxes WHERE id=?", (fax_id,)).fetchone()
            if row is None:
                raise KeyError(f"no fax {fax_id}")
            uid, state = row
            if state == FaxState.RECEIVING or (state == FaxState.NO_FAX and not notice):
                raise ValueError(f"fax {fax_id} is {state}: nothing to deliver")
            n = db.execute("SELECT count(*) FROM jobs WHERE fax_id=?", (fax_id,)).fetchone()[0]
            for rcpt in dict.fromkeys(recipients):
                exists = db.execute("SELECT 1 FROM jobs WHERE fax_id=? AND recipient=?", (fax_id, rcpt)).fetchone()
                if exists:
                    continue
                n += 1
                db.execute(
                    "INSERT INTO jobs (fax_id, recipient, message_id, state, next_attempt,"
                    " created) VALUES (?, ?, ?, ?, ?, ?)",
                    (fax_id, rcpt, f"<{uid}.{n}@faxbridge>", JobState.QUEUED.value, now, now),
                )
            crash_point("add_jobs.inserted")
            self._refresh_fax_state(db, fax_id)
        crash_point("add_jobs.committed")
        wanted = set(recipients)
        return [j for j in self.jobs_for(fax_id) if j.recipient in wanted]

    def jobs_for(self, fax_id: int) -> list[Job]:
        return [_job_from_row(r) for r in self._query("SELECT * FROM jobs WHERE fax_id=? ORDER BY id", (fax_id,))]

    def get_job(self, job_id: int) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _job_from_row(rows[0]) if rows else None

    def claim_due_jobs(self, now: float, limit: int = 10) -> list[Job]:
        """Move due jobs to ``delivering`` and return them; each is claimed by one caller only."""
        with self._tx() as db:
            due = db.execute(
                "SELECT id, state FROM jobs WHERE state IN (?, ?) AND next_attempt <= ?"
                " ORDER BY next_attempt, id LIMIT ?",
                (*WAITING_JOB_STATES, now, int(limit)),
            ).fetchall()
            if not due:
                return []
            ids = [r[0] for r in due]
            for job_id, state in due:
                move(JOB_MOVES, JobState(state), JobState.DELIVERING, f"job {job_id}")
            marks = ",".join("?" for _ in ids)
            db.execute(f"UPDATE jobs SET state=? WHERE id IN ({marks})", (JobState.DELIVERING.value, *ids))
            for (fax_id,) in db.execute(f"SELECT DISTINCT fax_id FROM jobs WHERE id IN ({marks})", ids).fetchall():
                self._refresh_fax_state(db, fax_id)
        return [j for j in (self.get_job(i) for i in ids) if j is not None]

    def release_jobs(self, job_ids: list[int]) -> None:
        """Give claimed jobs back unattempted (the worker is stopping), as recover() would."""
        if not job_ids:
            return
        marks = ",".join("?" for _ in job_ids)
        back = move(JOB_MOVES, JobState.DELIVERING, JobState.QUEUED, "a released job")
        with self._tx() as db:
            fax_ids = [
                r[0]
                for r in db.execute(
                    f"SELECT DISTINCT fax_id FROM jobs WHERE id IN ({marks}) AND state=?",
                    (*job_ids, JobState.DELIVERING.value),
                )
            ]
            db.execute(
                f"UPDATE jobs SET state=? WHERE id IN ({marks}) AND state=?",
                (back.value, *job_ids, JobState.DELIVERING.value),
            )
            for fax_id in fax_ids:
                self._refresh_fax_state(db, fax_id)

    def next_due(self) -> float | None:
        """When the earliest waiting job becomes due, or None when nothing waits."""
        row = self._query("SELECT min(next_attempt) FROM jobs WHERE state IN (?, ?)", WAITING_JOB_STATES)
        return row[0][0]

    def job_delivered(self, job_id: int, now: float, reply: str) -> None:
        self._finish_attempt(
            job_id, now, JobState.DELIVERED, ok=True, reply=reply, sets="delivered_at=?, last_error=''", params=(now,)
        )

    def job_retry(self, job_id: int, now: float, error: str, next_attempt: float) -> None:
        self._finish_attempt(
            job_id,
            now,
            JobState.FAILED_RETRYING,
            ok=False,
            reply=error,
            sets="next_attempt=?, last_error=?",
            params=(next_attempt, error),
        )

    def job_dead(self, job_id: int, now: float, error: str, *, alert_to: str = "") -> None:
        """Mark the job dead; with ``alert_to``, owe the admin one alert, in the same commit, so
        a crash can neither lose the alert nor (once it is marked sent) repeat it."""
        self._finish_attempt(
            job_id, now, JobState.DEAD, ok=False, reply=error, sets="last_error=?", params=(error,), alert_to=alert_to
        )

    def _finish_attempt(
        self,
        job_id: int,
        now: float,
        outcome: JobState,
        *,
        ok: bool,
        reply: str,
        sets: str,
        params: tuple[Any, ...],
        alert_to: str = "",
    ) -> None:
        """Record one attempt's ``outcome`` of a claimed (``delivering``) job, with its reply."""
        with self._tx() as db:
            row = db.execute("SELECT fax_id, state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(f"no job {job_id}")
            move(JOB_MOVES, JobState(row[1]), outcome, f"job {job_id}")
            db.execute(
                f"UPDATE jobs SET state=?, {sets}, attempts=attempts+1 WHERE id=?", (outcome.value, *params, job_id)
            )
            db.execute(
                "INSERT INTO attempts (job_id, time, ok, reply) VALUES (?, ?, ?, ?)", (job_id, now, int(ok), reply)
            )
            if alert_to:
                db.execute(
                    "INSERT OR REPLACE INTO alerts (job_id, admin, state, next_attempt, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (job_id, alert_to, AlertState.PENDING.value, now, now),
                )
            self._refresh_fax_state(db, row[0])

    # -- dead-letter alerts ---------------------------------------------------------------------

    def due_alerts(self, now: float) -> list[dict[str, Any]]:
        """Alerts owed to the admin and due now (one per dead job)."""
        rows = self._query(
            "SELECT * FROM alerts WHERE state=? AND next_attempt <= ? ORDER BY next_attempt, job_id",
            (AlertState.PENDING.value, now),
        )
        return [dict(r) for r in rows]

    def get_alert(self, job_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM alerts WHERE job_id=?", (job_id,))
        return dict(rows[0]) if rows else None

    def next_alert_due(self) -> float | None:
        return self._query("SELECT min(next_attempt) FROM alerts WHERE state=?", (AlertState.PENDING.value,))[0][0]

    def alert_sent(self, job_id: int, now: float) -> None:
        with self._tx() as db:
            sent = self._move_alert(db, job_id, AlertState.SENT)
            db.execute("UPDATE alerts SET state=?, sent_at=?, attempts=attempts+1 WHERE job_id=?", (sent, now, job_id))

    def alert_retry(self, job_id: int, error: str, next_attempt: float, *, give_up: bool = False) -> None:
        """A failed alert waits for its next try, or is abandoned: never an alert about an alert."""
        with self._tx() as db:
            to = self._move_alert(db, job_id, AlertState.ABANDONED if give_up else AlertState.PENDING)
            db.execute(
                "UPDATE alerts SET state=?, attempts=attempts+1, last_error=?, next_attempt=? WHERE job_id=?",
                (to, error, next_attempt, job_id),
            )

    @staticmethod
    def _move_alert(db: sqlite3.Connection, job_id: int, to: AlertState) -> str:
        """The alert's new state as stored, checked against ALERT_MOVES (no alert: nothing moves)."""
        row = db.execute("SELECT state FROM alerts WHERE job_id=?", (job_id,)).fetchone()
        if row is not None:
            move(ALERT_MOVES, AlertState(row[0]), to, f"alert of job {job_id}")
        return to.value

    # -- listing and resending ------------------------------------------------------------------

    def list_jobs(self, *, state: str | None = None, limit: int = 200) -> list[Job]:
        """Jobs newest first; each names its fax by ``fax_id``, the number admins quote."""
        where, params = ("WHERE state=?", [state]) if state else ("", [])
        rows = self._query(f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?", (*params, int(limit)))
        return [_job_from_row(r) for r in rows]

    def resend(self, fax_id: int, recipient: str, now: float) -> Job:
        """Queue a fax again for ``recipient``, as a new message with its own Message-ID.

        At-least-once keeps one Message-ID for every retry of one job, so a crash-resend is a
        duplicate the mailbox can recognise.  A deliberate resend is different: the admin wants
        a new message (the old one may have been deleted, or never accepted), so it gets a fresh
        Message-ID.  The schema keeps one row per (fax, recipient), so a resend to a recipient the
        fax already had re-arms that row (attempts to zero, new Message-ID, any alert forgotten;
        the attempts history stays); a new recipient gets a new row.  A job still in flight
        (queued, delivering, retrying) is refused: changing its Message-ID mid-delivery would break
        the at-least-once rule.
        """
        with self._tx() as db:
            row = db.execute("SELECT uid, state FROM faxes WHERE id=?", (fax_id,)).fetchone()
            if row is None:
                raise KeyError(f"no fax {fax_id}")
            uid, fax_state = row
            if fax_state in (FaxState.RECEIVING, FaxState.NO_FAX):
                raise ValueError(f"fax {fax_id} is {fax_state}: nothing to deliver")
            job = db.execute(
                "SELECT id, state FROM jobs WHERE fax_id=? AND recipient=?", (fax_id, recipient)
            ).fetchone()
            message_id = f"<{uid}.{secrets.token_hex(6)}@faxbridge>"
            if job is None:
                db.execute(
                    "INSERT INTO jobs (fax_id, recipient, message_id, state, next_attempt, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (fax_id, recipient, message_id, JobState.QUEUED.value, now, now),
                )
            elif job[1] in (JobState.DELIVERED, JobState.DEAD):
                queued = move(JOB_MOVES, JobState(job[1]), JobState.QUEUED, f"job {job[0]}")
                db.execute(
                    "UPDATE jobs SET state=?, message_id=?, attempts=0, next_attempt=?,"
                    " last_error='', delivered_at=NULL, created=? WHERE id=?",
                    (queued.value, message_id, now, now, job[0]),
                )
                db.execute("DELETE FROM alerts WHERE job_id=?", (job[0],))
            else:
                raise ValueError(f"fax {fax_id} to {recipient} is still {job[1]}: it will be delivered")
            self._refresh_fax_state(db, fax_id)
        found = [j for j in self.jobs_for(fax_id) if j.recipient == recipient]
        return found[0]

    def attempts(self, job_id: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT job_id, time, ok, reply FROM attempts WHERE job_id=? ORDER BY id", (job_id,))
        return [{"job_id": r["job_id"], "time": r["time"], "ok": bool(r["ok"]), "reply": r["reply"]} for r in rows]

    # -- summaries: the read API of the dashboard, the control socket's status and /metrics ---------
    # Every query here is bounded: it runs on an index or over a fixed number of rows, so a spool
    # with 100,000 faxes answers as fast as an empty one.

    def job_counts(self) -> dict[JobState, int]:
        """Jobs per state, every state present (zero when none): ``jobs_due`` covers the GROUP BY."""
        counts = dict.fromkeys(JobState, 0)
        for state, n in self._query("SELECT state, count(*) FROM jobs GROUP BY state"):
            counts[JobState(state)] = int(n)
        return counts

    def oldest_waiting(self) -> float | None:
        """When the oldest job still waiting for delivery (queued or retrying) was created."""
        row = self._query("SELECT min(created) FROM jobs WHERE state IN (?, ?)", WAITING_JOB_STATES)
        return row[0][0]

    def tally_since(self, since: float) -> FaxTally:
        """Calls, faxes, pages and failures (no page, incomplete, or delivery dead) since ``since``."""
        row = self._query(
            "SELECT count(*), sum(state NOT IN (:no_fax, :receiving)), sum(pages),"
            " sum(state IN (:no_fax, :dead) OR (complete = 0 AND state != :receiving))"
            " FROM faxes WHERE created >= :since",
            {
                "no_fax": FaxState.NO_FAX.value,
                "receiving": FaxState.RECEIVING.value,
                "dead": FaxState.DEAD.value,
                "since": since,
            },
        )[0]
        return FaxTally(*(int(v or 0) for v in row))

    def failures_by_result(self, limit: int) -> list[ResultCount]:
        """Calls that brought no complete fax, per T.30 result code, the commonest ``limit`` first."""
        rows = self._query(
            "SELECT result_code, count(*) FROM faxes WHERE state != :receiving"
            " AND (state = :no_fax OR complete = 0) GROUP BY result_code ORDER BY count(*) DESC LIMIT :limit",
            {"receiving": FaxState.RECEIVING.value, "no_fax": FaxState.NO_FAX.value, "limit": int(limit)},
        )
        return [ResultCount(int(code), int(n)) for code, n in rows]

    def delivery_latencies(self, limit: int) -> list[float]:
        """Seconds from job creation to delivery, for the last ``limit`` delivered jobs, newest first."""
        # "+state": not through the state index, which would sort every delivered job; newest ids first
        # instead, stopping after `limit` rows
        rows = self._query(
            "SELECT delivered_at - created FROM jobs WHERE +state = ?"
            " AND delivered_at IS NOT NULL ORDER BY id DESC LIMIT ?",
            (JobState.DELIVERED.value, int(limit)),
        )
        return [max(0.0, float(r[0])) for r in rows]

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The newest dead jobs with their fax's caller, for the dashboard's alerts."""
        rows = self._query(
            "SELECT jobs.id, jobs.fax_id, jobs.recipient, jobs.last_error, jobs.created, faxes.caller_number"
            " FROM jobs JOIN faxes ON faxes.id = jobs.fax_id WHERE jobs.state = ?"
            " ORDER BY jobs.id DESC LIMIT ?",
            (JobState.DEAD.value, int(limit)),
        )
        return [DeadLetter(*r) for r in rows]

    def schema_version(self) -> int:
        """The database's user_version (``SCHEMA_VERSION`` once this firmware opened it, or newer)."""
        return int(self._query("PRAGMA user_version")[0][0])

    # -- deleting -----------------------------------------------------------------------------

    def delete_fax(self, fax_id: int) -> FaxRecord:
        """Remove a fax for good: its rows (jobs, attempts, alerts) in one commit, then its files.

        Refused (ValueError) while the call is still being received or a delivery is in flight:
        the fax engine or the delivery worker holds the file then.  Queued or retrying jobs are
        cancelled with it (the worker claims jobs in a transaction, so it sees them either whole
        or gone).  Rows first: a crash after the commit leaves only files no row points at, which
        ``recover`` removes; the other order could leave a row whose image is gone.
        """
        with self._tx() as db:
            row = db.execute("SELECT * FROM faxes WHERE id=?", (fax_id,))
            row.row_factory = sqlite3.Row
            found = row.fetchone()
            if found is None:
                raise KeyError(f"no fax {fax_id}")
            fax = _fax_from_row(found)
            if fax.state == FaxState.RECEIVING:
                raise ValueError(f"fax {fax.id} is still being received")
            busy = db.execute(
                "SELECT count(*) FROM jobs WHERE fax_id=? AND state=?", (fax_id, JobState.DELIVERING.value)
            ).fetchone()[0]
            if busy:
                raise ValueError(f"fax {fax.id} is being delivered right now; try again in a minute")
            self._delete_rows(db, [fax_id])
        crash_point("delete.committed")
        self._delete_files([fax])
        log.info("fax %s deleted", fax.id)
        return fax

    def purge_older_than(self, cutoff: float) -> int:
        """Delete faxes received before ``cutoff`` (retention); returns how many went.

        A fax still owed a delivery (a job queued, delivering or retrying), still being received,
        or received but not routed yet (start-up routes it) is kept whatever its age: retention
        must never eat a fax nobody has had yet.
        Works in batches of ``PURGE_BATCH`` so the daemon's own writes wait at most one batch.
        """
        total = 0
        open_marks = ",".join("?" for _ in OPEN_JOB_STATES)
        while True:
            with self._tx() as db:
                cur = db.execute(
                    "SELECT * FROM faxes WHERE created < ? AND state NOT IN (?, ?)"
                    " AND NOT EXISTS"
                    f" (SELECT 1 FROM jobs WHERE jobs.fax_id=faxes.id AND jobs.state IN ({open_marks}))"
                    " ORDER BY created, id LIMIT ?",
                    (float(cutoff), FaxState.RECEIVING.value, FaxState.RECEIVED.value, *OPEN_JOB_STATES, PURGE_BATCH),
                )
                cur.row_factory = sqlite3.Row
                faxes = [_fax_from_row(r) for r in cur.fetchall()]
                if faxes:
                    self._delete_rows(db, [f.id for f in faxes])
            if not faxes:
                break
            self._delete_files(faxes)
            total += len(faxes)
            if len(faxes) < PURGE_BATCH:
                break
        if total:
            log.info("retention: %d fax(es) received before %s purged", total, cutoff)
        purge_outbound(self, cutoff)  # and sent faxes finished before it (logged there)
        return total

    @staticmethod
    def _delete_rows(db: sqlite3.Connection, fax_ids: list[int]) -> None:
        marks = ",".join("?" for _ in fax_ids)
        jobs = f"SELECT id FROM jobs WHERE fax_id IN ({marks})"
        db.execute(f"DELETE FROM attempts WHERE job_id IN ({jobs})", fax_ids)
        db.execute(f"DELETE FROM alerts WHERE job_id IN ({jobs})", fax_ids)
        db.execute(f"DELETE FROM jobs WHERE fax_id IN ({marks})", fax_ids)
        db.execute(f"DELETE FROM faxes WHERE id IN ({marks})", fax_ids)

    def _delete_files(self, faxes: list[FaxRecord]) -> None:
        """The image, the incoming leftover and the web's rendered pages (``cache/<uid>-*``)."""
        cache = self.root / "cache"
        dirs: set[Path] = set()
        for fax in faxes:
            paths = [self.incoming_path(fax), self.final_path(fax)]
            paths += [self.diagnostics_path(fax, kind) for kind in DIAGNOSTIC_FILES]
            if fax.image:
                paths.append(self.root / fax.image)
            if cache.is_dir() and fax.uid.isalnum():  # uids are hex: no glob metacharacters
                paths += cache.glob(f"{fax.uid}-*")
            for p in paths:
                try:
                    p.unlink()
                    dirs.add(p.parent)
                except FileNotFoundError:
                    pass
        for d in dirs:
            fsync_dir(d)

    @staticmethod
    def _refresh_fax_state(db: sqlite3.Connection, fax_id: int) -> None:
        """Derive the fax's state from its jobs (``derived_fax_state``), a move FAX_MOVES allows."""
        states = [JobState(r[0]) for r in db.execute("SELECT state FROM jobs WHERE fax_id=?", (fax_id,))]
        current = db.execute("SELECT state FROM faxes WHERE id=?", (fax_id,)).fetchone()
        if not states or current is None or current[0] == FaxState.NO_FAX:  # a notice's jobs leave it no_fax
            return
        new = derived_fax_state(states)
        if new != current[0]:
            move(FAX_MOVES, FaxState(current[0]), new, f"fax {fax_id}")
            db.execute("UPDATE faxes SET state=? WHERE id=?", (new.value, fax_id))

    # -- start-up -----------------------------------------------------------------------------

    def recover(self, now: float) -> dict[str, Any]:
        """Finish what a crash interrupted; return counts and the faxes still needing routing."""
        counts: dict[str, Any] = {"finished": 0, "no_fax": 0, "requeued": 0, "cleaned": 0}
        for row in self._query("SELECT id FROM faxes WHERE state=? ORDER BY id", (FaxState.RECEIVING.value,)):
            fax = self.finish_fax(row[0], now, complete=False)
            counts["no_fax" if fax.state == FaxState.NO_FAX else "finished"] += 1
        requeued = move(JOB_MOVES, JobState.DELIVERING, JobState.QUEUED, "a job cut off by the last stop")
        with self._tx() as db:
            fax_ids = [
                r[0] for r in db.execute("SELECT DISTINCT fax_id FROM jobs WHERE state=?", (JobState.DELIVERING.value,))
            ]
            counts["requeued"] = db.execute(
                "UPDATE jobs SET state=?, next_attempt=min(next_attempt, ?) WHERE state=?",
                (requeued.value, now, JobState.DELIVERING.value),
            ).rowcount
            for fax_id in fax_ids:
                self._refresh_fax_state(db, fax_id)
        counts["cleaned"] = self._remove_strays()
        counts["unrouted"] = [
            _fax_from_row(r)
            for r in self._query(
                "SELECT * FROM faxes WHERE state=? AND NOT EXISTS"
                " (SELECT 1 FROM jobs WHERE jobs.fax_id=faxes.id) ORDER BY id",
                (FaxState.RECEIVED.value,),
            )
        ]
        sizes = {k: (len(v) if isinstance(v, list) else v) for k, v in counts.items()}
        log.info(
            "spool checked: %s", ", ".join(f"{n} {_RECOVERED[k]}" for k, n in sizes.items() if n) or "all in order"
        )
        return counts

    def _remove_strays(self) -> int:
        """Delete files no live row points at (trim leftovers, files of no_fax calls)."""
        receiving = {r[0] for r in self._query("SELECT uid FROM faxes WHERE state=?", (FaxState.RECEIVING.value,))}
        kept = {r[0] for r in self._query("SELECT image FROM faxes WHERE image IS NOT NULL")}
        removed = 0
        for p in self.incoming_dir.iterdir():
            if p.name.endswith(".tif") and p.name[:-4] in receiving:
                continue
            p.unlink(missing_ok=True)
            removed += 1
        for p in self.faxes_dir.iterdir():
            if str(p.relative_to(self.root)) not in kept:
                log.warning("removing %s: no fax record points at it", p)
                p.unlink(missing_ok=True)
                removed += 1
        if self.calls_dir.is_dir():
            uids = {r[0] for r in self._query("SELECT uid FROM faxes")}
            for p in self.calls_dir.iterdir():
                if p.name.split(".", 1)[0] not in uids or p.name.endswith(".tmp"):
                    p.unlink(missing_ok=True)
                    removed += 1
        return removed

    def status(self) -> SpoolStatus:
        """The delivery queue as the spool holds it: jobs per state (every state, zero when none)
        and when the oldest job still waiting (queued or retrying) was created."""
        counts = dict.fromkeys(JOB_STATES, 0)
        with self._lock:
            for state, n in self._db.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
                counts[state] = int(n)
            oldest = self._db.execute(
                "SELECT min(created) FROM jobs WHERE state IN ('queued', 'failed_retrying')"
            ).fetchone()[0]
        return SpoolStatus(queue=counts, oldest_waiting=oldest)


class SpoolStatus(TypedDict):
    queue: dict[str, int]
    oldest_waiting: float | None


#: how many refused pages the result text names one by one; the record lists them all
_REFUSALS_NAMED = 3


def refusal_text(scan: PageScan) -> str:
    """What the record's result says about pages refused for their size (empty when none were)."""
    if not scan.refused:
        return ""
    named = "; ".join(r.reason for r in scan.refused[:_REFUSALS_NAMED])
    more = len(scan.refused) - _REFUSALS_NAMED
    tail = f"; and {more} more" if more > 0 else ""
    if scan.readable == 1:
        return f"refused, not delivered: {named}"
    return f"{len(scan.refused)} of {scan.readable} pages refused, not delivered: {named}{tail}"


def _fact_columns(facts: dict[str, Any]) -> dict[str, Any]:
    unknown = set(facts) - set(FACT_FIELDS)
    if unknown:
        raise TypeError(f"not fax facts: {', '.join(sorted(unknown))}")
    cols: dict[str, Any] = {}
    for k, v in facts.items():
        if k == "extra":
            cols[k] = json.dumps(v or {})
        elif k == "ecm":
            cols[k] = int(bool(v))
        else:
            cols[k] = v
    return cols


def _filters(q: FaxQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if q.state:
        clauses.append("state=?")
        params.append(q.state)
    if q.since is not None:
        clauses.append("created >= ?")
        params.append(float(q.since))
    if q.until is not None:
        clauses.append("created < ?")
        params.append(float(q.until))
    for text, columns in (
        (q.caller, ("caller_number", "caller_name")),
        (q.called, ("called_number",)),
        (q.tsi, ("remote_ident",)),
    ):
        if text:
            clause, more = _contains(columns, text)
            clauses.append(clause)
            params += more
    if q.recipient:
        clause, more = _contains(("recipient",), q.recipient)
        clauses.append(f"id IN (SELECT fax_id FROM jobs WHERE {clause})")
        params += more
    if q.search:
        fax_clause, fax_params = _contains(_SEARCHED, q.search)
        job_clause, job_params = _contains(("recipient",), q.search)
        clauses.append(f"({fax_clause} OR id IN (SELECT fax_id FROM jobs WHERE {job_clause}))")
        params += fax_params + job_params
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


#: the fax columns free-text search looks in (with the jobs' recipients)
_SEARCHED = ("caller_number", "caller_name", "called_number", "remote_ident")


def _contains(columns: tuple[str, ...], needle: str) -> tuple[str, list[Any]]:
    """SQL for "any of `columns` contains `needle`, ignoring case".

    An ASCII needle uses LIKE (SQLite folds ASCII case itself, in C: a scan of 100,000 faxes
    takes a third of the time of a Python function per row); any other needle goes through
    fb_fold (str.casefold), so "ärzte" finds "Ärzte".  The one thing LIKE misses is an ASCII
    needle that only casefolding produces ("strasse" in "Straße").
    """
    if needle.isascii():
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", needle) + "%"
        return ("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns) + ")", [pattern] * len(columns))
    expr = " || ' ' || ".join(columns) if len(columns) > 1 else columns[0]
    return f"instr(fb_fold({expr}), ?)", [needle.casefold()]


def _and(where: str, clause: str) -> str:
    return f"{where} AND {clause}" if where else f"WHERE {clause}"


def _fold(text: str | None) -> str:
    return (text or "").casefold()


def _fax_from_row(row: sqlite3.Row) -> FaxRecord:
    d = {k: row[k] for k in _FAX_COLUMNS}
    d["complete"] = bool(d["complete"])
    d["ecm"] = bool(d["ecm"])
    d["extra"] = json.loads(d["extra"] or "{}")
    return FaxRecord(**d)


def _job_from_row(row: sqlite3.Row) -> Job:
    return Job(**{k: row[k] for k in _JOB_COLUMNS})
