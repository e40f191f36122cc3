"""Every time a page shows is in the owner's zone (``system.timezone``), with the zone named: the
dashboard, the fax list (and its date filter), the fax page, the System page and its log.  The
spool keeps UTC; a zone saved in the configuration file shows at once, without a restart."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from appliance.config import Config, SpoolConfig, SystemConfig, config_file
from appliance.logfile import log_path
from appliance.spool.store import Spool
from appliance.web.app import create_app
from webauth import login
from webfax import STANDARD, T0, add_fax

#: 2026-07-01 00:00 UTC: summer time in Berlin (CEST, UTC+2); T0 is winter (CET, UTC+1)
SUMMER = 1_782_864_000.0


def berlin(tmp_path: Path) -> Config:
    return Config(spool=SpoolConfig(dir="spool"), system=SystemConfig(timezone="Europe/Berlin"),
                  base_dir=tmp_path)


@pytest.fixture
def berlin_client(tmp_path: Path) -> FlaskClient:
    client = create_app(berlin(tmp_path)).test_client()
    login(client)
    return client


@pytest.fixture
def berlin_spool(tmp_path: Path):
    cfg = berlin(tmp_path)
    s = Spool(cfg.path(cfg.spool.dir))
    yield s
    s.close()


def page(client: FlaskClient, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code)
    return r.get_data(as_text=True)


def test_list_page_and_dashboard_show_berlin_time_named(berlin_client: FlaskClient, berlin_spool: Spool) -> None:
    winter = add_fax(berlin_spool, T0, dpis=[STANDARD], recipients=["sales@example.com"])
    summer = add_fax(berlin_spool, SUMMER, dpis=[STANDARD])

    listing = page(berlin_client, "/faxes")
    assert "2026-01-01 01:00:00 CET" in listing and "2026-07-01 02:00:00 CEST" in listing
    assert "2026-01-01 00:00:00" not in listing and "2026-07-01 00:00:00" not in listing  # not UTC

    detail = page(berlin_client, f"/faxes/{winter.id}")
    assert "Received 2026-01-01 01:00:00 CET" in detail
    assert "2026-01-01 01:00:30 CET" in detail  # finished, 30 s later
    assert "Received 2026-07-01 02:00:00 CEST" in page(berlin_client, f"/faxes/{summer.id}")

    dashboard = page(berlin_client, "/")
    oldest = re.search(r"<dt>Oldest waiting</dt><dd>([^<]*)</dd>", dashboard)
    assert oldest is not None and oldest.group(1) == "2026-01-01 01:00:31 CET"  # the job, queued at T0 + 31
    heading = re.search(r'<h1>Dashboard</h1>\s*<p class="muted">([^<]*)</p>', dashboard)
    assert heading is not None and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T", heading.group(1))


def test_the_date_filter_counts_days_in_the_same_zone(berlin_client: FlaskClient, berlin_spool: Spool) -> None:
    """00:30 on New Year's Day in Berlin is 23:30 UTC the day before: a list that shows it on
    1 January must find it when filtered to 1 January."""
    new_year = add_fax(berlin_spool, T0 - 1800, dpis=[STANDARD])  # 2026-01-01 00:30 CET
    late = add_fax(berlin_spool, T0 + 23.5 * 3600, dpis=[STANDARD])  # 2026-01-02 00:30 CET
    body = page(berlin_client, "/faxes?from=2026-01-01&to=2026-01-01")
    assert f'href="/faxes/{new_year.id}"' in body and "2026-01-01 00:30:00 CET" in body
    assert f'href="/faxes/{late.id}"' not in body


@pytest.fixture
def system_utc(monkeypatch: pytest.MonkeyPatch):
    """The process's own zone is UTC, as on the appliance image, whatever this machine's is."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_zone_saved_in_the_file_shows_without_a_restart(client: FlaskClient, spool: Spool,
                                                           config: Config, system_utc: None) -> None:
    """What the wizard does: it writes system.timezone into the file; the web process shows it at
    the next page, and again when it changes."""
    fax = add_fax(spool, T0, dpis=[STANDARD])
    assert "2026-01-01 00:00:00 UTC" in page(client, f"/faxes/{fax.id}")  # no zone set: the system's
    path = config_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[system]\ntimezone = "America/New_York"\n')
    assert "Received 2025-12-31 19:00:00 EST" in page(client, f"/faxes/{fax.id}")
    path.write_text('[system]\ntimezone = "Asia/Kolkata"\n')
    assert "Received 2026-01-01 05:30:00 IST" in page(client, f"/faxes/{fax.id}")
    path.write_text('[system]\ntimezone = "America/Sao_Paulo"\n')  # a zone with no letters for itself
    assert "Received 2025-12-31 21:00:00 UTC-03" in page(client, f"/faxes/{fax.id}")


def test_system_page_names_the_zone_and_shows_the_log_in_it(berlin_client: FlaskClient, tmp_path: Path) -> None:
    p = log_path(berlin(tmp_path))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("2026-01-01T00:00:05.123Z INFO faxbridge: fax 1 received\n"
                 "an old line without a stamp\n")
    body = page(berlin_client, "/system")
    assert '<dd id="time-zone">Europe/Berlin</dd>' in body
    assert "2026-01-01 01:00:05.123 CET INFO faxbridge: fax 1 received\n" in body
    assert "an old line without a stamp\n" in body
