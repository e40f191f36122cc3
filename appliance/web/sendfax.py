"""Sending a fax from the web page (issue 14): the form, its preview, the sent-fax list and job page.

The web process neither renders nor queues (decision 0003/0009): it stages the uploaded files
under ``<spool>/outbound-staging/<random token>/`` and asks the daemon over the control socket
(``outbound-preview``, ``outbound-submit``, ``outbound-list``, ``outbound-get``,
``outbound-cancel``).  An uploaded file's name never becomes a path: files are stored as ``1``,
``2``, ... and the sanitised names go to ``names.json``.  A staging token is only usable by the
session that made it, and staging directories older than STAGING_MAX_AGE are removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import FileStorage

from appliance.config import Config
from appliance.outbound.staging import STAGING, purge_stale_staging
from appliance.web import auth, render
from appliance.web.daemonlink import control_request
from appliance.web.faxes import RENDER_ERRORS
from appliance.web.spoolview import spool_root

log = logging.getLogger("faxbridge.web")

bp = Blueprint("sendfax", __name__)

#: a token is secrets.token_urlsafe(18): 24 characters of [A-Za-z0-9_-]
TOKEN = re.compile(r"[A-Za-z0-9_-]{24}")
#: the daemon's uids are short hex or similar; anything else never reaches a path
UID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: staging tokens a session keeps (the newest ones; older forms must be filled in again)
SESSION_TOKENS = 5
MAX_FILES = 20
#: what the form fields may be, characters
LIMITS = {"number": 60, "from": 100, "to": 100, "subject": 200, "note": 2000}
#: file endings the page offers; the daemon's renderer decides what it really accepts
ACCEPT = ".pdf,.tif,.tiff,.png,.jpg,.jpeg,application/pdf,image/tiff,image/png,image/jpeg"
#: rendering in the daemon's child may take up to a minute for a long PDF
RENDER_TIMEOUT = 90.0
#: form fields beside the files: the body the web server lets through is max_bytes plus this
FORM_SLACK = 256 * 1024
#: outbound states (spool/outbound.py OutState values) shown with the received faxes' colours
STATE_WORDS = {
    "queued": ("Queued", "state-queued"),
    "sending": ("Sending", "state-delivering"),
    "retry_wait": ("Waiting to retry", "state-failed_retrying"),
    "sent": ("Sent", "state-delivered"),
    "failed": ("Failed", "state-dead"),
    "cancelled": ("Cancelled", "state-no_fax"),
}
FINAL = ("sent", "failed", "cancelled")
CANCELLABLE = ("queued", "sending", "retry_wait")


def init_app(app: Flask) -> None:
    """Register the pages, and the larger body the send form may carry (its files)."""
    config: Config = app.config["FAXBRIDGE"]
    app.register_blueprint(bp)
    app.jinja_env.filters.update(out_state=out_state_label, out_class=out_state_class, phone=format_number)
    limit = config.outbound.max_bytes + FORM_SLACK
    old = auth.LARGE_BODIES.get("sendfax.send_post")
    auth.LARGE_BODIES["sendfax.send_post"] = (max(limit, old[0] if old else 0), lambda: staging_root() / ".upload")


def out_state_label(state: str) -> str:
    return STATE_WORDS.get(state, (state, ""))[0]


def out_state_class(state: str) -> str:
    """A CSS class for a state; only known states map, so data never chooses a class name."""
    return STATE_WORDS.get(state, ("", "state-unknown"))[1]


def format_number(e164: str) -> str:
    """'+1 555 123 4567' for a NANP number; other numbers as the daemon gave them."""
    m = re.fullmatch(r"\+1(\d{3})(\d{3})(\d{4})", e164 or "")
    return f"+1 {m[1]} {m[2]} {m[3]}" if m else e164


def staging_root() -> Path:
    return spool_root() / STAGING


# -- the form -------------------------------------------------------------------------------


@dataclass
class SendForm:
    """The send form's values, validated; ``errors`` maps a field to what is wrong with it."""

    number: str = ""
    cover_from: str = ""
    cover_to: str = ""
    subject: str = ""
    note: str = ""
    fine: bool = True
    errors: dict[str, str] = field(default_factory=dict)

    def cover(self) -> dict[str, str] | None:
        """The cover page for the daemon, or None when every cover field is empty."""
        c = {"from": self.cover_from, "to": self.cover_to, "subject": self.subject, "note": self.note}
        return c if any(c.values()) else None


