"""The sending half of the JSON API: `POST /api/outbound` queues a fax, and the queue can be
read and a fax cancelled. Same login and CSRF header as the rest of /api (see api.py).

The web process renders and queues nothing itself: it stages the uploaded files in the spool and
asks the daemon over the control socket (appliance/outbound/service.py), which renders them in a
child process with limits and queues them.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from appliance.config import Config
from appliance.outbound.staging import SubmitRefused, remove_staging, stage_files
from appliance.web import auth, daemonlink
from appliance.web.params import BadParam, email_param, int_param

log = logging.getLogger("faxbridge.web.api")

bp = Blueprint("outbound_api", __name__)

#: the daemon renders before it answers: a long PDF takes a while on a Pi
SUBMIT_TIMEOUT = 90.0


def _cfg() -> Config:
    cfg: Config = current_app.config["FAXBRIDGE"]
    return cfg


def _ask(cmd: dict[str, Any], timeout: float = daemonlink.STATUS_TIMEOUT) -> tuple[Response, int] | dict[str, Any]:
    reply, why = daemonlink.ask(cmd, timeout)
    if reply is None:
        return jsonify(error=f"the fax daemon is not running: {why}"), 503
    if not reply.get("ok"):
        message = str(reply.get("error", "refused"))
        code = 404 if message.startswith("there is no outgoing fax") else 400
        return jsonify(error=message), code
    return reply


@bp.post("/outbound")
def submit() -> tuple[Response, int]:
    """Queue a fax: multipart form with `number`, one or more `file` parts (PDF, TIFF, PNG, JPEG,
    in page order), optional `cover_from`, `cover_to`, `cover_subject`, `cover_note`, `subject`,
    `report_to` (a mail address for the report). 202 with the job; 400 with the reason."""
    form = request.form
    number = (form.get("number") or "").strip()
    if not number:
        raise BadParam("number", "give the fax number to send to")
    report_to = email_param(form, "report_to") if form.get("report_to") else ""
    cover = {k: form.get(f"cover_{k}", "") for k in ("from", "to", "subject", "note")}
    uploads = [(f.filename or f"file {i}", f.read()) for i, f in enumerate(request.files.getlist("file"), 1)]
    uploads = [(name, data) for name, data in uploads if data]
    if not uploads and not any(cover.values()):
        raise BadParam("file", "attach at least one file (PDF, TIFF, PNG or JPEG) or give a cover note")
    cfg = _cfg()
    try:
        token = stage_files(cfg, uploads)
    except SubmitRefused as e:
        return jsonify(error=str(e)), 400
    answer = _ask(
        {
            "cmd": "outbound-submit",
            "staging": token,
            "number": number[:64],
            "cover": cover if any(cover.values()) else None,
            "sender": report_to,
            "source": "api",
            "subject": (form.get("subject") or "")[:200],
        },
        SUBMIT_TIMEOUT,
    )
    if not isinstance(answer, dict):
        remove_staging(cfg, token)
        return answer
    log.info("fax %s to %s queued through the API", answer["job"]["id"], answer["job"]["e164"])
    return jsonify(answer["job"]), 202


@bp.get("/outbound")
def list_jobs() -> Response | tuple[Response, int]:
    """The outgoing faxes, newest first: `{"jobs": [...]}`; `limit` (<= 500)."""
    answer = _ask({"cmd": "outbound-list", "limit": int_param(request.args, "limit", 100, 1, 500)})
    return jsonify(jobs=answer["jobs"]) if isinstance(answer, dict) else answer


@bp.get("/outbound/<int:job_id>")
def get_job(job_id: int) -> Response | tuple[Response, int]:
    """One outgoing fax with its attempts, the report's rows and the last attempt's T.30 trace."""
    answer = _ask({"cmd": "outbound-get", "id": job_id})
    return jsonify(answer["job"]) if isinstance(answer, dict) else answer


@bp.post("/outbound/<int:job_id>/cancel")
def cancel_job(job_id: int) -> Response | tuple[Response, int]:
    """Cancel: at once while it waits; a fax being sent is hung up (the report says so)."""
    answer = _ask({"cmd": "outbound-cancel", "id": job_id}, 10.0)
    return jsonify(answer["job"]) if isinstance(answer, dict) else answer


def init_app(app: Any) -> None:
    app.register_blueprint(bp, url_prefix="/api")
    cfg: Config = app.config["FAXBRIDGE"]
    # an upload of up to max_bytes plus the form's overhead; file parts spool to the data partition
    auth.LARGE_BODIES["outbound_api.submit"] = (
        cfg.outbound.max_bytes + 1024 * 1024,
        lambda: cfg.path(cfg.spool.dir) / "outbound-uploads",
    )
