"""JSON API for received faxes: the same data as the pages, for scripts and monitoring."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, request

from appliance.web.params import int_param, search_param, state_param
from appliance.web.spoolview import fax_dict, get_spool

bp = Blueprint("api", __name__)

MAX_LIMIT = 500


@bp.get("/faxes")
def list_faxes() -> Response:
    """`{"total": N, "faxes": [...]}`, newest first; `limit` (<= 500), `offset`, `q`, `state`."""
    limit = int_param(request.args, "limit", 50, 0, MAX_LIMIT)
    offset = int_param(request.args, "offset", 0, 0)
    q = search_param(request.args)
    state = state_param(request.args)
    spool = get_spool()
    if spool is None:
        return jsonify(total=0, faxes=[])
    total = spool.count_faxes(state=state, search=q)
    faxes = spool.list_faxes(limit=limit, offset=offset, state=state, search=q) if limit else []
    return jsonify(total=total, faxes=[fax_dict(f, spool.jobs_for(f.id)) for f in faxes])


@bp.get("/faxes/<int:fax_id>")
def get_fax(fax_id: int) -> Response:
    """One fax with its jobs; 404 JSON when there is no such fax."""
    spool = get_spool()
    fax = spool.get_fax(fax_id) if spool is not None else None
    if fax is None:
        abort(404, f"no fax {fax_id}")
    return jsonify(fax_dict(fax, spool.jobs_for(fax.id)))