def clean_text(value: str, limit: int, *, multiline: bool = False) -> str:
    """Printable text only (control characters dropped, newlines kept in the note), trimmed."""
    value = value.replace("\r\n", "\n")
    kept = "".join(ch for ch in value if (ch == "\n" and multiline) or unicodedata.category(ch)[0] != "C" or ch == "\t")
    return kept.strip()[:limit]


def read_form(form: Any, default_fine: bool) -> SendForm:
    f = SendForm(
        number=clean_text(form.get("number", ""), LIMITS["number"]),
        cover_from=clean_text(form.get("cover_from", ""), LIMITS["from"]),
        cover_to=clean_text(form.get("cover_to", ""), LIMITS["to"]),
        subject=clean_text(form.get("subject", ""), LIMITS["subject"]),
        note=clean_text(form.get("note", ""), LIMITS["note"], multiline=True),
        fine=form.get("resolution", "fine" if default_fine else "standard") != "standard",
    )
    if form.get("resolution", "fine") not in ("fine", "standard"):
        f.errors["resolution"] = "Choose fine or standard resolution."
    if not f.number:
        f.errors["number"] = "Enter the fax number to send to."
    elif not re.fullmatch(r"[0-9 +()./-]+", f.number) or not re.search(r"\d", f.number):
        f.errors["number"] = "A fax number has digits, spaces, +, -, (, ) and dots only."
    return f


