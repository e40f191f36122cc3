"""/metrics: Prometheus text format 0.0.4 from a real spool and a real control socket."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from webfax import STANDARD, add_fax

from appliance.config import Config, SpoolConfig, SystemConfig
from appliance.spool.store import Spool
from appliance.web.metrics import escape_label, quantile
from tests.control.harness import SpoolAppliance, serve_appliance

SAMPLE = re.compile(r'^([a-z_]+)(\{([a-z_]+="(?:[^"\\]|\\.)*")(,[a-z_]+="(?:[^"\\]|\\.)*")*\})? (\S+)$')


@pytest.fixture
def config(tmp_path: Path, sockdir: Path) -> Config:
    return Config(spool=SpoolConfig(dir="spool"), system=SystemConfig(control_socket=str(sockdir / "fb.sock")),
                  base_dir=tmp_path)


def parse(text: str) -> dict[str, float]:
    """Every sample line, checked against the format, keyed by name{labels}."""
    out: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "summary", "histogram"), line
            types[name] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        base = re.sub(r"_(sum|count)$", "", m.group(1))
        assert m.group(1) in types or base in types, f"sample before its TYPE: {line!r}"
        out[line.rsplit(" ", 1)[0]] = float(m.group(5))
    return out


def fill(spool: Spool) -> None:
    now = time.time()
    ok = add_fax(spool, now - 300, dpis=[STANDARD] * 3, recipients=["a@example.com", "b@example.com"],
                 result_code=0, result_text="OK")
    add_fax(spool, now - 200, complete=False, result_code=-1)           # no page at all
    add_fax(spool, now - 100, dpis=[STANDARD], complete=False, result_code=-1)  # one page, then hung up
    a, b = spool.jobs_for(ok.id)
    spool.claim_due_jobs(now)
    spool.job_delivered(a.id, a.created + 10, "250 ok")
    spool.job_delivered(b.id, b.created + 30, "250 ok")


def test_metrics_from_the_spool_with_the_daemon_up(client: FlaskClient, config: Config) -> None:
    app = SpoolAppliance(config)
    app.sip.refused_counts.update({"rate_limited": 7, "max_calls": 2})
    try:
        fill(app.spool)
        with serve_appliance(config.path(config.system.control_socket), app):
            r = client.get("/metrics")
    finally:
        app.close()
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    m = parse(r.get_data(as_text=True))
    assert m["faxbridge_up"] == 1
    assert m["faxbridge_calls_total"] == 3 and m["faxbridge_faxes_total"] == 2 and m["faxbridge_pages_total"] == 4
    assert m['faxbridge_call_failures_total{cause="call ended before the fax completed"}'] == 2
    assert m['faxbridge_delivery_queue_jobs{state="delivered"}'] == 2
    assert m['faxbridge_delivery_queue_jobs{state="dead"}'] == 0
    assert m["faxbridge_delivery_latency_seconds_count"] == 2
    assert m["faxbridge_delivery_latency_seconds_sum"] == pytest.approx(40)
    assert m['faxbridge_delivery_latency_seconds{quantile="0.99"}'] == pytest.approx(30)
    assert m["faxbridge_disk_free_bytes"] > 0
    assert m["faxbridge_calls_in_progress"] == 0
    assert m['faxbridge_sip_refused_total{reason="rate_limited"}'] == 7
    assert m['faxbridge_sip_refused_total{reason="max_calls"}'] == 2 and m["faxbridge_sip_connections"] == 0


def test_metrics_with_the_daemon_down_and_no_spool(client: FlaskClient) -> None:
    m = parse(client.get("/metrics").get_data(as_text=True))
    assert m["faxbridge_up"] == 0 and m["faxbridge_calls_total"] == 0
    assert "faxbridge_calls_in_progress" not in m


def test_metrics_need_the_login(anon_client: FlaskClient) -> None:
    r = anon_client.get("/metrics")
    assert r.status_code in (302, 401) and b"faxbridge_up" not in r.data


def test_label_escaping_and_quantiles() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) in (2.0, 3.0) and quantile([5.0], 0.99) == 5.0


def test_ignored_referrals_and_refused_recipients_reach_metrics(client: FlaskClient, config: Config) -> None:
    """The daemon's counters (its status' stats) as Prometheus counters: a LAN host trying to pick
    recipients shows up on the owner's dashboards."""
    app = SpoolAppliance(config)
    app.stats.update(um_referrals_ignored=3, recipients_refused=1)
    try:
        with serve_appliance(config.path(config.system.control_socket), app):
            text = client.get("/metrics").get_data(as_text=True)
    finally:
        app.close()
    m = parse(text)
    assert m["faxbridge_um_referrals_ignored_total"] == 3 and m["faxbridge_recipients_refused_total"] == 1
    assert "# TYPE faxbridge_um_referrals_ignored_total counter" in text


def stalled_channel() -> tuple[Any, Any]:
    """A real media channel on a real clock whose event loop was blocked for 300 ms mid-call."""
    import asyncio
    import socket

    from appliance.media.channel import MediaChannel
    from appliance.media.clock import PTIME, MediaClock

    class Silence:
        def receive_g711(self, payload: bytes) -> None: ...
        def receive_fillin(self, samples: int) -> None: ...
        def transmit_g711(self, samples: int = 160) -> bytes:
            return b"\xff" * samples

    clock = MediaClock()

    async def main() -> MediaChannel:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        ch = await MediaChannel.open_ephemeral("127.0.0.1")
        ch.use_audio(Silence(), 0, peer.getsockname())
        ch.start_clock(clock)
        await asyncio.sleep(5 * PTIME)
        time.sleep(15 * PTIME)  # the stall
        await asyncio.sleep(5 * PTIME)
        ch.close()
        peer.close()
        return ch

    return asyncio.run(main()), clock


def test_a_media_stall_shows_in_metrics_while_the_call_runs_and_after(client: FlaskClient, config: Config) -> None:
    """Finding 9 of issue 10: a stall the media clock skipped is counted, live and once."""
    from appliance.media.totals import MediaTotals

    channel, clock = stalled_channel()
    app = SpoolAppliance(config)
    app.media_totals, app.media_clock = MediaTotals(), clock  # type: ignore[attr-defined]
    try:
        app.add_call("stalled@test", mode="g711")
        app.calls["stalled@test"].channel = channel
        with serve_appliance(config.path(config.system.control_socket), app):
            live = parse(client.get("/metrics").get_data(as_text=True))
            app.media_totals.add(channel)  # the call ends, as the daemon does it
            del app.calls["stalled@test"]
            ended = parse(client.get("/metrics").get_data(as_text=True))
    finally:
        app.close()
    for m in (live, ended):
        assert m["faxbridge_media_clock_skipped_ticks_total"] >= 10
        assert m["faxbridge_rtp_unsent_packets_total"] == channel.stats["not_sent"] >= 10
        assert m["faxbridge_rtp_late_packets_total"] == channel.stats["late_5ms"] >= 10
        assert m["faxbridge_rtp_sent_packets_total"] == channel.stats["sent"] > 0
    assert live["faxbridge_calls_in_progress"] == 1 and ended["faxbridge_calls_in_progress"] == 0
