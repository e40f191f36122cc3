"""HTML pages for received faxes: the list, one fax, its page images, TIFF and PDF, resend, delete.

The list stays fast with 100,000 faxes: keyset pages (`before`/`after` cursors entering the
spool's (created, id) index), one query for a page's jobs, and a count capped at COUNT_CAP.
Pages only read; resend and delete open a writable spool for that one request (decision 0009:
the web process writes only through the spool's own methods).
"""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue

from appliance.config import Config, ConfigError, RoutingConfig, config_file
from appliance.fax.pagelimits import DECODE_ERRORS
from appliance.spool.store import FaxQuery, FaxRecord, Job, Spool
from appliance.web import render
from appliance.web.callview import call_view
from appliance.web.diagnostics import diagnostics_zip
from appliance.web.params import (
    STATES,
    BadParam,
    cursor_param,
    date_range,
    email_param,
    format_cursor,
    int_param,
    search_param,
    state_param,
    text_param,
)
from appliance.web.spoolview import get_spool, spool_root, writable_spool
from appliance.web.zone import current_zone

log = logging.getLogger("faxbridge.web")

bp = Blueprint("faxes", __name__)

PER_PAGE = 50
#: counting stops here: beyond it the list says "more than 10,000" instead of scanning on
COUNT_CAP = 10_000
#: rendered pages never change once the fax is finished; an hour keeps list scrolling cheap
IMAGE_MAX_AGE = 3600
#: what Pillow raises on a broken or hostile TIFF (a page over the size limits is a ValueError,
#: and the decompression-bomb warning is raised as an error while decoding): the spool's list
RENDER_ERRORS = DECODE_ERRORS
#: the internal id older versions showed as the fax's name (decision 0014)
HEX_ID = re.compile(r"[0-9a-fA-F]{16}")
#: the filter fields of the list's form, in the order the links carry them
FILTERS = ("q", "state", "from", "to", "caller", "called", "tsi", "recipient")


def list_query() -> tuple[FaxQuery, dict[str, str]]:
    """The list's filters from the URL, validated, and the same as link parameters."""
    args = request.args
    since, until = date_range(args, current_zone())
    query = FaxQuery(
        state=state_param(args),
        search=search_param(args),
        since=since,
        until=until,
        caller=text_param(args, "caller"),
        called=text_param(args, "called"),
        tsi=text_param(args, "tsi"),
        recipient=text_param(args, "recipient"),
    )
    link = {k: args[k].strip() for k in FILTERS if (args.get(k) or "").strip()}
    return query, link


@bp.get("/faxes")
def index() -> str:
    """Received faxes, newest first, PER_PAGE a page, narrowed by the filters in the URL."""
    query, link = list_query()
    before, after = cursor_param(request.args, "before"), cursor_param(request.args, "after")
    if before and after:
        raise BadParam("after", "cannot be used together with 'before'")
    deleted = int_param(request.args, "deleted", 0, 0)
    spool = get_spool()
    rows: list[tuple[FaxRecord, list[Job]]] = []
    total, newer, older = 0, None, None
    if spool is not None:
        faxes = spool.list_faxes(query=query, before=before, after=after, limit=PER_PAGE + 1)
        if after is not None:
            if len(faxes) <= PER_PAGE:  # back at the top: show the real first page
                after = None
                faxes = spool.list_faxes(query=query, limit=PER_PAGE + 1)
            else:
                faxes = faxes[1:]
        more_older = len(faxes) > PER_PAGE if after is None else True
        faxes = faxes[:PER_PAGE]
        if faxes and (before is not None or after is not None):
            newer = format_cursor(faxes[0].created, faxes[0].id)
        if faxes and more_older:
            older = format_cursor(faxes[-1].created, faxes[-1].id)
        jobs = spool.jobs_for_faxes([f.id for f in faxes])
        rows = [(fax, jobs[fax.id]) for fax in faxes]
        if before is None and after is None and not more_older:
            total = len(rows)  # the first page holds them all: no second scan to count them
        else:
            total = spool.count_faxes(query=query, cap=COUNT_CAP)
    return render_template(
        "faxes_list.html",
        rows=rows,
        total=total,
        cap=COUNT_CAP,
        filtered=query.active(),
        link=link,
        newer=newer,
        older=older,
        paged=before is not None or after is not None,
        deleted=deleted,
        f={k: request.args.get(k, "") for k in FILTERS},
        states=STATES,
        advanced=any(k in link for k in FILTERS[2:]),
    )


