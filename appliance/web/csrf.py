"""CSRF protection: a per-session token on every state-changing request.

Forms carry it as the hidden field ``csrf_token`` (``{{ csrf_field() }}``), JavaScript as the
``X-CSRF-Token`` header (read from ``<meta name="csrf-token">``). A request from another
site's page also fails the Origin check when the browser sends one. SameSite=Strict cookies
already stop most cross-site posts; the token covers browsers and paths where they do not.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, render_template, request, session
from markupsafe import Markup, escape

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
#: endpoints that must work without a token (none today; kept explicit)
EXEMPT: set[str] = set()


def csrf_token() -> str:
    """This session's token, created on first use (the login form gets one too)."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_field() -> Markup:
    return Markup(f'<input type="hidden" name="csrf_token" value="{escape(csrf_token())}">')


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(csrf_token=csrf_token, csrf_field=csrf_field)
    # before the login hook: a forged post is refused before anything else looks at it
    app.before_request_funcs.setdefault(None, []).insert(0, check_csrf)


def _origin_ok() -> bool:
    origin = request.headers.get("Origin")
    # not every browser sends one on a same-origin form post. Our Referrer-Policy is same-origin
    # (no-referrer would make Chromium send "Origin: null" on every form post, per the Fetch
    # spec), so "null" here means a sandboxed or opaque origin: refused.
    if not origin:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.host


def check_csrf() -> Response | tuple[str | Response, int] | None:
    if request.method not in UNSAFE or request.endpoint in EXEMPT:
        return None
    if not _origin_ok():
        return _refuse("the request came from another site (Origin does not match)")
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    expected = session.get("csrf")
    if not sent or not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        return _refuse("the form's security token is missing or out of date: reload the page and try again")
    return None


def _refuse(reason: str) -> tuple[str | Response, int]:
    if request.path.startswith("/api/") or request.headers.get("X-CSRF-Token") is not None:
        return jsonify(error=f"CSRF check failed: {reason}"), 400
    return render_template("error.html", code=400, title="Bad request", message=f"Refused: {reason}."), 400
