"""The system page: version, uptimes, the recent log, restart, and a diagnostics bundle for support.

The bundle is made in memory and never contains a secret: every key named like a password, client
secret or token is dropped from the configuration, and secrets.toml is never read for it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from importlib import metadata
from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from appliance import localtime
from appliance.config import Config
from appliance.control import version
from appliance.logfile import in_zone, log_path, tail
from appliance.startup import WEB_PARENT_ENV
from appliance.web import daemonlink, pending, update
from appliance.web.health import human_duration
from appliance.web.spoolview import get_spool, job_summary
from appliance.web.zone import current_zone

bp = Blueprint("system", __name__)

#: when this web process started (the module is imported once, at start)
WEB_STARTED = time.time()
LOG_LINES = 200
BUNDLE_LOG_LINES = 2000
BUNDLE_FAXES = 20
#: configuration keys never written into a bundle, whatever their section
SECRET_KEYS = {"password", "client_secret"}
SECRET_SUFFIXES = ("password", "secret", "token")


@bp.get("/system")
def index() -> str:
    return render_index()


def render_index(update_errors: list[str] | None = None) -> str:
    """The page, with the Update card's errors when an upload was refused."""
    cfg: Config = current_app.config["FAXBRIDGE"]
    status, why = daemonlink.status()
    tz = current_zone()
    return render_template(
        "system.html",
        version=version(),
        status=status,
        daemon_error=why,
        web_uptime=time.time() - WEB_STARTED,
        log_lines=[in_zone(line, tz) for line in tail(log_path(cfg), LOG_LINES)],
        log_file=str(log_path(cfg)),
        uptime=human_duration,
        zone=localtime.zone_name(tz),
        **update.card(update_errors),
    )


@bp.post("/system/restart")
def restart() -> ResponseReturnValue:
    """Restart what waits for it: the daemon (``faxbridge run`` re-executes itself, and its web
    child with it) unless only this web process waits; this web process when its own settings
    changed and no daemon restart brings it back (systemd runs the two apart)."""
    web_waits = bool(pending.web_items())
    daemon_asked = False
    if pending.daemon_items() or not web_waits:
        reply, why = daemonlink.ask({"cmd": "restart"})
        pending.note_daemon(None)
        if reply is None:
            flash(
                f"The fax service could not be restarted: it is not running or does not answer ({why}). "
                "The log on the System page may say why."
            )
        elif not reply.get("ok"):
            flash(f"The fax service refused to restart: {reply.get('error')}")
        else:
            daemon_asked = True
            flash("The appliance is restarting. This page will answer again in a few seconds.")
    restart_web = current_app.extensions.get("faxbridge_restart_web")
    if web_waits and restart_web is not None and not (daemon_asked and os.environ.get(WEB_PARENT_ENV)):
        restart_web()
        if not daemon_asked:
            flash("The web page restarts with its new settings. It will answer again in a few seconds.")
    return redirect(url_for("system.index"))


@bp.get("/system/diagnostics.tar.gz")
def diagnostics() -> Response:
    cfg: Config = current_app.config["FAXBRIDGE"]
    data = bundle(cfg)
    name = time.strftime("faxbridge-diagnostics-%Y%m%d-%H%M%S.tar.gz")
    return Response(
        data,
        mimetype="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


def scrub(value: Any) -> Any:
    """A copy of ``value`` without any key that names a secret (recursing into tables and arrays)."""
    if isinstance(value, dict):
        return {
            k: scrub(v) for k, v in value.items() if not (k in SECRET_KEYS or str(k).lower().endswith(SECRET_SUFFIXES))
        }
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def config_without_secrets(cfg: Config) -> dict[str, Any]:
    """The effective configuration (file, defaults and secrets merged), secrets removed."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.name in ("base_dir", "source"):
            continue
        out[f.name] = scrub(dataclasses.asdict(getattr(cfg, f.name)))
    return out


def versions() -> dict[str, Any]:
    try:
        spandsp = (
            subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", "libspandsp2"], capture_output=True, text=True, timeout=3
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        spandsp = "unknown"
    packages = sorted({(d.metadata["Name"] or "?", d.version) for d in metadata.distributions()})
    return {
        "faxbridge": version(),
        "python": sys.version,
        "platform": platform.platform(),
        "spandsp": spandsp,
        "packages": dict(packages),
    }


def recent_faxes(limit: int = BUNDLE_FAXES) -> list[dict[str, Any]]:
    """The last faxes' facts, T.30 result and trace (in extra), and their delivery jobs."""
    spool = get_spool()
    if spool is None:
        return []
    out = []
    for fax in spool.list_faxes(limit=limit):
        d = dataclasses.asdict(fax)
        d["jobs"] = [job_summary(j) for j in spool.jobs_for(fax.id)]
        out.append(d)
    return out


def bundle(cfg: Config) -> bytes:
    """The diagnostics .tar.gz, made in memory."""
    status, why = daemonlink.status()
    files = {
        "config.json": json.dumps(
            {"file": str(cfg.source) if getattr(cfg, "source", None) else None, "config": config_without_secrets(cfg)},
            indent=2,
            default=str,
        ),
        "log.txt": "\n".join(tail(log_path(cfg), BUNDLE_LOG_LINES, max_bytes=2 * 1024 * 1024)) + "\n",
        "status.json": json.dumps(
            status if status is not None else {"daemon": "not running", "error": why}, indent=2, default=str
        ),
        "faxes.json": json.dumps(recent_faxes(), indent=2, default=str),
        "versions.json": json.dumps(versions(), indent=2),
    }
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"faxbridge-diagnostics/{name}")
            info.size, info.mtime, info.mode = len(data), int(now), 0o600
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
