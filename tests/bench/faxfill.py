"""A spool with many faxes, fast: rows inserted straight into the real schema in one transaction.

Receiving 100,000 faxes through ``Spool.begin_fax``/``finish_fax`` would take an hour of fsyncs;
the list page only reads rows, so this writes the rows the spool would have written (faxes one
minute apart, one job per routed fax, an attempt for each finished job), all pointing at a few
shared small TIFFs.  The schema comes from ``Spool`` itself, so its indexes are the real ones.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

from appliance.spool.store import Spool

#: 2026-01-01 00:00 UTC; fax i is received at T0 + 60 * i
T0 = 1_767_225_600.0
#: states in the mix a busy box shows: mostly delivered, a few retrying, failed or without fax
STATE_MIX = ("delivered",) * 16 + ("failed_retrying", "dead", "no_fax", "routed")
RECIPIENTS = [f"desk{n:02d}@example.com" for n in range(40)]


def state(i: int) -> str:
    return STATE_MIX[i % len(STATE_MIX)]


def caller_number(i: int) -> str:
    return f"+49{30 + i % 70}{i % 9973:06d}"


def tsi(i: int) -> str:
    return f"FAX {i % 5003:05d}"


def fill(root: Path, n: int, *, tiff: Path | None = None, now: float = T0) -> float:
    """Put `n` faxes into the spool at `root`; returns the seconds it took."""
    start = time.perf_counter()
    Spool(root).close()  # the real schema and indexes, and WAL mode
    images: list[str | None] = [None]
    if tiff is not None:
        images = []
        for k in range(4):
            name = f"faxes/shared-{k}.tif"
            shutil.copyfile(tiff, root / name)
            images.append(name)
    image = "printf('faxes/shared-%d.tif', i % 4)" if tiff is not None else "NULL"
    db = sqlite3.connect(root / "spool.db", isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        # Indexes are built once after the rows (much faster than row by row), then the real
        # schema's statements put them back: the list pages run on exactly the spool's indexes.
        indexes = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'"
                                             " AND sql IS NOT NULL")]
        db.execute("BEGIN")
        for name in indexes:
            db.execute(f"DROP INDEX {name}")
        # All in SQL (no Python per row): the same values as caller_number(), tsi(), RECIPIENTS.
        db.execute(f"""
            WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ? - 1)
            INSERT INTO faxes (id, uid, state, created, finished, complete, line, call_id,
                caller_number, caller_name, called_number, remote_ident, pages, bad_rows, bit_rate,
                ecm, resolution, duration, result_code, result_text, image, extra)
            SELECT i + 1, printf('%016x', i),
                CASE i % 20 WHEN 16 THEN 'failed_retrying' WHEN 17 THEN 'dead' WHEN 18 THEN 'no_fax'
                            WHEN 19 THEN 'routed' ELSE 'delivered' END,
                ? + 60.0 * i, ? + 60.0 * i + 45, 1, 'sip:gw1', printf('call-%d@gw', i),
                printf('+49%d%06d', 30 + i % 70, i % 9973), printf('Sender %d', i % 997),
                printf('+4930999%03d', i % 100), printf('FAX %05d', i % 5003),
                CASE WHEN i % 20 = 18 THEN 0 ELSE 1 END, 0, 14400, 1, '204x196', 45.0, 0, 'OK',
                CASE WHEN i % 20 = 18 THEN NULL ELSE {image} END,
                '{{"trace": ["> DIS", "< DCS", "< MPS", "> MCF"]}}'
            FROM seq""", (n, now, now))
        db.execute("""
            INSERT INTO jobs (fax_id, recipient, message_id, state, attempts, next_attempt,
                              last_error, delivered_at, created)
            SELECT id, printf('desk%02d@example.com', (id - 1) % 40), '<' || uid || '.1@faxbridge>',
                CASE state WHEN 'routed' THEN 'queued' ELSE state END,
                CASE state WHEN 'routed' THEN 0 ELSE 1 END, created + 300, '',
                CASE state WHEN 'delivered' THEN created + 50 END, created + 46
            FROM faxes WHERE state != 'no_fax' ORDER BY id""")
        db.execute("""
            INSERT INTO attempts (job_id, time, ok, reply)
            SELECT id, created + 4, state = 'delivered',
                CASE state WHEN 'delivered' THEN '250 2.6.0 Queued' ELSE '451 4.3.0 Try later' END
            FROM jobs WHERE state != 'queued' ORDER BY id""")
        db.execute("COMMIT")
    finally:
        db.close()
    Spool(root).close()  # the schema's CREATE INDEX statements
    db = sqlite3.connect(root / "spool.db", isolation_level=None)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return time.perf_counter() - start