def safe_name(name: str) -> str:
    """An uploaded file's name for showing and for the renderer's messages: no path, no control
    characters, at most 100 characters; never used as a path."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = clean_text(base, 100)
    return base or "file"


# -- staging --------------------------------------------------------------------------------


class StagingRefused(ValueError):
    """The uploaded files cannot be staged; the message says why in plain words."""


def human_size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{max(1, round(n / 1000))} KB"


def stage_files(root: Path, files: list[FileStorage], max_bytes: int) -> tuple[str, list[str]]:
    """Copy the uploads into a new staging directory; returns (token, sanitised names).

    Bounded while copying: the total over all files stops at ``max_bytes``, and the directory is
    removed again on any refusal."""
    uploads = [f for f in files if f.filename]
    if not uploads:
        raise StagingRefused("Choose at least one file to send.")
    if len(uploads) > MAX_FILES:
        raise StagingRefused(f"At most {MAX_FILES} files can go in one fax; {len(uploads)} were chosen.")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(18)
    where = root / token
    where.mkdir(mode=0o700)
    names: list[str] = []
    total = 0
    try:
        for n, upload in enumerate(uploads, 1):
            with open(where / str(n), "xb") as out:
                while chunk := upload.stream.read(64 * 1024):
                    total += len(chunk)
                    if total > max_bytes:
                        raise StagingRefused(
                            f"The files are larger than {human_size(max_bytes)} together, the most one fax may"
                            f" carry (outbound.max_bytes); {safe_name(upload.filename or '')} went over it."
                        )
                    out.write(chunk)
            if (where / str(n)).stat().st_size == 0:
                raise StagingRefused(f"{safe_name(upload.filename or '')} is empty.")
            names.append(safe_name(upload.filename or ""))
        (where / "names.json").write_text(json.dumps(names), encoding="utf-8")
    except BaseException:
        shutil.rmtree(where, ignore_errors=True)
        raise
    return token, names


def remember_token(token: str) -> None:
    tokens = [t for t in session.get("sendfax_tokens", []) if isinstance(t, str)]
    session["sendfax_tokens"] = (tokens + [token])[-SESSION_TOKENS:]


def owned_token(token: str) -> bool:
    """The token is well formed, this session made it, and its directory still exists."""
    return (
        bool(TOKEN.fullmatch(token or ""))
        and token in session.get("sendfax_tokens", [])
        and (staging_root() / token).is_dir()
    )


def staged_names(token: str) -> list[str]:
    try:
        names = json.loads((staging_root() / token / "names.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [safe_name(str(n)) for n in names][:MAX_FILES] if isinstance(names, list) else []


# -- pages ----------------------------------------------------------------------------------


def _config() -> Config:
    config: Config = current_app.config["FAXBRIDGE"]
    return config


def _form_page(form: SendForm, status: int = 200, **extra: Any) -> tuple[str, int]:
    cfg = _config().outbound
    extra.setdefault("token", "")
    extra.setdefault("names", [])
    return render_template(
        "send_form.html",
        form=form,
        accept=ACCEPT,
        limits=LIMITS,
        max_size=human_size(cfg.max_bytes),
        max_pages=cfg.max_pages,
        enabled=cfg.enabled,
        **extra,
    ), status


@bp.get("/send")
def send_form() -> tuple[str, int]:
    """The empty form."""
    return _form_page(SendForm(fine=_config().outbound.resolution != "standard"))


@bp.post("/send")
def send_post() -> ResponseReturnValue:
    """[Preview] stages the files and shows every page as it will go; [Send] queues the fax."""
    cfg = _config().outbound
    action = request.form.get("action", "")
    if action not in ("preview", "send"):
        abort(400, "The form's action must be preview or send.")
    root = staging_root()
    purge_stale_staging(root, time.time())
    form = read_form(request.form, cfg.resolution != "standard")
    token = request.form.get("staging", "")
    uploads = [f for f in request.files.getlist("files") if f.filename]
    names: list[str] = []
    if uploads:
        try:
            token, names = stage_files(root, uploads, cfg.max_bytes)
            remember_token(token)
        except StagingRefused as e:
            form.errors["files"] = str(e)
            token = ""
    elif owned_token(token):
        names = staged_names(token)
        os.utime(root / token)  # still in use: the sweep leaves it for another hour
    else:
        token = ""
        form.errors["files"] = "Choose at least one file to send."
    if form.errors:
        return _form_page(form, 400, token=token, names=names)
    if action == "preview":
        reply = control_request(
            {
                "cmd": "outbound-preview",
                "staging": token,
                "number": form.number,
                "cover": form.cover(),
                "fine": form.fine,
            },
            timeout=RENDER_TIMEOUT,
        )
        if not reply.get("ok"):
            form.errors["daemon"] = _refusal(reply, "The fax cannot be previewed")
            return _form_page(form, 422 if not reply.get("down") else 503, token=token, names=names)
        pages = _int(reply.get("pages"))
        return _form_page(
            form,
            token=token,
            names=names,
            preview={
                "pages": pages,
                "e164": str(reply.get("e164", "")),
                "route": str(reply.get("route", "")),
                "images": [n for n in range(1, pages + 1) if (root / token / "preview" / f"page-{n}.png").is_file()],
            },
        )
    reply = control_request(
        {
            "cmd": "outbound-submit",
            "staging": token,
            "number": form.number,
            "cover": form.cover(),
            "fine": form.fine,
            "sender": str(session.get("user", "")),
            "source": "web",
            "subject": "",
        },
        timeout=RENDER_TIMEOUT,
    )
    if not reply.get("ok"):
        form.errors["daemon"] = _refusal(reply, "The fax was not queued")
        return _form_page(form, 422 if not reply.get("down") else 503, token=token, names=names)
    job_id = _int(reply.get("id"))
    log.info("fax %s to %s queued from the web page", job_id, form.number)
    shutil.rmtree(root / token, ignore_errors=True)  # the daemon holds its own rendered copy now
    return redirect(url_for("sendfax.job", job_id=job_id))


def _refusal(reply: dict[str, Any], what: str) -> str:
    why = str(reply.get("error") or "the fax service gave no reason").strip()
    return why if reply.get("down") else f"{what}: {why}"


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@bp.get("/send/preview/<token>/<int:page>.png")
def preview_image(token: str, page: int) -> Response:
    """A preview page the daemon rendered into this session's staging directory."""
    if not owned_token(token):
        abort(404, "This preview is gone; choose the files again.")
    path = staging_root() / token / "preview" / f"page-{page}.png"
    if not path.is_file():
        abort(404, f"There is no preview of page {page}.")
    resp = send_file(path, mimetype="image/png")
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


# -- sent faxes -----------------------------------------------------------------------------


