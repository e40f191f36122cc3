"""Boot health's decisions stepped with a fixed clock, and its three checks asked of real parts:
a control server answering status, the web UI over HTTPS, a spool database."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.config import Config, SpoolConfig, SystemConfig, WebConfig
from appliance.spool.store import Spool
from appliance.update import checks
from appliance.update.health import Check, HealthWatch, plan
from appliance.update.slots import Slots
from appliance.update.status import Status

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))

NORMAL = Slots(booted="a", committed="a", tryboot=None)
TRIAL = Slots(booted="b", committed="a", tryboot="b")


def test_a_trial_is_watched_whatever_status_json_says() -> None:
    assert plan(TRIAL, Status()).kind == "watch"
    assert plan(TRIAL, Status(phase="failed")).kind == "watch"


def test_an_ordinary_boot_does_nothing_unless_an_update_was_under_way() -> None:
    for phase in ("idle", "committed", "rolled_back", "failed", "checking", "installing"):
        assert plan(NORMAL, Status(phase=phase, target_slot="b")).kind == "nothing", phase


def test_an_update_that_never_came_back_is_rolled_back_with_its_reason() -> None:
    p = plan(NORMAL, Status(phase="rebooting", target_slot="b"))
    assert p.kind == "rolled_back" and "did not start" in p.reason
    p = plan(NORMAL, Status(phase="trial", target_slot="b"))
    assert p.kind == "rolled_back" and "before it reported healthy" in p.reason


def test_a_commit_cut_before_it_was_recorded_is_recorded() -> None:
    committed_b = Slots(booted="b", committed="b", tryboot=None)
    assert plan(committed_b, Status(phase="trial", target_slot="b")).kind == "committed"


def test_the_watch_commits_on_the_first_all_good_and_gives_up_at_the_deadline() -> None:
    w = HealthWatch(started=100.0, timeout=300.0)
    down = [Check("fax service", False, "the fax service did not answer (x)"), Check("web page", True),
            Check("spool", False, "the spool could not be opened (y)")]
    assert w.observe(down, 100.0) is None
    assert w.waiting() == "waiting for: fax service, spool"
    assert w.observe(down, 399.9) is None
    v = w.observe(down, 400.0)
    assert v is not None and not v.healthy
    assert v.reason == ("after 300 s on trial: the fax service did not answer (x); the spool could not be opened (y)")
    w2 = HealthWatch(started=0.0, timeout=300.0)
    assert w2.observe(down, 10.0) is None
    v = w2.observe([Check("fax service", True), Check("web page", True), Check("spool", True)], 20.0)
    assert v is not None and v.healthy
    assert HealthWatch(0.0, 1.0).observe([], 5.0) == HealthWatch(0.0, 1.0).observe([], 5.0)
    assert not HealthWatch(0.0, 1.0).observe([], 5.0).healthy  # type: ignore[union-attr]


@pytest.fixture
def sockdir() -> Iterator[Path]:
    from tests.control.harness import short_dir

    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_the_daemon_check_asks_the_control_socket(tmp_path: Path, sockdir: Path) -> None:
    from tests.control.harness import SpoolAppliance, serve_appliance

    cfg = Config(spool=SpoolConfig(dir="spool"), system=SystemConfig(control_socket=str(sockdir / "fb.sock")),
                 base_dir=tmp_path)
    down = checks.daemon(cfg)
    assert not down.ok and "the fax service did not answer" in down.detail
    app = SpoolAppliance(cfg)
    try:
        with serve_appliance(cfg.path(cfg.system.control_socket), app):
            assert checks.daemon(cfg).ok
    finally:
        app.close()


def test_the_spool_check_opens_the_database_read_only(tmp_path: Path) -> None:
    cfg = Config(spool=SpoolConfig(dir="spool"), base_dir=tmp_path)
    missing = checks.spool(cfg)
    assert not missing.ok and "could not be opened" in missing.detail
    Spool(tmp_path / "spool").close()
    assert checks.spool(cfg).ok
    (tmp_path / "spool" / "spool.db").write_bytes(b"this is not a database" * 100)
    broken = checks.spool(cfg)
    assert not broken.ok


def test_the_web_check_asks_healthz_over_https(tmp_path: Path) -> None:
    from served import ServedUI

    with ServedUI(tmp_path, https=True).start() as ui:
        cfg = Config.load(ui.config, state_dir=tmp_path)
        assert checks.web(cfg).ok
    gone = checks.web(cfg)
    assert not gone.ok and "the web page did not answer" in gone.detail
    assert checks.web(Config(web=WebConfig(enabled=False), base_dir=tmp_path)).ok
