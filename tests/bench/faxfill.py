"""A spool with many faxes, fast: rows inserted straight into the real schema in one transaction.

Receiving 100,000 faxes through ``Spool.begin_fax``/``finish_fax`` would take an hour of fsyncs;
the list page only reads rows, so this writes the rows the spool would have written (faxes one
minute apart, one job per routed fax, an attempt for each finished job), all pointing at a few
shared small TIFFs.  The schema comes from ``Spool`` itself, so its indexes are the real ones.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

from appliance.spool.store import Spool

#: 2026-01-01 00:00 UTC; fax i is received at T0 + 60 * i
T0 = 1_767_225_600.0
#: states in the mix a busy box shows: mostly delivered, a few retrying, failed or without fax
STATE_MIX = ("delivered",) * 16 + ("failed_retrying", "dead", "no_fax", "routed")
JOB_STATE = {"delivered": "delivered", "failed_retrying": "failed_retrying", "dead": "dead",
             "routed": "queued"}
RECIPIENTS = [f"desk{n:02d}@example.com" for n in range(40)]


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
    db = sqlite3.connect(root / "spool.db", isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        faxes, jobs, attempts = [], [], []
        for i in range(n):
            fid = i + 1
            state = STATE_MIX[i % len(STATE_MIX)]
            created = now + 60.0 * i
            image = None if state == "no_fax" else images[i % len(images)]
            faxes.append((fid, f"{i:016x}", state, created, created + 45, 1, "sip:gw1",
                          f"call-{i}@gw", caller_number(i), f"Sender {i % 997}",
                          f"+4930999{i % 100:03d}", tsi(i), 0 if image is None else 1,
                          0, 14400, 1, "204x196", 45.0, 0, "OK", image,
                          json.dumps({"trace": ["> DIS", "< DCS", "< MPS", "> MCF"]})))
            if state == "no_fax":
                continue
            jid = len(jobs) + 1
            jstate = JOB_STATE[state]
            rcpt = RECIPIENTS[i % len(RECIPIENTS)]
            jobs.append((jid, fid, rcpt, f"<{i:016x}.1@faxbridge>", jstate,
                         0 if jstate == "queued" else 1, created + 300, "",
                         created + 50 if jstate == "delivered" else None, created + 46))
            if jstate != "queued":
                attempts.append((jid, created + 50, int(jstate == "delivered"),
                                 "250 2.6.0 Queued" if jstate == "delivered" else "451 4.3.0 Try later"))
        db.executemany("INSERT INTO faxes (id, uid, state, created, finished, complete, line, call_id,"
                       " caller_number, caller_name, called_number, remote_ident, pages, bad_rows,"
                       " bit_rate, ecm, resolution, duration, result_code, result_text, image, extra)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", faxes)
        db.executemany("INSERT INTO jobs (id, fax_id, recipient, message_id, state, attempts,"
                       " next_attempt, last_error, delivered_at, created)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", jobs)
        db.executemany("INSERT INTO attempts (job_id, time, ok, reply) VALUES (?, ?, ?, ?)", attempts)
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return time.perf_counter() - start