def _job_fields(job: Any) -> dict[str, Any]:
    """A job from the daemon with every field the templates use present and of its type."""
    if not isinstance(job, dict):
        return {}
    out: dict[str, Any] = {}
    for key in (
        "uid",
        "number",
        "e164",
        "route",
        "state",
        "last_result",
        "last_words",
        "remote_ident",
        "source",
        "sender",
        "subject",
    ):
        out[key] = str(job.get(key) or "")
    for key in ("id", "pages", "pages_confirmed"):
        out[key] = _int(job.get(key))
    out["attempt_count"] = _int(job.get("attempts")) if not isinstance(job.get("attempts"), list) else 0
    for key in ("created", "finished", "next_attempt"):
        v = job.get(key)
        out[key] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    attempts = job.get("attempts")
    out["attempts"] = [_attempt(a) for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []
    if out["attempts"]:
        out["attempt_count"] = len(out["attempts"])
    trace = job.get("trace")
    out["trace"] = [str(t) for t in trace][:2000] if isinstance(trace, list) else []
    out["cancellable"] = out["state"] in CANCELLABLE and not job.get("cancel_requested")
    out["cancel_requested"] = bool(job.get("cancel_requested"))
    return out


def _attempt(a: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("result", "words", "detail", "remote_ident", "way"):
        out[key] = str(a.get(key) or "")
    for key in ("started", "connected", "finished", "duration"):
        v = a.get(key)
        out[key] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    out["pages_confirmed"] = _int(a.get("pages_confirmed"))
    out["bit_rate"] = _int(a.get("bit_rate"))
    return out


@bp.get("/outbound")
def outbound_list() -> tuple[str, int]:
    """Faxes sent from this box, newest first, each with its report in words."""
    reply = control_request({"cmd": "outbound-list", "limit": 100})
    jobs = [_job_fields(j) for j in reply.get("jobs", [])] if reply.get("ok") else []
    error = "" if reply.get("ok") else _refusal(reply, "The list of sent faxes cannot be shown")
    return render_template("outbound_list.html", jobs=[j for j in jobs if j], error=error), 200


def _get_job(job_id: int) -> dict[str, Any]:
    reply = control_request({"cmd": "outbound-get", "id": job_id})
    if reply.get("down"):
        abort(503, str(reply.get("error")))
    job = _job_fields(reply.get("job")) if reply.get("ok") else {}
    if not job:
        abort(404, f"There is no sent fax {job_id}.")
    return job


@bp.get("/outbound/<int:job_id>")
def job(job_id: int) -> tuple[str, int]:
    """One sent fax: its report, first page, attempts and T.30 trace; live while it is under way."""
    j = _get_job(job_id)
    last = j["attempts"][-1] if j["attempts"] else None
    return render_template("outbound_job.html", job=j, last=last), 200


@bp.get("/outbound/<int:job_id>.json")
def job_json(job_id: int) -> Response:
    """What the job page's script polls: the fields it updates in place."""
    j = _get_job(job_id)
    return jsonify(
        id=j["id"],
        state=j["state"],
        state_label=out_state_label(j["state"]),
        state_class=out_state_class(j["state"]),
        pages=j["pages"],
        pages_confirmed=j["pages_confirmed"],
        words=j["last_words"],
        remote_ident=j["remote_ident"],
        final=j["state"] in FINAL,
        cancellable=j["cancellable"],
    )


@bp.post("/outbound/<int:job_id>/cancel")
def cancel(job_id: int) -> ResponseReturnValue:
    """Cancel a queued fax at once, or ask the line to hang up on one being sent."""
    reply = control_request({"cmd": "outbound-cancel", "id": job_id})
    if reply.get("ok"):
        state = str((reply.get("job") or {}).get("state", ""))
        flash("Cancelled." if state == "cancelled" else "Cancelling: the call is being ended.")
        log.info("fax %s cancelled from the web page", job_id)
    else:
        flash(_refusal(reply, "Not cancelled"))
    return redirect(url_for("sendfax.job", job_id=job_id))


@bp.get("/outbound/<int:job_id>/page/<int:page>.png")
def page_image(job_id: int, page: int) -> Response:
    """A page of the fax as queued (``<spool>/outbound/<uid>.tif``), rendered once per size."""
    size = request.args.get("size", "thumb")
    if size not in render.SIZES:
        abort(400, "size must be thumb or full")
    j = _get_job(job_id)
    if not UID.fullmatch(j["uid"]):
        abort(404, "This fax has no image.")
    tiff = spool_root() / "outbound" / f"{j['uid']}.tif"
    if not tiff.is_file():
        abort(404, "This fax has no image.")
    try:
        path = render.cached_page(spool_root() / "cache", f"out-{j['uid']}", tiff, page, size)
    except render.PageNotFound:
        abort(404, f"This fax has no page {page}.")
    except RENDER_ERRORS as e:
        log.warning("sent fax %s page %s: cannot render %s: %s", job_id, page, tiff, e)
        abort(500, "The page image cannot be rendered.")
    resp = send_file(path, mimetype="image/png", conditional=True, etag=True, max_age=3600)
    resp.headers["Cache-Control"] = "private, max-age=3600"
    resp.headers.pop("Expires", None)
    return resp
