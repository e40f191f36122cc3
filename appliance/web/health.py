"""What the dashboard, /events and /metrics say about the box: lines, calls, queue, disk, alerts.

The daemon's live status (control socket) and the spool (read-only SQLite) are combined here so
the server-rendered page and the live updates describe lines and calls the same way.  Values that
came from a caller (numbers, names, TSI) are returned as plain strings: templates autoescape them,
live.js writes them with textContent.
"""

from __future__ import annotations

import datetime
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import localtime
from appliance.config import Config
from appliance.spool import stats as spool_stats
from appliance.spool.store import DeadLetter, Spool

#: below this share of free space on the spool's filesystem the dashboard warns
DISK_WARN_FRACTION = 0.10
#: a certificate running out within this many days is an alert
CERT_WARN_DAYS = 30

#: line states that mean "works"; anything else (down, error, failed ...) is shown as a problem
GOOD_STATES = {
    "listening",
    "registered",
    "idle",
    "ringing",
    "receiving",
    "probing",
    "configured",
    "registering",
    "refreshing",
}


@dataclass
class Alert:
    level: str  # "bad" | "warn"
    text: str
    link: str = ""  # an endpoint-free URL path the alert points at, or ""
    kind: str = ""  # "daemon" for the one the page shows as its live banner


@dataclass
class Disk:
    path: str
    total: int
    free: int

    @property
    def fraction_free(self) -> float:
        return self.free / self.total if self.total else 0.0

    @property
    def low(self) -> bool:
        return self.fraction_free < DISK_WARN_FRACTION


@dataclass
class Summary:
    daemon_up: bool
    daemon_error: str
    status: dict[str, Any] | None
    lines: list[dict[str, str]]
    calls: list[dict[str, str]]
    today: spool_stats.Day
    queue: dict[str, int]
    oldest_waiting: float | None
    disk: Disk | None
    alerts: list[Alert] = field(default_factory=list)