def _detail(fax_id: int, status: int = 200, **extra: Any) -> tuple[str, int]:
    spool, fax = _fax_or_404(fax_id)
    jobs = spool.jobs_for(fax.id)
    attempts = {job.id: spool.attempts(job.id) for job in jobs}
    tiff = _tiff(spool, fax)
    npages, unreadable = 0, False
    if tiff is not None:
        try:
            npages = render.page_count(tiff)
        except RENDER_ERRORS as e:
            log.warning("fax %s: cannot read %s: %s", fax.id, tiff, e)
            unreadable = True
    extra.setdefault("address", "")
    return render_template(
        "fax_detail.html",
        fax=fax,
        jobs=jobs,
        attempts=attempts,
        trust_notes=trust_notes(fax),
        has_tiff=tiff is not None,
        npages=npages,
        unreadable=unreadable,
        call=call_view(fax, jobs),
        sip_call=is_sip_call(fax),
        can_delete=_delete_refusal(fax, jobs) is None,
        resendable=[j.recipient for j in jobs if _is_mail(j.recipient) and j.state in ("delivered", "dead")],
        **extra,
    ), status


def trust_notes(fax: FaxRecord) -> list[str]:
    """What the daemon refused to do for this call's sake, in words: a recipient outside
    routing.accepted_domains, an Exchange UM referral from a peer that may not name one."""
    notes: list[str] = []
    r = fax.extra.get("route")
    if isinstance(r, dict) and isinstance(r.get("refused"), list):
        notes += [f"Not sent to {why}." for why in r["refused"] if isinstance(why, str)]
    ignored = fax.extra.get("um_referral_ignored")
    if isinstance(ignored, dict):
        named = (
            f" (it named {ignored['recipient']})"
            if isinstance(ignored.get("recipient"), str) and ignored.get("recipient")
            else ""
        )
        notes.append(
            f"Exchange UM referral ignored: {ignored.get('why', 'not from an exchange_um peer')}"
            f"{named}; the fax was routed by the rules."
        )
    return notes


@bp.get("/faxes/<int:fax_id>")
def detail(fax_id: int) -> ResponseReturnValue:
    """Everything known about one fax: call facts, T.30 trace, delivery and every page."""
    segment = request.path.rstrip("/").rsplit("/", 1)[-1]
    if len(segment) == 16:  # an old hex id made of digits only lands here, not in old_link
        found = get_spool()
        if found is not None and found.get_fax(fax_id) is None and found.get_fax_by_uid(segment):
            return old_link(segment)
    resent = request.args.get("resent", "")
    return _detail(
        fax_id, resent=resent if resent in ("1", "0") else "", skipped=int_param(request.args, "skipped", 0, 0, 1000)
    )


@bp.get("/faxes/<string(length=16):old_id>")
def old_link(old_id: str) -> ResponseReturnValue:
    """A fax named by the hex id older versions showed (CLI, alerts, logs): to its numbered page.
    The number is the fax's one name now (decision 0014)."""
    spool = get_spool()
    fax = spool.get_fax_by_uid(old_id.lower()) if spool is not None and HEX_ID.fullmatch(old_id) else None
    if fax is None:
        abort(404, f"There is no fax {old_id}.")
    return redirect(url_for("faxes.detail", fax_id=fax.id), 301)


@bp.get("/faxes/<int:fax_id>/diagnostics.zip")
def diagnostics(fax_id: int) -> Response:
    """One file for a support engineer: the call in words, its SIP messages, the decoded T.30 trace
    and the trace as recorded, the media counters, the record as JSON and, when the owner had
    capture on for the call's peer, a pcap of its media.  Named after the fax, never its caller."""
    spool, fax = _fax_or_404(fax_id)
    jobs = spool.jobs_for(fax.id)
    env = current_app.jinja_env.filters
    data = diagnostics_zip(
        spool,
        fax,
        jobs,
        {j.id: spool.attempts(j.id) for j in jobs},
        when=env["when"],
        duration=env["duration"],
        stem=diagnostics_stem(fax),
    )
    resp = send_file(
        io.BytesIO(data), mimetype="application/zip", as_attachment=True, download_name=diagnostics_stem(fax) + ".zip"
    )
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


def diagnostics_stem(fax: FaxRecord) -> str:
    """'fax-20260105-140312-<number>-call-diagnostics': the download's name and its folder inside."""
    return download_name(fax, "zip").removesuffix(".zip") + "-call-diagnostics"


def is_sip_call(fax: FaxRecord) -> bool:
    return fax.line.startswith("sip:") or "peer" in fax.extra


