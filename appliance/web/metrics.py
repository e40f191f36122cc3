"""Prometheus metrics at /metrics (text exposition format 0.0.4, written by hand: no dependency).

Counters come from the spool, so they survive restarts of either process; the daemon's reachability
and the disk are gauges.  The scrape needs the same login as every page (a session cookie).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Blueprint, Response, current_app

from appliance.config import Config
from appliance.spool import stats as spool_stats
from appliance.spool.store import JOB_STATES
from appliance.web import daemonlink, health
from appliance.web.spoolview import get_spool

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUANTILES = (0.5, 0.9, 0.99)
#: the all-time counters scan the faxes table (~0.1 s at 100,000 faxes on a PC, more on a Pi):
#: scrapes closer together than this share one scan
TOTALS_TTL = 10.0
_cache: dict[str, tuple[float, tuple[spool_stats.Day, dict[str, int]]]] = {}
#: the daemon's media counters (appliance/media/totals.py) since it started, calls in progress
#: included: (metric, key in the status's "media", help)
MEDIA_COUNTERS = (
    ("faxbridge_rtp_sent_packets_total", "sent", "RTP packets sent to callers"),
    (
        "faxbridge_rtp_late_packets_total",
        "late_5ms",
        "RTP packets sent more than 5 ms late, or never (the media clock skipped them after a stall)",
    ),
    (
        "faxbridge_rtp_unsent_packets_total",
        "not_sent",
        "RTP packets never sent: the media clock skipped their ticks after a stall of 200 ms or more",
    ),
    ("faxbridge_media_clock_skipped_ticks_total", "clock_skipped", "20 ms ticks the media clock skipped after stalls"),
    ("faxbridge_rtp_received_packets_total", "rx_received", "RTP packets received in time to be played"),
    ("faxbridge_rtp_received_late_packets_total", "rx_late", "RTP packets received too late to be played"),
    ("faxbridge_rtp_overflow_packets_total", "rx_overflow", "RTP packets dropped: the playout buffer was full"),
    ("faxbridge_rtp_fillin_samples_total", "rx_fillin", "Samples of received audio missing at playout (fill-in)"),
    (
        "faxbridge_rtp_playout_slips_total",
        "rx_slips",
        "Late audio played after all, the playout delay growing (decision 0012)",
    ),
)
_cache_lock = threading.Lock()


def _totals(spool: Any) -> tuple[spool_stats.Day, dict[str, int]]:
    key = str(spool.root)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < TOTALS_TTL:
            return hit[1]
    value = (spool_stats.totals(spool), spool_stats.failure_causes(spool))
    with _cache_lock:
        _cache[key] = (now, value)
    return value


def escape_label(value: str) -> str:
    """A label value as the format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exposition:
    def __init__(self) -> None:
        self.out: list[str] = []

    def metric(self, name: str, kind: str, help_text: str) -> None:
        self.out.append(f"# HELP {name} {help_text}")
        self.out.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        lab = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
        self.out.append(f"{name}{{{lab}}} {_num(value)}" if lab else f"{name} {_num(value)}")

    def text(self) -> str:
        return "\n".join(self.out) + "\n"


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    f = float(v)
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if isinstance(v, int) or f.is_integer():
        return str(int(v))
    return repr(float(v))


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted ``values``."""
    if not values:
        return float("nan")
    idx = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[idx]


@bp.get("/metrics")
def metrics() -> Response:
    cfg: Config = current_app.config["FAXBRIDGE"]
    spool = get_spool()
    e = Exposition()
    total, causes = _totals(spool) if spool is not None else (spool_stats.Day(), {})
    queue = spool_stats.queue_counts(spool) if spool is not None else dict.fromkeys(JOB_STATES, 0)
    latencies = sorted(spool_stats.recent_latencies(spool)) if spool is not None else []
    status, _ = daemonlink.status()

    e.metric("faxbridge_up", "gauge", "1 when the daemon answers on its control socket")
    e.sample("faxbridge_up", 1 if status is not None else 0)
    e.metric("faxbridge_calls_total", "counter", "Calls answered and recorded in the spool (SIP and modem)")
    e.sample("faxbridge_calls_total", total.calls)
    e.metric("faxbridge_faxes_total", "counter", "Calls that brought at least one page")
    e.sample("faxbridge_faxes_total", total.faxes)
    e.metric("faxbridge_pages_total", "counter", "Pages received")
    e.sample("faxbridge_pages_total", total.pages)
    e.metric("faxbridge_call_failures_total", "counter", "Calls without a complete fax, by the T.30 result")
    for cause, n in sorted(causes.items()):
        e.sample("faxbridge_call_failures_total", n, cause=cause)
    e.metric("faxbridge_delivery_queue_jobs", "gauge", "Delivery jobs by state")
    for state in JOB_STATES:
        e.sample("faxbridge_delivery_queue_jobs", queue.get(state, 0), state=state)
    e.metric(
        "faxbridge_delivery_latency_seconds",
        "summary",
        f"Seconds from a fax's routing to its delivery, over the last {spool_stats.LATENCY_WINDOW} deliveries",
    )
    for q in QUANTILES:
        e.sample("faxbridge_delivery_latency_seconds", quantile(latencies, q), quantile=str(q))
    e.sample("faxbridge_delivery_latency_seconds_sum", round(sum(latencies), 3))
    e.sample("faxbridge_delivery_latency_seconds_count", len(latencies))
    disk = health.disk_usage(cfg.path(cfg.spool.dir))
    e.metric("faxbridge_disk_free_bytes", "gauge", "Free bytes on the spool's filesystem")
    e.sample("faxbridge_disk_free_bytes", disk.free if disk else 0)
    if status is not None:
        e.metric("faxbridge_calls_in_progress", "gauge", "Calls being received now")
        e.sample("faxbridge_calls_in_progress", len(status.get("calls", [])))
        e.metric("faxbridge_daemon_uptime_seconds", "gauge", "Seconds since the daemon started")
        e.sample("faxbridge_daemon_uptime_seconds", float(status.get("uptime", 0)))
        sip = status.get("sip") or {}
        e.metric(
            "faxbridge_sip_refused_total",
            "counter",
            "SIP messages and connections refused or dropped before the user agent, by reason "
            "(rate_limited, unknown_refused, max_calls, oversize, malformed, connections_unknown, ...)",
        )
        for reason, n in sorted((sip.get("refused") or {}).items()):
            e.sample("faxbridge_sip_refused_total", n, reason=reason)
        e.metric("faxbridge_sip_connections", "gauge", "Open SIP TCP/TLS connections")
        e.sample("faxbridge_sip_connections", int(sip.get("connections", 0)))
        stats = status.get("stats")
        if not isinstance(stats, dict):
            stats = {}
        e.metric(
            "faxbridge_um_referrals_ignored_total",
            "counter",
            "Exchange UM referrals ignored: the calling peer is not exchange_um (since the daemon started)",
        )
        e.sample("faxbridge_um_referrals_ignored_total", int(stats.get("um_referrals_ignored", 0) or 0))
        e.metric(
            "faxbridge_recipients_refused_total",
            "counter",
            "Recipients refused: outside routing.accepted_domains (since the daemon started)",
        )
        e.sample("faxbridge_recipients_refused_total", int(stats.get("recipients_refused", 0) or 0))
        media = status.get("media")
        if isinstance(media, dict):
            for name, key, help_text in MEDIA_COUNTERS:
                e.metric(name, "counter", help_text)
                e.sample(name, media.get(key, 0))
    return Response(e.text(), content_type=CONTENT_TYPE)
