"""The JSON API's OpenAPI 3.1 document, served at /api/openapi.json, and a page listing it at /api/docs.

Written by hand (the API is small and its words matter to whoever scripts against the box), and
kept honest by tests/web/test_openapi.py: every Flask route under /api/ must appear here with
the same methods, and nothing here may describe a route that does not exist.  Whoever adds an
API route adds its operation to `PATHS` below.

Authentication is the web UI's own: the session cookie from the login form, and for every
state-changing call the session's CSRF token in the X-CSRF-Token header (decision 0009).
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, Response, jsonify, render_template

bp = Blueprint("openapi", __name__)

#: JSON types shared by the operations
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every refusal: 400 (bad parameter, CSRF), 401 (no session), 404, 5xx.",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong, in words."},
            "parameter": {"type": "string", "description": "The query parameter at fault (400 only)."},
        },
    },
    "Job": {
        "type": "object",
        "description": "One delivery of a fax to one recipient.",
        "required": ["recipient", "state", "attempts", "last_error"],
        "additionalProperties": False,
        "properties": {
            "recipient": {"type": "string", "format": "email"},
            "state": {"type": "string", "enum": ["queued", "delivering", "delivered", "failed_retrying", "dead"]},
            "attempts": {"type": "integer", "minimum": 0},
            "last_error": {
                "type": "string",
                "description": "The mail server's last reply or the error; empty when none.",
            },
        },
    },
    "OutboundJob": {
        "type": "object",
        "description": "One fax being sent (or sent). `number` is as the sender gave it; `e164` normalised. "
        "`remote_ident` (the receiver's CSI) came from the line: escape it.",
        "required": ["id", "uid", "number", "e164", "route", "state", "pages", "pages_confirmed", "last_result"],
        "properties": {
            "id": {"type": "integer", "description": "The outgoing fax's number."},
            "uid": {"type": "string"},
            "number": {"type": "string"},
            "e164": {"type": "string"},
            "route": {"type": "string", "description": "The [[outbound.routes]] entry it goes out by."},
            "state": {"type": "string", "enum": ["queued", "sending", "retry_wait", "sent", "failed", "cancelled"]},
            "created": {"type": "number"},
            "next_attempt": {"type": ["number", "null"]},
            "attempts": {"type": ["integer", "array"], "description": "A count; in getOutbound, the list of attempts."},
            "pages": {"type": "integer", "minimum": 0},
            "pages_confirmed": {"type": "integer", "minimum": 0},
            "last_result": {
                "type": "string",
                "description": "sent, busy, no_answer, no_carrier, refused, training_failed, dropped, "
                "far_end_error, cancelled, no_route, unknown, error; empty before the first attempt ends.",
            },
            "last_words": {"type": "string", "description": "last_result in plain words."},
            "last_detail": {"type": "string", "description": "The technical cause: SIP status, T.30 result."},
            "remote_ident": {"type": "string"},
            "finished": {"type": ["number", "null"]},
            "source": {"type": "string", "enum": ["mail", "graph", "web", "api", "cli"]},
            "sender": {"type": "string"},
            "subject": {"type": "string"},
            "cancel_requested": {"type": "boolean"},
            "report": {"type": "array", "description": "getOutbound: the report's (label, value) rows."},
            "trace": {"type": "array", "items": {"type": "string"}, "description": "getOutbound: the T.30 trace."},
        },
    },
    "Fax": {
        "type": "object",
        "description": "A received fax (or a call that brought none) with its delivery jobs. Every text "
        "field that came from the caller (names, numbers, TSI) is untrusted: escape it.",
        "required": ["id", "uid", "state", "created", "pages", "jobs"],
        "additionalProperties": False,
        "properties": {
            "id": {
                "type": "integer",
                "description": "The fax's number: its one name on the web pages, in the "
                "CLI (faxbridge queue, resend), the mails and the log.",
            },
            "uid": {
                "type": "string",
                "deprecated": True,
                "description": "Internal key (file names, the mail's Message-ID), kept for clients of "
                "older versions: name a fax by its id.",
            },
            "state": {
                "type": "string",
                "enum": [
                    "receiving",
                    "received",
                    "no_fax",
                    "routed",
                    "delivering",
                    "delivered",
                    "failed_retrying",
                    "dead",
                ],
            },
            "created": {"type": "number", "description": "Call start, Unix time."},
            "finished": {"type": ["number", "null"], "description": "Call end, Unix time."},
            "complete": {"type": "boolean", "description": "Every page the sender announced arrived."},
            "line": {"type": "string", "description": '"sip:<peer>" or "modem:<device>".'},
            "call_id": {"type": "string"},
            "caller_number": {"type": "string"},
            "caller_name": {"type": "string"},
            "called_number": {"type": "string"},
            "remote_ident": {"type": "string", "description": "The sender's TSI (fax ident)."},
            "pages": {"type": "integer", "minimum": 0},
            "bad_rows": {"type": "integer", "minimum": 0},
            "bit_rate": {"type": "integer", "description": "Bit/s of the last page, 0 when unknown."},
            "ecm": {"type": "boolean"},
            "resolution": {"type": "string", "examples": ["204x98", "204x196"]},
            "duration": {"type": "number", "description": "Call length in seconds."},
            "result_code": {"type": "integer", "description": "spandsp's T.30 completion code, 0 = OK."},
            "result_text": {"type": "string"},
            "image": {"type": ["string", "null"], "description": "The TIFF's path in the spool, null without pages."},
            "extra": {
                "type": "object",
                "description": "Further call facts (T.38, SIP headers...).",
                "additionalProperties": True,
            },
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        },
    },
    "FaxList": {
        "type": "object",
        "required": ["total", "faxes"],
        "additionalProperties": False,
        "properties": {
            "total": {
                "type": "integer",
                "description": "Faxes matching the filters, all pages together (counting stops at 10,000).",
            },
            "total_capped": {"type": "boolean", "description": "True when the count stopped at 10,000."},
            "faxes": {"type": "array", "items": {"$ref": "#/components/schemas/Fax"}},
        },
    },
}

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
RESPONSES: dict[str, Any] = {
    "BadRequest": {
        "description": "A parameter or the body cannot be used (the error names it), or "
        "the CSRF token is missing or wrong.",
        **_ERROR,
    },
    "Unauthorized": {
        "description": "No valid session: log in first (or no administrator password is set yet).",
        **_ERROR,
    },
    "NotFound": {"description": "No such object.", **_ERROR},
    "DaemonDown": {"description": "The fax daemon is not running (sending needs it).", **_ERROR},
}

PARAMETERS: dict[str, Any] = {
    "FaxId": {
        "name": "fax_id",
        "in": "path",
        "required": True,
        "description": "The fax's number.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "OutboundId": {
        "name": "job_id",
        "in": "path",
        "required": True,
        "description": "The outgoing fax's number.",
        "schema": {"type": "integer", "minimum": 1},
    },
}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


#: the operations, keyed by OpenAPI path (Flask's <int:x> written {x}) and lower-case method
PATHS: dict[str, dict[str, Any]] = {
    "/api/faxes": {
        "get": {
            "operationId": "listFaxes",
            "tags": ["Faxes"],
            "summary": "List received faxes, newest first",
            "description": "Pagination by `limit` and `offset`; `q` searches numbers, names, TSI and "
            "recipients; `state` filters by state.",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 500, "default": 50},
                    "description": "Faxes per answer; 0 gives only the total.",
                },
                {
                    "name": "offset",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "default": 0},
                    "description": "Faxes to skip (newest first).",
                },
                {
                    "name": "q",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "Free text: number, name, TSI or recipient.",
                },
                {"name": "state", "in": "query", "schema": SCHEMAS["Fax"]["properties"]["state"]},
                {
                    "name": "from",
                    "in": "query",
                    "schema": {"type": "string", "format": "date"},
                    "description": "Received on or after this local day (YYYY-MM-DD).",
                },
                {
                    "name": "to",
                    "in": "query",
                    "schema": {"type": "string", "format": "date"},
                    "description": "Received on or before this local day (YYYY-MM-DD).",
                },
                {
                    "name": "caller",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "Caller number or name contains this.",
                },
                {
                    "name": "called",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "Called number contains this.",
                },
                {
                    "name": "tsi",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "The sender's TSI contains this.",
                },
                {
                    "name": "recipient",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "A delivery recipient contains this.",
                },
            ],
            "responses": {
                "200": _json("FaxList", "The page of faxes and the total."),
                "400": _ref("responses", "BadRequest"),
                "401": _ref("responses", "Unauthorized"),
            },
        },
    },
    "/api/faxes/{fax_id}": {
        "get": {
            "operationId": "getFax",
            "tags": ["Faxes"],
            "summary": "One fax with its delivery jobs",
            "parameters": [_ref("parameters", "FaxId")],
            "responses": {
                "200": _json("Fax", "The fax."),
                "401": _ref("responses", "Unauthorized"),
                "404": _ref("responses", "NotFound"),
            },
        },
        "delete": {
            "operationId": "deleteFax",
            "tags": ["Faxes"],
            "summary": "Delete a fax: image, rendered pages, jobs and history",
            "parameters": [_ref("parameters", "FaxId")],
            "responses": {
                "200": {
                    "description": "Deleted.",
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "properties": {"deleted": {"type": "integer"}}}
                        }
                    },
                },
                "404": _ref("responses", "NotFound"),
                "409": {"description": "Still being received or delivered.", **_ERROR},
            },
        },
    },
    "/api/faxes/{fax_id}/resend": {
        "post": {
            "operationId": "resendFax",
            "tags": ["Faxes"],
            "summary": "Send a fax again, as new messages (new Message-IDs)",
            "parameters": [_ref("parameters", "FaxId")],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "to": {
                                    "type": "string",
                                    "format": "email",
                                    "description": "One address; without it, the fax's own mail recipients.",
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": {
                    "description": "Queued.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["queued", "skipped"],
                                "properties": {
                                    "queued": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "recipient": {"type": "string"},
                                                "message_id": {"type": "string"},
                                            },
                                        },
                                    },
                                    "skipped": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "recipient": {"type": "string"},
                                                "reason": {"type": "string"},
                                            },
                                        },
                                    },
                                    "refused": {
                                        "type": "array",
                                        "description": "Recipients outside "
                                        "routing.accepted_domains: nothing was queued for them.",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "recipient": {"type": "string"},
                                                "reason": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            }
                        }
                    },
                },
                "400": {
                    "description": "`to` is not a mail address or is outside "
                    "routing.accepted_domains (nothing queued), or the "
                    "CSRF token is missing or wrong.",
                    **_ERROR,
                },
                "404": _ref("responses", "NotFound"),
                "409": {
                    "description": "Nothing to send (no pages, no recipients, every "
                    "delivery still under way, or every recipient outside "
                    "routing.accepted_domains).",
                    **_ERROR,
                },
            },
        },
    },
    "/api/outbound": {
        "post": {
            "operationId": "sendFax",
            "tags": ["Sending"],
            "summary": "Send a fax: queue documents for a number",
            "description": "The daemon normalises the number, picks the route, renders the files at fax "
            "resolution (in a child process with limits) and queues the fax; the answer comes when it is "
            "queued. Poll getOutbound for the outcome.",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["number"],
                            "properties": {
                                "number": {"type": "string", "description": "As dialled, or E.164 (+15551234567)."},
                                "file": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                    "description": "PDF, TIFF, PNG or JPEG, in page order (repeat the part).",
                                },
                                "cover_from": {"type": "string"},
                                "cover_to": {"type": "string"},
                                "cover_subject": {"type": "string"},
                                "cover_note": {"type": "string", "description": "Any cover field makes a cover page."},
                                "subject": {"type": "string"},
                                "report_to": {
                                    "type": "string",
                                    "format": "email",
                                    "description": "Mail the report here.",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": {
                    "description": "Queued.",
                    "content": {"application/json": {"schema": _ref("schemas", "OutboundJob")}},
                },
                "413": {"description": "The files are larger than outbound.max_bytes allows."},
                "503": _ref("responses", "DaemonDown"),
            },
        },
        "get": {
            "operationId": "listOutbound",
            "tags": ["Sending"],
            "summary": "The outgoing faxes, newest first",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
            ],
            "responses": {
                "200": {
                    "description": "The jobs.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["jobs"],
                                "properties": {"jobs": {"type": "array", "items": _ref("schemas", "OutboundJob")}},
                            }
                        }
                    },
                },
                "503": _ref("responses", "DaemonDown"),
            },
        },
    },
    "/api/outbound/{job_id}": {
        "get": {
            "operationId": "getOutbound",
            "tags": ["Sending"],
            "summary": "One outgoing fax: state, attempts, report, T.30 trace",
            "parameters": [_ref("parameters", "OutboundId")],
            "responses": {
                "200": {
                    "description": "The job.",
                    "content": {"application/json": {"schema": _ref("schemas", "OutboundJob")}},
                },
                "404": _ref("responses", "NotFound"),
                "503": _ref("responses", "DaemonDown"),
            },
        },
    },
    "/api/outbound/{job_id}/cancel": {
        "post": {
            "operationId": "cancelOutbound",
            "tags": ["Sending"],
            "summary": "Cancel an outgoing fax (a call in progress is hung up)",
            "parameters": [_ref("parameters", "OutboundId")],
            "responses": {
                "200": {
                    "description": "The job after the cancel.",
                    "content": {"application/json": {"schema": _ref("schemas", "OutboundJob")}},
                },
                "404": _ref("responses", "NotFound"),
                "503": _ref("responses", "DaemonDown"),
            },
        },
    },
    "/api/status": {
        "get": {
            "operationId": "getStatus",
            "tags": ["System"],
            "summary": "What the dashboard shows",
            "description": "Daemon reachability, lines with their state, calls in progress, today's "
            "faxes, the delivery queue by state, disk space of the spool, alerts.",
            "responses": {
                "200": {
                    "description": "The status.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["daemon_up", "lines", "calls", "today", "queue", "alerts"],
                                "properties": {
                                    "daemon_up": {"type": "boolean"},
                                    "daemon_error": {"type": "string"},
                                    "lines": {"type": "array", "items": {"type": "object"}},
                                    "calls": {"type": "array", "items": {"type": "object"}},
                                    "today": {"type": "object"},
                                    "queue": {"type": "object", "additionalProperties": {"type": "integer"}},
                                    "oldest_waiting": {"type": ["number", "null"]},
                                    "disk": {"type": ["object", "null"]},
                                    "alerts": {"type": "array", "items": {"type": "object"}},
                                },
                            }
                        }
                    },
                }
            },
        },
    },
    "/api/route": {
        "get": {
            "operationId": "whichRoute",
            "tags": ["System"],
            "summary": "Which routing rule a call would reach, and where its fax would go",
            "parameters": [
                {"name": n, "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": d}
                for n, d in (
                    ("called", "Called number (DID)."),
                    ("caller", "Caller number."),
                    ("tsi", "The sender's TSI."),
                    ("line", '"sip:<peer>" or "modem:<device>".'),
                    ("um", "Exchange UM recipient address."),
                )
            ],
            "responses": {
                "200": {
                    "description": "The decision.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["rule", "recipients"],
                                "properties": {
                                    "rule": {"type": "string"},
                                    "recipients": {"type": "array", "items": {"type": "string"}},
                                    "to": {"type": "array", "items": {"type": "string"}},
                                    "cc": {"type": "array", "items": {"type": "string"}},
                                    "format": {"type": "string"},
                                    "tiff": {"type": "string"},
                                    "subject": {"type": "string"},
                                    "refused": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "description": "Only when an address was refused (outside "
                                        "routing.accepted_domains), one message each.",
                                    },
                                    "um_refused": {
                                        "type": "string",
                                        "description": "The `um` address, "
                                        "when it was refused: the fax would go as ordinary mail.",
                                    },
                                },
                            }
                        }
                    },
                },
                "409": {"description": "The configuration file is not valid.", **_ERROR},
            },
        },
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "tags": ["Documentation"],
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}},
                "401": _ref("responses", "Unauthorized"),
            },
        },
    },
    "/api/docs": {
        "get": {
            "operationId": "getApiDocs",
            "tags": ["Documentation"],
            "summary": "This document as a web page",
            "responses": {
                "200": {"description": "HTML", "content": {"text/html": {}}},
                "401": _ref("responses", "Unauthorized"),
            },
        },
    },
}

DESCRIPTION = """\
The JSON API behind the appliance's web pages: the same data, the same login.

