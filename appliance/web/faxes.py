"""HTML pages for received faxes: the list, one fax, its page images and its TIFF."""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path

from flask import Blueprint, Response, abort, redirect, render_template, request, send_file, url_for
from PIL import Image

from appliance.spool.store import FaxRecord, Spool
from appliance.web import render
from appliance.web.params import STATES, BadParam, int_param, search_param, state_param
from appliance.web.spoolview import get_spool, spool_root

log = logging.getLogger(__name__)

bp = Blueprint("faxes", __name__)

PER_PAGE = 50
#: rendered pages never change once the fax is finished; an hour keeps list scrolling cheap
IMAGE_MAX_AGE = 3600
#: what Pillow raises on a broken or hostile TIFF
RENDER_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError)


@bp.get("/")
def root() -> Response:
    """Until the dashboard owns `/`, the start page is the fax list (old bookmarks keep their query)."""
    target = url_for("faxes.index")
    qs = request.query_string.decode("ascii", "replace")
    return redirect(f"{target}?{qs}" if qs else target)


@bp.get("/faxes")
def index() -> str:
    """Received faxes, newest first, 50 a page, with optional search and state filter."""
    page = int_param(request.args, "page", 1, 1, 10**6)
    q = search_param(request.args)
    state = state_param(request.args)
    spool = get_spool()
    rows, total = [], 0
    if spool is not None:
        total = spool.count_faxes(state=state, search=q)
        faxes = spool.list_faxes(limit=PER_PAGE, offset=(page - 1) * PER_PAGE, state=state, search=q)
        rows = [(fax, spool.jobs_for(fax.id)) for fax in faxes]
    return render_template("faxes_list.html", rows=rows, total=total, page=page,
                           pages=max(1, math.ceil(total / PER_PAGE)), q=q or "", state=state or "",
                           states=STATES)


@bp.get("/faxes/<int:fax_id>")
def detail(fax_id: int) -> str:
    """Everything known about one fax: call facts, delivery and every page."""
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
    return render_template("fax_detail.html", fax=fax, jobs=jobs, attempts=attempts,
                           has_tiff=tiff is not None, npages=npages, unreadable=unreadable)


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
    resp = send_file(tiff, mimetype="image/tiff", as_attachment=True,
                     download_name=download_name(fax), conditional=True, etag=True)
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


def download_name(fax: FaxRecord) -> str:
    """'fax-20260105-140312-<uid>.tif' from the uid and date only (no TSI or caller name)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(fax.created))
    uid = re.sub(r"[^A-Za-z0-9_-]", "", fax.uid)[:40] or str(fax.id)
    return f"fax-{stamp}-{uid}.tif"


def _fax_or_404(fax_id: int) -> tuple[Spool, FaxRecord]:
    spool = get_spool()
    fax = spool.get_fax(fax_id) if spool is not None else None
    if spool is None or fax is None:
        abort(404, f"There is no fax {fax_id}.")
    return spool, fax


def _tiff(spool: Spool, fax: FaxRecord) -> Path | None:
    path = spool.image_path(fax)
    return path if path is not None and path.is_file() else None
