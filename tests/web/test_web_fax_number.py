"""One name for a fax: its number, on every page, in the downloads, the API and the log; the hex id
older versions showed (CLI, alert mails) still finds it, by a redirect to the numbered page."""

from __future__ import annotations

import logging
import re
import sqlite3

import pytest
from flask.testing import FlaskClient

from appliance.config import Config
from appliance.spool.store import Spool
from webauth import csrf
from webfax import STANDARD, T0, add_fax


def test_pages_downloads_api_and_log_name_the_fax_by_its_number(
        client: FlaskClient, spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    add_fax(spool, T0, dpis=[STANDARD])
    fax = add_fax(spool, T0 + 60, dpis=[STANDARD], recipients=["sales@localhost"])  # routing.default's domain
    spool.claim_due_jobs(T0 + 100)
    (job,) = spool.jobs_for(fax.id)
    spool.job_delivered(job.id, T0 + 101, "250 ok")

    detail = client.get(f"/faxes/{fax.id}").get_data(as_text=True)
    assert f"<h1>Fax {fax.id} " in detail
    # the hex id only inside the Message-ID (a mail header's value, not the fax's name)
    without_ids = re.sub(r"&lt;[0-9a-f]{16}\.[^&]*&gt;", "", detail)
    assert fax.uid not in without_ids
    listing = client.get("/faxes").get_data(as_text=True)
    assert f'href="/faxes/{fax.id}"' in listing and fax.uid not in listing
    tif = client.get(f"/faxes/{fax.id}.tif")
    assert re.fullmatch(rf"attachment; filename=fax-\d{{8}}-\d{{6}}-{fax.id}\.tif", tif.headers["Content-Disposition"])
    assert client.get(f"/api/faxes/{fax.id}").get_json()["id"] == fax.id

    with caplog.at_level(logging.INFO):
        r = client.post(f"/faxes/{fax.id}/resend", data={"to": "same", "csrf_token": csrf(client)})
    assert r.status_code == 302
    said = [rec.getMessage() for rec in caplog.records if "resent" in rec.getMessage()]
    assert said == [f"fax {fax.id} resent to 1 recipient(s)"]


def test_an_old_hex_id_redirects_to_the_numbered_page(client: FlaskClient, spool: Spool) -> None:
    add_fax(spool, T0, dpis=[STANDARD])
    fax = add_fax(spool, T0 + 60, dpis=[STANDARD])
    for old in (fax.uid, fax.uid.upper()):
        r = client.get(f"/faxes/{old}")
        assert r.status_code == 301 and r.headers["Location"] == f"/faxes/{fax.id}"
    assert client.get("/faxes/0123456789abcdef").status_code == 404  # nobody's id
    assert client.get("/faxes/not-a-hex-id-xyz").status_code == 404
    assert client.get("/faxes/99").status_code == 404


def test_an_old_id_made_of_digits_still_finds_its_fax(client: FlaskClient, spool: Spool, config: Config) -> None:
    """A random hex id can be all digits; it reaches the number's route, which must not answer 404."""
    fax = add_fax(spool, T0, dpis=[STANDARD])
    with sqlite3.connect(config.path(config.spool.dir) / "spool.db") as db:  # as chance made it
        db.execute("UPDATE faxes SET uid='0012345678901234' WHERE id=?", (fax.id,))
    r = client.get("/faxes/0012345678901234")
    assert r.status_code == 301 and r.headers["Location"] == f"/faxes/{fax.id}"
    assert client.get(f"/faxes/{fax.id}").status_code == 200
