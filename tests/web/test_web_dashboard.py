"""The dashboard and its live updates, against a real control socket (a real ControlServer with the
appliance's commands over a real Spool, or the real daemon process) and a real spool."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from webfax import STANDARD, XSS, add_fax

from appliance.config import (Config, ConfigError, ModemConfig, SipConfig, SpoolConfig, SystemConfig,
                             config_file)
from appliance.sip.registration import RegistrationStatus
from appliance.spool.store import Spool
from appliance.web.app import create_app
from appliance.web.health import certificate_alerts
from tests.control.harness import DaemonProcess, SpoolAppliance, serve_appliance
from webauth import login


@pytest.fixture
def config(tmp_path: Path, sockdir: Path) -> Config:
    return Config(sip=SipConfig(listen=["udp:127.0.0.1:5999"]), spool=SpoolConfig(dir="spool"),
                  modem=ModemConfig(devices=["/dev/ttyNOSUCHMODEM"]),
                  system=SystemConfig(control_socket=str(sockdir / "fb.sock")), base_dir=tmp_path)


@pytest.fixture
def appliance(config: Config) -> Iterator[SpoolAppliance]:
    app = SpoolAppliance(config, registrations=[
        RegistrationStatus("pbx", "sip:fax@pbx.example", "registered", True, time.time() + 3000, ""),
        RegistrationStatus("backup", "sip:fax@backup.example", "failed", False, None, "403 Forbidden")])
    yield app
    app.close()


@pytest.fixture
def daemon(config: Config, appliance: SpoolAppliance) -> Iterator[SpoolAppliance]:
    with serve_appliance(config.path(config.system.control_socket), appliance):
        yield appliance


def events(client: FlaskClient, n: int) -> list[dict]:
    """The first ``n`` status events of one /events stream."""
    r = client.get("/events")
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    out: list[dict] = []
    buf = ""
    for chunk in r.response:  # type: ignore[attr-defined]
        buf += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            lines = block.splitlines()
            if "event: status" in lines:
                out.append(json.loads(next(l[6:] for l in lines if l.startswith("data: "))))
        if len(out) >= n:
            break
    r.close()
    return out


def test_dashboard_shows_lines_calls_queue_and_today(client: FlaskClient, daemon: SpoolAppliance) -> None:
    spool = daemon.spool
    add_fax(spool, time.time() - 60, dpis=[STANDARD] * 2, recipients=["a@example.com"])
    add_fax(spool, time.time() - 30, complete=False)  # no pages: a failure
    dead = add_fax(spool, time.time() - 20, dpis=[STANDARD], recipients=["gone@example.com"])
    (job,) = spool.jobs_for(dead.id)
    spool.claim_due_jobs(time.time() + 60)  # its job was added 31 s after the call began
    spool.job_dead(job.id, time.time(), "550 5.1.1 <gone@example.com>: Recipient address rejected")
    daemon.add_call("c1@gw", pages=1, caller_number="+4930111", caller_name=XSS, called_number="5551000",
                    line="sip:gw1")
    body = client.get("/").get_data(as_text=True)
    # lines: listener, both registrations with their states, the modem that is not there
    assert "udp:127.0.0.1:5999" in body and "listening" in body
    assert "pbx (sip:fax@pbx.example)" in body and "403 Forbidden" in body
    assert "SIP registration backup (sip:fax@backup.example) is failed" in body
    assert "Modem line modem:ttyNOSUCHMODEM" in body  # an alert: the line is down
    # the call in progress, its caller's name escaped
    assert "+4930111" in body and "5551000" in body and "T.38" in body and "page 2 (1 done)" in body
    assert XSS not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    # today, the queue and a dead letter
    assert '<dd id="today-faxes">2</dd>' in body and '<dd id="today-pages">3</dd>' in body
    assert '<dd id="today-failures">2</dd>' in body
    assert '<dd id="queue-queued">1</dd>' in body and '<dd id="queue-dead">1</dd>' in body
    assert "1 delivery failed for good" in body and "Recipient address rejected" in body
    assert 'id="daemon-down" class="dash-alert dash-alert-bad" hidden' in body
    assert "free of" in body
    assert '<script src="/static/live.js" defer></script>' in body and "<script>" not in body


def test_dashboard_without_daemon_says_so(client: FlaskClient, config: Config, spool: Spool) -> None:
    add_fax(spool, time.time(), dpis=[STANDARD], recipients=["a@example.com"])
    r = client.get("/")
    body = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "Daemon not running." in body and 'id="daemon-down" class="dash-alert dash-alert-bad">' in body
    assert "udp:127.0.0.1:5999" in body and "unknown" in body  # configured lines, state unknown
    assert '<dd id="today-faxes">1</dd>' in body


def test_events_stream_live_calls_and_lines(config: Config, daemon: SpoolAppliance) -> None:
    app = create_app(config)
    app.config.update(FAXBRIDGE_STREAM_INTERVAL=0.05, FAXBRIDGE_STREAM_SECONDS=5)
    client = app.test_client()
    login(client)
    first = events(client, 1)[0]
    assert first["daemon"] is True and first["calls"] == []
    daemon.add_call("c2@gw", mode="g711", caller_number="+4930222", caller_name=XSS, called_number="5551001",
                    line="sip:gw2")
    (ev,) = events(client, 1)
    (call,) = ev["calls"]
    assert call["caller"] == "+4930222" and call["caller_name"] == XSS  # raw text: live.js uses textContent
    assert call["mode"] == "G.711 PCMA" and call["page"] == "page 1" and call["rate"] == "14400 bit/s"
    states = {l["key"]: l["state"] for l in ev["lines"]}
    assert states["sip-reg-pbx"] == "registered" and states["modem-/dev/ttyNOSUCHMODEM"] == "down"


def test_events_say_when_the_daemon_goes_away(client: FlaskClient, config: Config) -> None:
    (ev,) = events(client, 1)
    assert ev["daemon"] is False and "not running" in ev["error"] and ev["calls"] == []


def test_events_stream_ends_and_streams_are_limited(config: Config) -> None:
    app = create_app(config)
    app.config.update(FAXBRIDGE_STREAM_INTERVAL=0.01, FAXBRIDGE_STREAM_SECONDS=0.05)
    client = app.test_client()
    login(client)
    r = client.get("/events")
    body = r.get_data(as_text=True)  # ends by itself
    assert body.startswith("retry: 2000") and body.count("event: status") >= 2
    open_streams = [client.get("/events") for _ in range(4)]
    for s in open_streams:
        next(iter(s.response))  # type: ignore[attr-defined]
    assert client.get("/events").status_code == 503
    for s in open_streams:
        s.close()
    assert client.get("/events").status_code == 200


def test_live_js_writes_text_only() -> None:
    js = (Path(__file__).parents[2] / "appliance" / "web" / "static" / "live.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "textContent" in js


def test_old_list_bookmarks_reach_the_fax_list(client: FlaskClient) -> None:
    r = client.get("/?q=abc&state=dead")
    assert r.status_code == 302 and r.headers["Location"] == "/faxes?q=abc&state=dead"


def test_dashboard_requires_login(anon_client: FlaskClient) -> None:
    for url in ("/", "/events"):
        r = anon_client.get(url)
        assert r.status_code in (302, 401) and "event: status" not in r.get_data(as_text=True)


def test_certificate_alerts(tmp_path: Path, config: Config) -> None:
    import trustme

    ca = trustme.CA()
    soon = ca.issue_cert("box.example", not_after=datetime.datetime.now(datetime.timezone.utc)
                         + datetime.timedelta(days=10))
    late = ca.issue_cert("box.example")
    soon.cert_chain_pems[0].write_to_path(str(tmp_path / "soon.pem"))
    late.cert_chain_pems[0].write_to_path(str(tmp_path / "late.pem"))
    (tmp_path / "web" / "tls").mkdir(parents=True)
    late.cert_chain_pems[0].write_to_path(str(tmp_path / "web" / "tls" / "cert.pem"))
    config.web.state_dir = "web"
    config.delivery.client_certificate = "soon.pem"
    config.sip.tls_cert = "missing.pem"
    texts = [a.text for a in certificate_alerts(config)]
    assert len(texts) == 2, texts
    assert any("delivery app certificate" in t and ("in 9 days" in t or "in 10 days" in t) for t in texts)
    assert any("SIP TLS certificate" in t and "cannot be read" in t for t in texts)


@pytest.mark.slow
def test_real_daemon_answers_status_and_its_live_call_reaches_the_page(tmp_path: Path) -> None:
    """The real appliance process: its status through the socket on the dashboard, and a test fax
    it sends to itself appears as a live call in /events while it runs."""
    d = DaemonProcess(tmp_path)
    d.start()
    try:
        cfg = Config.load(d.config)
        app = create_app(cfg)
        app.config.update(FAXBRIDGE_STREAM_INTERVAL=0.2, FAXBRIDGE_STREAM_SECONDS=40)
        client = app.test_client()
        login(client)
        body = client.get("/").get_data(as_text=True)
        assert f"udp:127.0.0.1:{d.sip_port}" in body and "listening" in body
        assert 'id="daemon-down" class="dash-alert dash-alert-bad" hidden' in body
        assert d.client().request({"cmd": "test-fax"})["ok"] is True
        r = client.get("/events")
        found = None
        buf = ""
        for chunk in r.response:  # type: ignore[attr-defined]
            buf += chunk.decode() if isinstance(chunk, bytes) else chunk
            for block in buf.split("\n\n")[:-1]:
                for line in block.splitlines():
                    if line.startswith("data: "):
                        calls = json.loads(line[6:])["calls"]
                        if calls and calls[0]["page"].startswith("page 1"):
                            found = calls[0]
            buf = buf.split("\n\n")[-1]
            if found:
                break
        r.close()
        assert found is not None
        assert found["caller"] == "test" and found["caller_name"] == "Faxbridge self-test"
        assert found["mode"].startswith("G.711") and found["called"] == "test"
    finally:
        d.stop()


def test_disk_below_ten_percent_is_an_alert(tmp_path: Path, config: Config) -> None:
    from appliance.web.health import Disk, disk_usage, summary

    real = disk_usage(tmp_path / "not" / "yet" / "there")  # the nearest existing parent's filesystem
    assert real is not None and real.total > 0 and 0 <= real.free <= real.total
    assert not Disk("/x", 1000, 100).low and Disk("/x", 1000, 99).low
    s = summary(config, None, None, "the daemon is not running")
    low = [a for a in s.alerts if "of the spool's disk is free" in a.text]
    assert bool(low) == (s.disk is not None and s.disk.low)
    assert [a.kind for a in s.alerts].count("daemon") == 1


def test_dashboard_points_to_the_unfinished_setup_until_the_wizard_is_done(client: FlaskClient, config: Config,
                                                                        spool: Spool) -> None:
    html = client.get("/").get_data(as_text=True)
    assert "The setup is not finished" in html and "/setup/system" in html
    path = config_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[web]\nsetup_done = true\n")
    assert "The setup is not finished" not in client.get("/").get_data(as_text=True)


def test_client_secret_expiry_entered_by_the_owner_is_warned_about() -> None:
    from appliance.web.health import secret_alerts

    app = {"backend": "graph", "tenant": "t.onmicrosoft.com", "client_id": "c", "client_secret": "s"}
    today = datetime.date(2027, 3, 1)
    soon = Config.from_dict({"delivery": {**app, "client_secret_expires": "2027-03-20"}})
    (alert,) = secret_alerts(soon, today)
    assert alert.level == "warn" and "2027-03-20" in alert.text and "in 19 days" in alert.text
    gone = Config.from_dict({"delivery": {**app, "client_secret_expires": "2027-02-01"}})
    assert secret_alerts(gone, today)[0].level == "bad"
    later = Config.from_dict({"delivery": {**app, "client_secret_expires": "2028-01-01"}})
    assert secret_alerts(later, today) == []
    with pytest.raises(ConfigError, match="client_secret_expires"):
        Config.from_dict({"delivery": {**app, "client_secret_expires": "next spring"}})
