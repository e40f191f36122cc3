"""Web fixtures: a real spool (the daemon's Spool class) filled with real G4 fax TIFFs.

The app under test opens the same directory read-only, as the web process does on the box.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

# The helpers module sits beside this file; make it importable under any pytest import mode
# (importlib mode, or __init__.py files added to tests/ later, would not put this folder on the path).
sys.path.insert(0, str(Path(__file__).parent))
from webfax import STANDARD, T0, add_fax  # noqa: E402
from webauth import login  # noqa: E402

from appliance.config import Config, SpoolConfig
from appliance.spool.store import FaxRecord, Spool
from appliance.web.app import create_app


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(spool=SpoolConfig(dir="spool"), base_dir=tmp_path)


@pytest.fixture
def spool(config: Config) -> Iterator[Spool]:
    """The daemon's side: a writable spool in the configured directory."""
    s = Spool(config.path(config.spool.dir))
    yield s
    s.close()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short directory for a control socket (a Unix socket path has at most 107 bytes)."""
    from tests.control.harness import short_dir

    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def anon_client(config: Config) -> FlaskClient:
    """A browser that has not logged in."""
    return create_app(config).test_client()


@pytest.fixture
def client(anon_client: FlaskClient) -> FlaskClient:
    """A browser logged in as the administrator (the password set through the real store)."""
    login(anon_client)
    return anon_client


@pytest.fixture
def admin_client(client: FlaskClient) -> FlaskClient:
    return client


@pytest.fixture
def full_fax(spool: Spool) -> FaxRecord:
    """A three-page standard-resolution fax with every call fact set and two delivery jobs."""
    fax = add_fax(spool, T0, dpis=[STANDARD] * 3, recipients=["sales@example.com", "ops@example.com"],
                  line="sip:gw1", call_id="a84b4c76e66710@gw1.example", caller_number="+4930123456",
                  caller_name="ACME Sales", called_number="+4930999100", remote_ident="+49 30 123456",
                  bit_rate=14400, ecm=True, resolution="204x98", bad_rows=3, duration=65.4,
                  result_code=0, result_text="OK")
    sales, ops = spool.jobs_for(fax.id)
    spool.claim_due_jobs(T0 + 40)
    spool.job_retry(sales.id, T0 + 41, "451 4.3.0 Mailbox temporarily unavailable", T0 + 100)
    spool.job_delivered(ops.id, T0 + 42, "250 2.6.0 <x@faxbridge> Queued mail for delivery")
    fresh = spool.get_fax(fax.id)
    assert fresh is not None and fresh.state == "failed_retrying"
    return fresh


@pytest.fixture
def box(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The test module's BOX_TOML written as the box's faxbridge.toml (the settings pages edit it)."""
    path = tmp_path / "faxbridge.toml"
    path.write_text(request.module.BOX_TOML)
    return path


@pytest.fixture
def web(box: Path) -> FlaskClient:
    """A logged-in client of the web app loaded from `box`, as `faxbridge web` loads it."""
    client = create_app(Config.load(box)).test_client()
    login(client)
    return client