@bp.get("/faxes/<int:fax_id>/pages/<int:page>.png")
def page_image(fax_id: int, page: int) -> Response:
    """Page `page` (1-based) as PNG; rendered once per size and served from the disk cache."""
    size = request.args.get("size", "full")
    if size not in render.SIZES:
        raise BadParam("size", "must be thumb or full")
    spool, fax = _fax_or_404(fax_id)
    tiff = _tiff(spool, fax)
    if tiff is None:
        abort(404, "This fax has no image.")
    try:
        # Safe to cache forever: the spool publishes an image only once the fax is finished.
        path = render.cached_page(spool_root() / "cache", fax.uid, tiff, page, size)
    except render.PageNotFound:
        abort(404, f"This fax has no page {page}.")
    except RENDER_ERRORS as e:
        log.warning("fax %s page %s: cannot render %s: %s", fax.id, page, tiff, e)
        abort(500, "The page image cannot be rendered.")
    resp = send_file(path, mimetype="image/png", conditional=True, etag=True, max_age=IMAGE_MAX_AGE)
    resp.headers["Cache-Control"] = f"private, max-age={IMAGE_MAX_AGE}"
    resp.headers.pop("Expires", None)
    return resp


@bp.get("/faxes/<int:fax_id>.tif")
def tiff_download(fax_id: int) -> Response:
    """The fax as received, as an attachment with a name that cannot carry caller data."""
    spool, fax = _fax_or_404(fax_id)
    tiff = _tiff(spool, fax)
    if tiff is None:
        abort(404, "This fax has no image.")
    resp = send_file(
        tiff, mimetype="image/tiff", as_attachment=True, download_name=download_name(fax), conditional=True, etag=True
    )
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


@bp.get("/faxes/<int:fax_id>.pdf")
def pdf_download(fax_id: int) -> Response:
    """The fax as a PDF, one page per fax page, converted losslessly as delivery does it."""
    from appliance.delivery.tiff_profiles import to_pdf  # img2pdf only for this route

    spool, fax = _fax_or_404(fax_id)
    tiff = _tiff(spool, fax)
    if tiff is None:
        abort(404, "This fax has no image.")
    try:
        data = to_pdf(tiff.read_bytes())  # one page decoded at a time; refused pages left out
    except RENDER_ERRORS as e:
        log.warning("fax %s: cannot convert %s to PDF: %s", fax.id, tiff, e)
        if fax.extra.get("refused_pages") and fax.pages <= 0:
            abort(
                422,
                "No page of this fax can be shown: every page was refused as larger than a"
                " fax page can be (see its result).",
            )
        abort(500, "The fax image cannot be converted to PDF.")
    resp = send_file(
        io.BytesIO(data), mimetype="application/pdf", as_attachment=True, download_name=download_name(fax, "pdf")
    )
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


@bp.post("/faxes/<int:fax_id>/resend")
def resend(fax_id: int) -> ResponseReturnValue:
    """Queue the fax again, as new messages: to its own recipients or to one address typed in."""
    to = request.form.get("to", "")
    if to not in ("same", "other"):
        raise BadParam("to", "must be same or other")
    _, fax = _fax_or_404(fax_id)
    address = (request.form.get("address") or "").strip()
    recipients: list[str] | None = None  # None: the fax's own recipients
    if to == "other":
        try:
            recipients = [email_param(request.form, "address")]
        except BadParam as e:
            return _detail(fax_id, 400, resend_error=f"Not sent: the address {e.message}.", address=address[:254])
    if fax.state in ("receiving", "no_fax"):
        return _detail(fax_id, 409, resend_error="Not sent: this call brought no fax to send.")
    queued, skipped, refused = resend_fax(fax, recipients)
    if refused and not queued:
        return _detail(
            fax_id, 400, resend_error="Not sent: " + "; ".join(why for _, why in refused) + ".", address=address[:254]
        )
    if not queued and not skipped:
        return _detail(fax_id, 409, resend_error="Not sent: this fax has no recipients yet; enter an address instead.")
    for _, why in refused:
        flash(f"Not sent: {why}.")
    return redirect(
        url_for("faxes.detail", fax_id=fax_id, resent=1 if queued else 0, skipped=len(skipped) or None) + "#delivery"
    )


def current_routing() -> RoutingConfig:
    """[routing] as the configuration file says now (what the daemon applies after each save);
    the running one when the file is missing or not valid."""
    running: Config = current_app.config["FAXBRIDGE"]
    path = config_file(running)
    try:
        return (Config.load(path, state_dir=running.base_dir) if path.is_file() else running).routing
    except ConfigError:
        return running.routing