def disk_usage(path: Path) -> Disk | None:
    """Space on the filesystem holding ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        du = shutil.disk_usage(p)
    except OSError:
        return None
    return Disk(str(path), du.total, du.free)


def lines(cfg: Config, status: dict[str, Any] | None, tz: localtime.Zone = None) -> list[dict[str, str]]:
    """Every line: SIP listeners, peers, registrations, modems, each with a state and a detail.

    Without the daemon the configured ones are listed with the state "unknown"."""
    out: list[dict[str, str]] = []
    if status is not None:
        sip = status.get("sip", {})
        for l in sip.get("listeners", []):
            out.append(
                _line(
                    f"sip-listen-{l['transport']}-{l['port']}",
                    "SIP listener",
                    f"{l['transport']}:{l['host']}:{l['port']}",
                    "listening",
                    "",
                )
            )
        for r in sip.get("registrations", []):
            until = r.get("expires_at")
            detail = r.get("last_error") or (f"until {_hm(until, tz)}" if until else "")
            out.append(_line(f"sip-reg-{r['name']}", "Registration", f"{r['name']} ({r['aor']})", r["state"], detail))
        for p in sip.get("peers", []):
            out.append(
                _line(
                    f"sip-peer-{p['name']}", "SIP peer", f"{p['name']} ({p['match']})", "configured", f"T.38 {p['t38']}"
                )
            )
        for m in (status.get("modems") or {}).get("lines", []):
            modem = m.get("modem") or {}
            name = " ".join(x for x in (modem.get("manufacturer"), modem.get("model")) if x)
            out.append(
                _line(
                    f"modem-{m['device']}",
                    "Modem",
                    m["line"] + (f" ({name})" if name else ""),
                    m["state"],
                    m.get("reason") or "",
                )
            )
        return out
    for l in cfg.sip.listeners():
        out.append(
            _line(
                f"sip-listen-{l.transport}-{l.port}",
                "SIP listener",
                f"{l.transport}:{l.host}:{l.port}",
                "unknown",
                "daemon not running",
            )
        )
    for r in cfg.sip.registrations:
        out.append(
            _line(f"sip-reg-{r.name}", "Registration", f"{r.name} ({r.registrar})", "unknown", "daemon not running")
        )
    for p in cfg.sip.peers:
        out.append(_line(f"sip-peer-{p.name}", "SIP peer", f"{p.name} ({p.match})", "configured", f"T.38 {p.t38}"))
    for d in cfg.modem.devices:
        out.append(_line(f"modem-{d}", "Modem", d, "unknown", "daemon not running"))
    return out


def _line(key: str, kind: str, name: str, state: str, detail: str) -> dict[str, str]:
    return {
        "key": key,
        "kind": kind,
        "name": name,
        "state": state,
        "detail": detail,
        "tone": "ok" if state in GOOD_STATES else ("unknown" if state == "unknown" else "bad"),
    }


def calls(status: dict[str, Any] | None, now: float | None = None, tz: localtime.Zone = None) -> list[dict[str, str]]:
    """Calls in progress as display strings (the same for the page and the live updates)."""
    now = time.time() if now is None else now
    out = []
    for c in (status or {}).get("calls", []):
        mode = {"t38": "T.38", "g711": "G.711", "modem": "Modem"}.get(c.get("mode", ""), c.get("mode", ""))
        if c.get("mode") == "g711" and c.get("codec"):
            mode += f" {c['codec']}"
        ecm = c.get("ecm")
        page = c.get("page")
        started = c.get("started")
        out.append(
            {
                "caller": c.get("caller_number") or "unknown",
                "caller_name": c.get("caller_name") or "",
                "called": c.get("called_number") or "\u2014",
                "line": c.get("line") or "\u2014",
                "mode": mode,
                "rate": f"{c['bit_rate']} bit/s" if c.get("bit_rate") else "\u2014",
                "ecm": "\u2014" if ecm is None else ("yes" if ecm else "no"),
                "page": (f"page {page}" if page else "connecting")
                + (f" ({c['pages']} done)" if c.get("pages") else ""),
                "tsi": c.get("remote_ident") or "",
                "since": (f"{_hm(started, tz)} ({_ago(now - started)})" if started else ""),
            }
        )
    return out


def human_duration(seconds: float) -> str:
    """Uptime in the two largest units: "3 d 4 h", "2 h 05 min", "5 min 03 s"."""
    s = max(0, int(seconds))
    d, h, m = s // 86400, s // 3600 % 24, s // 60 % 60
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m:02d} min"
    return f"{m} min {s % 60:02d} s" if m else f"{s} s"


def _hm(ts: float, tz: localtime.Zone) -> str:
    return localtime.format_time(ts, tz, localtime.CLOCK)


def _ago(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def cert_not_after(path: Path) -> datetime.datetime | None:
    """The first certificate's notAfter in a PEM file, or None when there is none readable."""
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        return x509.load_pem_x509_certificate(data).not_valid_after_utc
    except ValueError:
        return None


def certificates(cfg: Config) -> list[tuple[str, Path]]:
    """The certificates the box depends on: web HTTPS, SIP TLS, delivery's client certificates."""
    out: list[tuple[str, Path]] = []
    if cfg.web.cert_file:
        out.append(("web HTTPS certificate", cfg.path(cfg.web.cert_file)))
    else:
        uploaded = cfg.path(cfg.web.state_dir) / "tls" / "owner-cert.pem"
        generated = cfg.path(cfg.web.state_dir) / "tls" / "cert.pem"
        if uploaded.exists():
            out.append(("web HTTPS certificate (uploaded)", uploaded))
        elif generated.exists():
            out.append(("web HTTPS certificate", generated))
    if cfg.sip.tls_cert:
        out.append(("SIP TLS certificate (sip.tls_cert)", cfg.path(cfg.sip.tls_cert)))
    if cfg.delivery.client_certificate:
        out.append(
            ("delivery app certificate (delivery.client_certificate)", cfg.path(cfg.delivery.client_certificate))
        )
    if cfg.delivery.tls_client_cert:
        out.append(("delivery client certificate (delivery.tls_client_cert)", cfg.path(cfg.delivery.tls_client_cert)))
    return out


def certificate_alerts(cfg: Config, now: datetime.datetime | None = None) -> list[Alert]:
    now = now or datetime.datetime.now(datetime.UTC)
    alerts = []
    for label, path in certificates(cfg):
        until = cert_not_after(path)
        if until is None:
            alerts.append(Alert("bad", f"The {label} at {path} cannot be read."))
            continue
        days = (until - now).total_seconds() / 86400
        if days <= 0:
            alerts.append(Alert("bad", f"The {label} expired on {until:%Y-%m-%d}."))
        elif days <= CERT_WARN_DAYS:
            alerts.append(Alert("warn", f"The {label} expires on {until:%Y-%m-%d} (in {int(days)} days)."))
    return alerts


