"""JSON API behind the pages: the same data and actions, for scripts and monitoring.

Same login as the pages (the session cookie); state-changing calls carry the session's CSRF
token in ``X-CSRF-Token``. Every route is described in ``openapi.py`` (a test keeps the two in
step). Values that came from a caller (TSI, names, numbers) are returned as they arrived: a
client that shows them must escape them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request

from appliance.routing.router import route
from appliance.web import daemonlink, faxes, health
from appliance.web.faxes import COUNT_CAP, list_query
from appliance.web.params import BadParam, email_param, int_param, text_param
from appliance.web.spoolview import fax_dict, get_spool, writable_spool
from appliance.web.zone import current_zone

log = logging.getLogger("faxbridge.web.api")

bp = Blueprint("api", __name__)

MAX_LIMIT = 500


@bp.get("/faxes")
def list_faxes() -> Response:
    """`{"total": N, "total_capped": bool, "faxes": [...]}`, newest first; the list page's filters
    (`q`, `state`, `from`, `to`, `caller`, `called`, `tsi`, `recipient`), `limit` (<= 500), `offset`."""
    limit = int_param(request.args, "limit", 50, 0, MAX_LIMIT)
    offset = int_param(request.args, "offset", 0, 0)
    query, _ = list_query()
    spool = get_spool()
    if spool is None:
        return jsonify(total=0, total_capped=False, faxes=[])
    total = spool.count_faxes(query=query, cap=COUNT_CAP)
    found = spool.list_faxes(query=query, limit=limit, offset=offset) if limit else []
    jobs = spool.jobs_for_faxes([f.id for f in found]) if found else {}
    return jsonify(total=total, total_capped=total >= COUNT_CAP, faxes=[fax_dict(f, jobs.get(f.id, [])) for f in found])


@bp.get("/faxes/<int:fax_id>")
def get_fax(fax_id: int) -> Response:
    """One fax with its jobs; 404 JSON when there is no such fax."""
    spool = get_spool()
    fax = spool.get_fax(fax_id) if spool is not None else None
    if spool is None or fax is None:
        abort(404, f"no fax {fax_id}")
    return jsonify(fax_dict(fax, spool.jobs_for(fax.id)))


@bp.post("/faxes/<int:fax_id>/resend")
def resend_fax(fax_id: int) -> tuple[Response, int]:
    """Queue the fax again as new messages: `{"to": "addr"}` for one address, or `{}` for its own
    mail recipients. 202 with the jobs queued; 409 when there is nothing to send."""
    body = request.get_json(silent=True)
    if body is not None and not isinstance(body, dict):
        raise BadParam("body", "must be a JSON object")
    body = body or {}
    spool = get_spool()
    fax = spool.get_fax(fax_id) if spool is not None else None
    if fax is None:
        abort(404, f"no fax {fax_id}")
    if fax.state in ("receiving", "no_fax"):
        return jsonify(error="this call brought no fax to send"), 409
    recipients = [email_param({"to": str(body["to"])}, "to")] if body.get("to") is not None else None
    jobs, left, refused_ = faxes.resend_fax(fax, recipients)
    refused = [{"recipient": r, "reason": why} for r, why in refused_]
    if refused and recipients is not None:
        return jsonify(error="not sent: " + "; ".join(why for _, why in refused_), refused=refused), 400
    if not jobs and not left and not refused:
        return jsonify(error='this fax has no recipients yet: give one as "to"'), 409
    queued = [{"recipient": j.recipient, "message_id": j.message_id} for j in jobs]
    skipped = [{"recipient": r, "reason": why} for r, why in left]
    if not queued:  # the Error shape too, so a client that only reads "error" learns why
        why = [w for _, w in refused_] + [f"{r}: {w}" for r, w in left]
        return jsonify(error="nothing queued: " + "; ".join(why), queued=[], skipped=skipped, refused=refused), 409
    return jsonify(queued=queued, skipped=skipped, refused=refused), 202


@bp.delete("/faxes/<int:fax_id>")
def delete_fax(fax_id: int) -> tuple[Response, int]:
    """Delete the fax (image, rendered pages, jobs, history); 409 while it is received or delivered."""
    spool = get_spool()
    if spool is None or spool.get_fax(fax_id) is None:
        abort(404, f"no fax {fax_id}")
    with writable_spool() as w:
        try:
            w.delete_fax(fax_id)
        except KeyError:
            abort(404, f"no fax {fax_id}")
        except ValueError as e:
            return jsonify(error=str(e)), 409
    log.info("fax %s deleted through the API", fax_id)
    return jsonify(deleted=fax_id), 200


@bp.get("/status")
def status() -> Response:
    """What the dashboard shows: daemon, lines, calls in progress, today's faxes, queue, disk, alerts."""
    cfg = current_app.config["FAXBRIDGE"]
    live, why = daemonlink.status()
    s = health.summary(cfg, get_spool(), live, why, current_zone())
    return jsonify(
        daemon_up=s.daemon_up,
        daemon_error=s.daemon_error,
        lines=s.lines,
        calls=s.calls,
        today=_plain(s.today),
        queue=s.queue,
        oldest_waiting=s.oldest_waiting,
        disk=_plain(s.disk),
        alerts=[_plain(a) for a in s.alerts],
    )


@bp.get("/route")
def which_route() -> Response | tuple[Response, int]:
    """Which routing rule a call would reach (`called`, `caller`, `tsi`, `line`, `um`), by the
    configuration file as it is now (what the daemon applies after a reload)."""
    from appliance.config import Config, ConfigError, config_file

    running = current_app.config["FAXBRIDGE"]
    path = config_file(running)
    try:
        cfg = Config.load(path, state_dir=running.base_dir) if path.is_file() else running
    except ConfigError as e:
        return jsonify(error="the configuration file is not valid", errors=e.errors), 409
    args = request.args
    decision = route(
        cfg.routing,
        called_number=text_param(args, "called") or "",
        caller_number=text_param(args, "caller") or "",
        remote_ident=text_param(args, "tsi") or "",
        line=text_param(args, "line") or "",
        um_recipient=text_param(args, "um") or "",
    )
    return jsonify(recipients=decision.recipients, **decision.as_extra())


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
