"""The Flask application factory: blueprints, security headers, error pages, template filters.

Everything shown here comes from a fax or its caller (TSI, caller name, numbers, result text,
SMTP replies) and is untrusted: autoescaping is forced on for every template, and the headers
below forbid inline script, framing and content sniffing as a second line of defence.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from appliance.config import Config
from appliance.web import (
    api,
    auth,
    csrf,
    dashboard,
    faxes,
    metrics,
    openapi,
    outbound_api,
    pending,
    sendfax,
    settings,
    system,
    update,
    wizard,
)
from appliance.web.params import BadParam
from appliance.web.spoolview import close_spool
from appliance.web.zone import format_time

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no address of a fax page leaves the box
}

STATE_LABELS = {
    "receiving": "Receiving",
    "received": "Received",
    "no_fax": "No fax",
    "routed": "Routed",
    "delivering": "Delivering",
    "delivered": "Delivered",
    "failed_retrying": "Retrying",
    "dead": "Failed",
}


def create_app(config: Config) -> Flask:
    """Build the app for one configuration (tests build many, each on its own spool)."""
    app = Flask(__name__)
    app.config["FAXBRIDGE"] = config
    app.jinja_env.autoescape = True  # every template, whatever its file name
    app.jinja_env.globals["has_endpoint"] = lambda name: name in app.view_functions
    app.jinja_env.globals["restart_pending"] = pending.summary  # base.html's banner, when logged in
    # every time a page shows goes through ``when``: the owner's zone, named (appliance/localtime.py)
    app.jinja_env.filters.update(
        when=format_time, duration=fmt_duration, state_label=state_label, state_class=state_class, dash=dash
    )
    auth.init_app(
        app, config.path(config.web.state_dir), https=config.web.https, session_hours=config.web.session_hours
    )
    csrf.init_app(app)
    app.register_blueprint(dashboard.bp)  # "/" and /events
    app.register_blueprint(metrics.bp)  # /metrics
    app.register_blueprint(system.bp)  # /system
    update.init_app(app, system.render_index)  # /system/update: the Update card's upload and status
    app.register_blueprint(faxes.bp)
    sendfax.init_app(app)  # /send, /outbound: sending a fax through the daemon (issue 14)
    app.register_blueprint(api.bp, url_prefix="/api")
    outbound_api.init_app(app)  # /api/outbound: send a fax, the outgoing queue
    app.register_blueprint(openapi.bp, url_prefix="/api")  # /api/openapi.json, /api/docs
    app.register_blueprint(settings.bp)  # /settings/...
    app.register_blueprint(wizard.bp)  # /setup/... after the password (auth.setup is /setup)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.after_request(add_security_headers)
    app.teardown_appcontext(close_spool)
    app.register_error_handler(BadParam, bad_param)
    app.register_error_handler(HTTPException, http_error)
    return app


def healthz() -> Response:
    """Liveness for systemd/supervisor: the process answers; says nothing about the daemon."""
    return Response("ok", mimetype="text/plain")


def add_security_headers(response: Response) -> Response:
    """Headers on every response, errors and static files included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    # Faxes are confidential: nothing may sit in a shared cache unless a view says otherwise.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _wants_json() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def bad_param(e: BadParam) -> tuple[Response | str, int]:
    """400 naming the parameter, JSON for the API, a page for people."""
    if _wants_json():
        return jsonify(error=f"bad parameter {e.name!r}: {e.message}", parameter=e.name), 400
    return render_template(
        "error.html", code=400, title="Bad request", message=f"Parameter '{e.name}' {e.message}."
    ), 400


def http_error(e: HTTPException) -> tuple[Response | str, int]:
    """Errors as JSON under /api/, as a styled page elsewhere."""
    code = e.code or 500
    if _wants_json():
        return jsonify(error=e.description or e.name), code
    return render_template("error.html", code=code, title=e.name, message=e.description), code


def fmt_duration(seconds: float | None) -> str:
    """'1 min 05 s' style: call lengths are seconds to a few minutes."""
    if seconds is None:
        return ""
    s = round(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def dash(value: object) -> object:
    """An em dash for a fact the call did not report, so an empty cell never looks like a bug."""
    return "\u2014" if value is None or value == "" else value


def state_label(state: str) -> str:
    """Human wording of a spool state."""
    return STATE_LABELS.get(state, state)


def state_class(state: str) -> str:
    """CSS class for a state; only known states map, so data never chooses a class name."""
    return f"state-{state}" if state in STATE_LABELS else "state-unknown"