def secret_alerts(cfg: Config, today: datetime.date | None = None) -> list[Alert]:
    """The app registration's client secret: its expiry cannot be read from the secret itself, so
    the owner records the date Entra ID shows (delivery.client_secret_expires)."""
    if not (cfg.delivery.client_secret_expires and cfg.delivery.uses_oauth and not cfg.delivery.client_certificate):
        return []
    try:
        until = datetime.date.fromisoformat(cfg.delivery.client_secret_expires)
    except ValueError:
        return []
    days = (until - (today or localtime.at(time.time(), None).date())).days  # the system zone's day
    fix = "create a new secret in the app registration and enter it on the delivery settings page"
    if days < 0:
        return [Alert("bad", f"The delivery client secret expired on {until:%Y-%m-%d}: {fix}.", "/settings/delivery")]
    if days <= CERT_WARN_DAYS:
        return [
            Alert(
                "warn",
                f"The delivery client secret expires on {until:%Y-%m-%d} (in {days} days): {fix}.",
                "/settings/delivery",
            )
        ]
    return []


def summary(
    cfg: Config, spool: Spool | None, status: dict[str, Any] | None, daemon_error: str, tz: localtime.Zone = None
) -> Summary:
    """Everything the dashboard shows, from one status reply and a few bounded spool queries;
    times and "today" in ``tz`` (the owner's zone)."""
    today = spool_stats.Day()
    queue = dict.fromkeys(("queued", "delivering", "delivered", "failed_retrying", "dead"), 0)
    oldest: float | None = None
    dead: list[DeadLetter] = []
    if spool is not None:
        today = spool_stats.faxes_since(spool, localtime.start_of_today(time.time(), tz))
        queue = spool_stats.queue_counts(spool)
        oldest = spool_stats.oldest_waiting(spool)
        if queue.get("dead"):
            dead = spool_stats.dead_jobs(spool, limit=5)
    disk = disk_usage(cfg.path(cfg.spool.dir))
    s = Summary(
        daemon_up=status is not None,
        daemon_error=daemon_error,
        status=status,
        lines=lines(cfg, status, tz),
        calls=calls(status, tz=tz),
        today=today,
        queue=queue,
        oldest_waiting=oldest,
        disk=disk,
    )
    if status is None:
        s.alerts.append(
            Alert(
                "bad",
                f"The daemon is not running: no calls are answered and nothing is delivered. ({daemon_error})",
                kind="daemon",
            )
        )
    for line in s.lines:
        if line["kind"] == "Modem" and line["tone"] == "bad":
            s.alerts.append(Alert("bad", f"Modem line {line['name']} is {line['state']}: {line['detail']}"))
        elif line["kind"] == "Registration" and line["tone"] == "bad":
            s.alerts.append(Alert("bad", f"SIP registration {line['name']} is {line['state']}: {line['detail']}"))
    if queue.get("dead"):
        n = queue["dead"]
        latest = "; latest: " + ", ".join(f"{d.recipient} ({d.last_error[:80]})" for d in dead[:3]) if dead else ""
        s.alerts.append(
            Alert(
                "bad",
                f"{n} deliver{'y' if n == 1 else 'ies'} failed for good (dead letters){latest}.",
                "/faxes?state=dead",
            )
        )
    if disk is not None and disk.low:
        s.alerts.append(
            Alert(
                "warn",
                f"Only {disk.fraction_free:.0%} of the spool's disk is free "
                f"({human_bytes(disk.free)} of {human_bytes(disk.total)}).",
            )
        )
    s.alerts += certificate_alerts(cfg)
    s.alerts += secret_alerts(cfg)
    return s


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def live(cfg: Config, status: dict[str, Any] | None, daemon_error: str, tz: localtime.Zone = None) -> dict[str, Any]:
    """The payload of one `status` server-sent event: only display strings (live.js shows them as text)."""
    return {
        "daemon": status is not None,
        "error": "" if status is not None else daemon_error,
        "lines": lines(cfg, status, tz),
        "calls": calls(status, tz=tz),
        "queue": (status or {}).get("queue"),
        "uptime": (status or {}).get("uptime"),
    }