**Authentication.** Log in as the web page does: `GET /login` (it sets the session cookie
`faxbridge_session` and its form carries a hidden `csrf_token`), then `POST /login` with the
form fields `password` and `csrf_token`. Keep the cookie. A call without a valid session gets
401 with a JSON error.

**CSRF.** Every POST, PUT, PATCH and DELETE must carry the session's token in the header
`X-CSRF-Token`; it is in every page's `<meta name="csrf-token">` (the login starts a new session,
so read it from a page fetched after logging in). Without it the call is refused with 400.

Every text that came from a fax or a caller (names, numbers, TSI, the mail server's replies) is
untrusted input: escape it wherever it is shown."""

SAFE_METHODS = {"get", "head", "options"}


def document() -> dict[str, Any]:
    """The whole OpenAPI document (a fresh copy: callers may not change the module's tables)."""
    from appliance.control import version

    paths = copy.deepcopy(PATHS)
    for ops in paths.values():
        for method, op in ops.items():
            unsafe = method not in SAFE_METHODS
            op.setdefault("security", [{"session": [], "csrf": []}] if unsafe else [{"session": []}])
            if unsafe:
                op["responses"].setdefault("400", _ref("responses", "BadRequest"))
            op["responses"].setdefault("401", _ref("responses", "Unauthorized"))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Faxbridge JSON API", "version": version(), "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "Faxes", "description": "Received faxes and their delivery."},
            {"name": "Sending", "description": "Faxes sent from this box: queue, outcome, cancel."},
            {"name": "System", "description": "The appliance's state and routing."},
            {"name": "Documentation", "description": "This API's description."},
        ],
        "paths": paths,
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "responses": copy.deepcopy(RESPONSES),
            "parameters": copy.deepcopy(PARAMETERS),
            "securitySchemes": {
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "faxbridge_session",
                    "description": "The web UI's session cookie, from POST /login.",
                },
                "csrf": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-CSRF-Token",
                    "description": 'The session\'s CSRF token (<meta name="csrf-token"> of any page); '
                    "required on POST, PUT, PATCH and DELETE.",
                },
            },
        },
        "security": [{"session": []}],
    }


def operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The operations in document order, flattened for the docs page."""
    out = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = [_resolve(doc, p) for p in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {})
            out.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "id": op.get("operationId", ""),
                    "csrf": any("csrf" in s for s in op.get("security", [])),
                    "parameters": params,
                    "body": ", ".join(body),
                    "responses": [
                        (code, _resolve(doc, r).get("description", "")) for code, r in op.get("responses", {}).items()
                    ],
                }
            )
    return out


def _resolve(doc: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    ref = obj.get("$ref")
    if not ref:
        return obj
    node: Any = doc
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The document; behind the login like the API it describes."""
    return jsonify(document())


@bp.get("/docs")
def docs() -> str:
    """The operations as a plain page (no CDN, no script): method, path, parameters, answers."""
    doc = document()
    return render_template("api_docs.html", doc=doc, ops=operations(doc))