def resend_fax(
    fax: FaxRecord, recipients: list[str] | None
) -> tuple[list[Job], list[tuple[str, str]], list[tuple[str, str]]]:
    """Queue ``fax`` again as new messages to ``recipients`` (None: its own mail recipients) and
    wake the daemon; returns the new jobs, (recipient, why) for those still on their way, and
    (recipient, why) for those refused: outside routing.accepted_domains, nothing is queued."""
    queued: list[Job] = []
    skipped: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    routing = current_routing()
    with writable_spool() as spool:
        if recipients is None:
            recipients = [j.recipient for j in spool.jobs_for(fax.id) if _is_mail(j.recipient)]
        for rcpt in recipients:
            why = routing.refusal(rcpt)
            if why:
                log.warning("resend of fax %s refused: %s", fax.id, why)
                refused.append((rcpt, why))
                continue
            try:
                queued.append(spool.resend(fax.id, rcpt, time.time()))
            except ValueError as e:  # still on its way: it will be delivered anyway
                log.info("resend of fax %s to %s skipped: %s", fax.id, rcpt, e)
                skipped.append((rcpt, str(e)))
    if queued:
        log.info("fax %s resent to %d recipient(s)", fax.id, len(queued))
        wake_daemon()
    return queued, skipped, refused


@bp.get("/faxes/<int:fax_id>/delete")
def delete_confirm(fax_id: int) -> tuple[str, int]:
    """The confirmation step: what will be deleted, and one button that really does it."""
    spool, fax = _fax_or_404(fax_id)
    refusal = _delete_refusal(fax, spool.jobs_for(fax_id))
    return render_template("fax_delete.html", fax=fax, refusal=refusal), 200


@bp.post("/faxes/<int:fax_id>/delete")
def delete(fax_id: int) -> ResponseReturnValue:
    """Delete the fax's image, rendered pages, jobs and history; refused while it is busy."""
    _, fax = _fax_or_404(fax_id)
    with writable_spool() as spool:
        try:
            spool.delete_fax(fax_id)
        except KeyError:
            abort(404, f"There is no fax {fax_id}.")
        except ValueError as e:
            log.info("delete of fax %s refused: %s", fax.id, e)
            fresh = spool.get_fax(fax_id) or fax
            return render_template(
                "fax_delete.html",
                fax=fresh,
                refusal=_delete_refusal(fresh, spool.jobs_for(fax_id))
                or "It is busy right now; try again in a minute.",
            ), 409
    log.info("fax %s deleted from the web page", fax.id)
    return redirect(url_for("faxes.index", deleted=fax_id))


def wake_daemon() -> None:
    """Ask the daemon to look at the queue now; without it the worker still looks within a minute."""
    try:
        from appliance.control import ControlClient
    except ImportError:
        return
    config = current_app.config["FAXBRIDGE"]
    try:
        ControlClient(config.path(config.system.control_socket), timeout=2.0).request({"cmd": "wake"})
    except Exception as e:  # noqa: BLE001 - daemon down or busy: the queue is durable, nothing is lost
        log.info("could not wake the daemon (it will find the job itself): %s", e)


def _delete_refusal(fax: FaxRecord, jobs: list[Job]) -> str | None:
    """Why this fax cannot be deleted now, or None (mirrors Spool.delete_fax's checks)."""
    if fax.state == "receiving":
        return "The call is still coming in."
    if any(j.state == "delivering" for j in jobs):
        return "It is being delivered right now; try again in a minute."
    return None


def _is_mail(recipient: str) -> bool:
    """A mailbox, not the local archive (``maildir:archive``), which keeps its copy already."""
    return "@" in recipient and not recipient.startswith("maildir:")


def download_name(fax: FaxRecord, ext: str = "tif") -> str:
    """The mail attachment's name, 'fax-20260105-140312-12.tif': time received (owner's zone) and
    the fax's number only (no TSI or caller name)."""
    from appliance.delivery.message import attachment_name  # not at import: it loads the spandsp binding

    return attachment_name(fax, ext, current_zone())


def _fax_or_404(fax_id: int) -> tuple[Spool, FaxRecord]:
    spool = get_spool()
    fax = spool.get_fax(fax_id) if spool is not None else None
    if spool is None or fax is None:
        abort(404, f"There is no fax {fax_id}.")
    return spool, fax


def _tiff(spool: Spool, fax: FaxRecord) -> Path | None:
    path = spool.image_path(fax)
    return path if path is not None and path.is_file() else None
