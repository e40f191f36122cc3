"""Spool access for one request (read-only; writable only for resend and delete), and the JSON shape of a fax.

The spool is opened per request (SQLite connections are per thread, and the database may
appear after the web process started, when the daemon first runs).  A missing database means
"no faxes yet", not an error.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import abort, current_app, g

from appliance.spool.store import FaxRecord, Job, Spool

log = logging.getLogger("faxbridge.web")


def spool_root() -> Path:
    """The spool directory of the app's configuration."""
    config = current_app.config["FAXBRIDGE"]
    return config.path(config.spool.dir)


def get_spool() -> Spool | None:
    """This request's read-only spool, or None while the daemon has never created one."""
    if "spool" not in g:
        g.spool = _open(spool_root())
    return g.spool


@contextmanager
def writable_spool() -> Iterator[Spool]:
    """A writable spool for one state-changing request (resend, delete), closed right after.

    Pages keep the read-only one; only these few requests write, through the spool's own
    methods, beside the daemon (SQLite WAL, ``busy_timeout`` 5 s in Spool: a daemon commit in
    progress is waited out, not an error).  404 while the daemon has never made a spool.
    """
    root = spool_root()
    if not (root / "spool.db").exists():
        abort(404, "There are no faxes yet.")
    spool = Spool(root)
    try:
        yield spool
    finally:
        spool.close()


def close_spool(_exc: BaseException | None = None) -> None:
    """Teardown hook: release the request's database connection."""
    spool = g.pop("spool", None)
    close = getattr(spool, "close", None)
    if close is not None:
        close()


def _open(root: Path) -> Spool | None:
    if not root.is_dir():
        return None
    try:
        return Spool(root, readonly=True)
    except (FileNotFoundError, sqlite3.OperationalError) as e:
        log.info("spool at %s not readable yet: %s", root, e)
        return None


def job_summary(job: Job) -> dict[str, Any]:
    """The part of a delivery job the fax list and API show."""
    return {"recipient": job.recipient, "state": job.state, "attempts": job.attempts, "last_error": job.last_error}


def fax_dict(fax: FaxRecord, jobs: list[Job]) -> dict[str, Any]:
    """A fax as JSON: every record field plus its jobs."""
    out = dataclasses.asdict(fax)
    out["jobs"] = [job_summary(j) for j in jobs]
    return out
