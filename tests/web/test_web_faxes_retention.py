"""Retention and the spool's schema migration: what the fax pages' writes stand on."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import types
from pathlib import Path

import pytest

from appliance.config import Config, SpoolConfig, SystemConfig
from appliance.daemon import Appliance
from appliance.spool import store
from appliance.spool.store import SCHEMA_VERSION, Spool
from webfax import STANDARD, T0, add_fax

from tests.budgets import async_wait_until

DAY = 86400.0


def aged_mix(spool: Spool) -> dict[str, int]:
    """Old faxes in every final and non-final state, plus one new fax; name -> fax id."""
    ids: dict[str, int] = {}
    for name in ("delivered", "dead", "queued", "delivering", "retrying"):
        ids[name] = add_fax(spool, T0, dpis=[STANDARD], recipients=[f"{name}@example.com"]).id
    ids["no_fax"] = add_fax(spool, T0 + 1, caller_number="+1").id
    ids["unrouted"] = add_fax(spool, T0 + 2, dpis=[STANDARD]).id  # received, no jobs (yet)
    ids["receiving"] = spool.begin_fax(T0 + 3, caller_number="+2").id
    ids["new"] = add_fax(spool, T0 + 40 * DAY, dpis=[STANDARD], recipients=["new@example.com"]).id
    jobs = {j.recipient.split("@")[0]: j for fid in ids.values() for j in spool.jobs_for(fid)}
    spool.claim_due_jobs(T0 + 100, limit=100)
    spool.job_delivered(jobs["delivered"].id, T0 + 101, "250 OK")
    spool.job_dead(jobs["dead"].id, T0 + 102, "550 no")
    spool.job_retry(jobs["retrying"].id, T0 + 103, "451 later", T0 + 50 * DAY)
    spool.claim_due_jobs(T0 + 41 * DAY, limit=100)  # only "new" is due and unclaimed
    spool.job_delivered(jobs["new"].id, T0 + 41 * DAY, "250 OK")
    spool.release_jobs([jobs["queued"].id])  # back to queued; "delivering" stays claimed
    return ids


def test_purge_deletes_only_old_final_faxes(spool: Spool) -> None:
    ids = aged_mix(spool)
    images = {k: spool.image_path(spool.get_fax(v)) for k, v in ids.items()}  # type: ignore[arg-type]
    assert spool.purge_older_than(T0 + 30 * DAY) == 3
    gone = {k for k, v in ids.items() if spool.get_fax(v) is None}
    assert gone == {"delivered", "dead", "no_fax"}
    for name in ("queued", "delivering", "retrying", "receiving", "unrouted", "new"):
        assert spool.get_fax(ids[name]) is not None, name
    for name in ("delivered", "dead"):
        assert not images[name].exists(), name  # type: ignore[union-attr]
    for name in ("queued", "delivering", "retrying", "unrouted", "new"):
        assert images[name].is_file(), name  # type: ignore[union-attr]
    assert spool.purge_older_than(T0 + 30 * DAY) == 0  # nothing more, and idempotent
    left = {r[0] for r in spool._query("SELECT fax_id FROM jobs")}
    assert left == {ids[n] for n in ("queued", "delivering", "retrying", "new")}
    orphans = spool._query("SELECT count(*) FROM attempts WHERE job_id NOT IN (SELECT id FROM jobs)")
    assert orphans[0][0] == 0


def test_purge_works_in_batches(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "PURGE_BATCH", 2)
    made = [add_fax(spool, T0 + i, dpis=[STANDARD], recipients=["a@example.com"]) for i in range(5)]
    for job in spool.claim_due_jobs(T0 + DAY, limit=100):
        spool.job_dead(job.id, T0 + 10, "550 no")
    assert spool.purge_older_than(T0 + 3) == 3
    assert [f.id for f in spool.list_faxes()] == [made[4].id, made[3].id]


def test_daemon_purges_with_the_configured_retention(tmp_path: Path) -> None:
    """The daemon's hourly task, on a real spool and configuration (the first run is at start)."""
    config = Config(spool=SpoolConfig(dir="spool"), system=SystemConfig(retention_days=30), base_dir=tmp_path)
    spool = Spool(config.path(config.spool.dir))
    now = time.time()
    old = add_fax(spool, now - 31 * DAY, caller_number="+1")  # no fax: final
    young = add_fax(spool, now - 29 * DAY, caller_number="+2")
    box = types.SimpleNamespace(cfg=config, spool=spool)

    async def run() -> None:
        task = asyncio.create_task(Appliance._purge_old_faxes(box))  # type: ignore[arg-type]
        try:
            await async_wait_until(lambda: spool.get_fax(old.id) is None, "the old fax purged")
        finally:
            task.cancel()

    asyncio.run(run())
    assert spool.get_fax(old.id) is None and spool.get_fax(young.id) is not None
    spool.close()


def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    config = Config(spool=SpoolConfig(dir="spool"), base_dir=tmp_path)
    assert config.system.retention_days == 0
    spool = Spool(config.path(config.spool.dir))
    old = add_fax(spool, 1_000_000.0, caller_number="+1")
    box = types.SimpleNamespace(cfg=config, spool=spool)

    async def run() -> None:
        task = asyncio.create_task(Appliance._purge_old_faxes(box))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(run())
    assert spool.get_fax(old.id) is not None
    spool.close()


def _indexes(db: Path) -> set[str]:
    with sqlite3.connect(db) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='faxes'"
                                        " AND name NOT LIKE 'sqlite_%'")}


def test_version_1_database_is_migrated_keeping_its_faxes(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    with Spool(root) as spool:
        fax = add_fax(spool, T0, dpis=[STANDARD], recipients=["a@example.com"], caller_number="+4930")
    db = root / "spool.db"
    with sqlite3.connect(db) as c:  # make it what version 1 wrote
        c.execute("DROP INDEX faxes_created_id")
        c.execute("DROP INDEX faxes_state_created_id")
        c.execute("CREATE INDEX faxes_created ON faxes(created)")
        c.execute("CREATE INDEX faxes_state_created ON faxes(state, created)")
        c.execute("PRAGMA user_version=1")
    assert "faxes_created_id" not in _indexes(db)
    with Spool(root, readonly=True) as ro:  # the web process never migrates, and still reads it
        assert [f.id for f in ro.list_faxes()] == [fax.id]
    with Spool(root) as spool:
        assert spool._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
        assert [f.id for f in spool.list_faxes(before=(T0 + 1, 0))] == [fax.id]
        assert spool.jobs_for(fax.id)[0].recipient == "a@example.com"
    idx = _indexes(db)
    assert {"faxes_created_id", "faxes_state_created_id"} <= idx
    assert not {"faxes_created", "faxes_state_created"} & idx
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_newer_database_keeps_its_version(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    Spool(root).close()
    with sqlite3.connect(root / "spool.db") as c:
        c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with Spool(root) as spool:
        assert spool._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION + 1
