"""A fax sent over SIP (G.711) arrives as an email with its TIFF: real calls, real time.

Each test places real fax calls with spandsp on both ends over loopback SIP/RTP, so each takes
30-100 s; calls inside a test run concurrently and pytest-xdist runs tests side by side.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from appliance.fax.pages import FINE, STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages

from .conftest import assert_pages_equal, finish, send_fax, tiff_attachment

pytestmark = pytest.mark.slow


def _pages(tmp: Path, name: str, dpi: tuple[int, int], count: int = 3, seed: int = 1):
    pages = demo_pages(count, dpi, seed=seed)
    path = tmp / f"{name}.tif"
    write_fax_tiff(pages, path, dpi)
    return pages, path


@pytest.mark.xdist_group("calls-a")
def test_four_simultaneous_calls_codecs_ecm_resolutions_routing(tmp_path, smtp, appliance_factory):
    """Four calls at once, PCMU/PCMA x ECM on/off x fine/standard, each routed by its called number."""
    app = appliance_factory(smtp.port)
    app.start()
    cases = [
        # called, expected recipient, codec, ecm, dpi, transport
        ("5551000", "sales@example.test", "PCMU", True, FINE, "udp"),
        ("5551001", "support@example.test", "PCMA", True, STANDARD, "tcp"),
        ("5551002", "billing@example.test", "PCMU", False, STANDARD, "udp"),
        ("5559999", "faxes@example.test", "PCMA", False, FINE, "udp"),
    ]
    sent, procs = {}, []
    for i, (called, rcpt, codec, ecm, dpi, transport) in enumerate(cases):
        pages, path = _pages(tmp_path, f"doc{i}", dpi, seed=i + 1)
        sent[rcpt] = (pages, codec, ecm, dpi)
        args = ["--codec", codec, "--caller", f"55501{i:02d}"] + ([] if ecm else ["--no-ecm"])
        procs.append(send_fax(app.uri(called, transport), path, *args))
    for p in procs:
        rc, out = finish(p)
        assert rc == 0, out
    msgs = smtp.wait_for(4, timeout=60)
    assert sorted(m["To"] for m in msgs) == sorted(sent)
    for m in msgs:
        pages, codec, ecm, dpi = sent[m["To"]]
        assert m["Subject"].endswith("(3 pages)"), m["Subject"]
        assert m["X-FaxNumberOfPages"] == "3"
        assert_pages_equal(tiff_attachment(m), pages)
    # the spool recorded what the calls were (codec, ECM) — the fax facts, not just the mail
    db = sqlite3.connect(app.workdir / "spool" / "spool.db")
    rows = {r[0]: r[1:] for r in db.execute("SELECT called_number, ecm, resolution, state, pages FROM faxes")}
    for called, rcpt, codec, ecm, dpi, _ in cases:
        assert rows[called][0] == int(ecm), (called, rows[called])
        assert rows[called][1] == f"{dpi[0]}x{dpi[1]}"
        assert rows[called][2] == "delivered"
        assert rows[called][3] == 3


@pytest.mark.xdist_group("calls-b")
def test_caller_hangs_up_after_page_2_delivers_two_pages_marked_incomplete(tmp_path, smtp, appliance_factory):
    app = appliance_factory(smtp.port)
    app.start()
    pages, path = _pages(tmp_path, "doc", STANDARD)
    rc, out = finish(send_fax(app.uri("5551000"), path, "--hangup-after", "2"))
    assert "hung up after page 2" in out, out
    (msg,) = smtp.wait_for(1, timeout=60)
    assert "Incomplete" in msg["Subject"] and "2 pages" in msg["Subject"], msg["Subject"]
    assert msg["X-FaxNumberOfPages"] == "2"
    assert_pages_equal(tiff_attachment(msg), pages[:2])
    body = msg.get_body(("plain",)).get_content()
    assert "incomplete" in body.lower()


@pytest.mark.xdist_group("calls-c")
def test_smtp_down_when_fax_arrives_then_delivered_when_back(tmp_path, smtp, appliance_factory):
    smtp.stop()  # nothing listens on the port the appliance delivers to
    app = appliance_factory(smtp.port)
    app.start()
    pages, path = _pages(tmp_path, "doc", STANDARD, count=1)
    rc, out = finish(send_fax(app.uri("5551000"), path, "--codec", "PCMA"))
    assert rc == 0, out
    app.wait_log("retrying in", timeout=30)  # the delivery failed temporarily at least once
    time.sleep(2)
    assert smtp.handler.messages == []
    smtp.start()
    (msg,) = smtp.wait_for(1, timeout=30)
    assert_pages_equal(tiff_attachment(msg), pages)
    time.sleep(3)
    assert len(smtp.handler.messages) == 1, "delivered more than once"


@pytest.mark.xdist_group("calls-d")
def test_sigkill_after_receive_before_delivery_delivers_exactly_once(tmp_path, smtp, appliance_factory):
    smtp.handler.fail_with = "451 4.3.0 try again later"  # hold the fax in the queue
    app = appliance_factory(smtp.port, retry_initial=2.0)
    app.start()
    pages, path = _pages(tmp_path, "doc", FINE, count=1)
    rc, out = finish(send_fax(app.uri("5551001"), path))
    assert rc == 0, out
    app.wait_log("retrying in", timeout=30)
    app.kill()
    smtp.handler.fail_with = None
    app.start()  # same spool: recovery must requeue the job
    (msg,) = smtp.wait_for(1, timeout=40)
    assert msg["To"] == "support@example.test"
    assert_pages_equal(tiff_attachment(msg), pages)
    time.sleep(4)
    assert len(smtp.handler.messages) == 1, "delivered more than once after the restart"
