"""The home page: lines, calls in progress (live, server-sent events), today's faxes, the
delivery queue, disk space and alerts.  It renders with the daemon down, and says so."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from appliance.config import Config
from appliance.control import ControlClient, ControlError
from appliance.web import daemonlink, health
from appliance.web.faxes import FILTERS
from appliance.web.spoolview import get_spool
from appliance.web.zone import current_zone

bp = Blueprint("dashboard", __name__)

#: the fax list's parameters: an old bookmark of "/?q=..." (the list's first home) still reaches it
LIST_PARAMS = set(FILTERS) | {"page", "before", "after", "deleted"}
#: one stream lasts this long, then the browser's EventSource reconnects by itself: a tab left
#: open never holds a server thread for ever
STREAM_SECONDS = 300.0
INTERVAL = 1.0
#: streams at once; more get 503 (the page still works, only without live updates)
MAX_STREAMS = 4


@bp.get("/")
def index() -> ResponseReturnValue:
    """The dashboard (or the fax list, for a bookmark that carries the list's query)."""
    if LIST_PARAMS & set(request.args):
        qs = request.query_string.decode("ascii", "replace")
        return redirect(f"{url_for('faxes.index')}?{qs}")
    cfg: Config = current_app.config["FAXBRIDGE"]
    status, why = daemonlink.status()
    s = health.summary(cfg, get_spool(), status, why, current_zone())
    return render_template(
        "dashboard.html", s=s, human_bytes=health.human_bytes, now=time.time(), setup_done=_setup_done()
    )


@bp.get("/events")
def events() -> Response:
    """`event: status` with the live part of the dashboard as JSON, every second."""
    cfg: Config = current_app.config["FAXBRIDGE"]
    streams: threading.BoundedSemaphore = current_app.extensions.setdefault(
        "faxbridge_streams", threading.BoundedSemaphore(MAX_STREAMS)
    )
    if not streams.acquire(blocking=False):
        return Response("retry: 10000\n\n", status=503, mimetype="text/event-stream")
    seconds = float(current_app.config.get("FAXBRIDGE_STREAM_SECONDS", STREAM_SECONDS))
    interval = float(current_app.config.get("FAXBRIDGE_STREAM_INTERVAL", INTERVAL))
    client = ControlClient(daemonlink.socket_path(cfg), daemonlink.STATUS_TIMEOUT)
    tz = current_zone()  # the stream runs outside the request: one zone for its five minutes

    def stream() -> Iterator[str]:
        try:
            yield "retry: 2000\n\n"
            end = time.monotonic() + seconds
            while True:
                try:
                    reply = client.request({"cmd": "status"})
                    status, why = (reply, "") if reply.get("ok") else (None, str(reply.get("error")))
                except ControlError as e:
                    status, why = None, str(e)
                yield f"event: status\ndata: {json.dumps(health.live(cfg, status, why, tz))}\n\n"
                if time.monotonic() + interval > end:
                    return
                time.sleep(interval)
        finally:
            streams.release()

    resp = Response(stream(), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


def _setup_done() -> bool:
    """web.setup_done as the configuration file says now (the wizard writes it after start)."""
    import tomllib

    from appliance.config import config_file

    cfg = current_app.config["FAXBRIDGE"]
    try:
        data = tomllib.loads(config_file(cfg).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return cfg.web.setup_done
    web = data.get("web", {})
    return bool(web.get("setup_done", False)) if isinstance(web, dict) else False
