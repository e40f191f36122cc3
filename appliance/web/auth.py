"""One administrator: the password (argon2id), the session, the login page and its rate limit.

There is no default password anywhere: until one is set, every page leads to ``/setup``. The
hash lives in ``web.state_dir/admin.json`` (0600); a password change bumps a stamp kept in the
file and in each session, so every other session ends with it. Sessions are Flask's signed
cookies with a key generated on first start (``session.key``, 0600).

Failed logins are limited per client address and in total, so guessing is slow and a flood
cannot keep the box's CPU busy with argon2.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import (Blueprint, Flask, Response, current_app, flash, jsonify, redirect, render_template,
                   request, session, url_for)

from appliance.fsutil import write_atomic

bp = Blueprint("auth", __name__)

#: endpoints anyone may reach (the login itself, static files, liveness)
PUBLIC_ENDPOINTS = {"auth.login", "static", "healthz"}
MIN_PASSWORD = 10
#: per client address: this many failures within WINDOW seconds, then wait
MAX_FAILURES = 5
WINDOW = 300.0
#: for all clients together, so a distributed guesser cannot make argon2 hog the CPU
MAX_FAILURES_TOTAL = 30

_hasher = PasswordHasher()  # argon2id with the library's current defaults


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file atomically with mode 0600 (never readable by others, even briefly),
    in a directory only the service user can enter."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, data, 0o600)


class AdminStore:
    """The administrator's password hash and the session key, in the web state directory."""

    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)
        self.file = self.dir / "admin.json"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise RuntimeError(f"{self.file}: unreadable ({e}); restore it or delete it to set a new "
                               "password") from None
        return data if isinstance(data, dict) else {}

    def has_password(self) -> bool:
        return bool(self._read().get("hash"))

    def stamp(self) -> str:
        return str(self._read().get("stamp", ""))

    def set_password(self, password: str) -> str:
        """Hash and store a new password; returns the new stamp (other sessions end)."""
        problem = password_problem(password)
        if problem:
            raise ValueError(problem)
        stamp = secrets.token_hex(8)
        record = {"hash": _hasher.hash(password), "stamp": stamp, "changed": time.time()}
        write_private(self.file, json.dumps(record).encode())
        return stamp

    def verify(self, password: str) -> bool:
        record = self._read()
        stored = record.get("hash")
        if not stored:
            return False
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        if _hasher.check_needs_rehash(stored):  # argon2 parameters raised by a library update
            record["hash"] = _hasher.hash(password)
            write_private(self.file, json.dumps(record).encode())
        return True

    def session_key(self) -> bytes:
        """The cookie-signing key, created on first use."""
        path = self.dir / "session.key"
        try:
            key = path.read_bytes()
            if len(key) >= 32:
                return key
        except FileNotFoundError:
            pass
        key = secrets.token_bytes(32)
        write_private(path, key)
        return key


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None."""
    if len(password) < MIN_PASSWORD:
        return f"The password must have at least {MIN_PASSWORD} characters."
    if len(set(password)) < 4:
        return "The password needs more different characters."
    if len(password) > 1024:
        return "The password is too long (at most 1024 characters)."
    return None


@dataclass
class LoginLimiter:
    """Failed logins per address within a sliding window (in memory: a restart forgets)."""

    failures: dict[str, deque[float]] = field(default_factory=dict)
    total: deque[float] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - WINDOW:
            q.popleft()

    def wait(self, addr: str, now: float | None = None) -> float:
        """Seconds this address must wait before the next attempt (0 = go ahead)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            q = self.failures.get(addr, deque())
            self._trim(q, now)
            self._trim(self.total, now)
            waits = [0.0]
            if len(q) >= MAX_FAILURES:
                waits.append(q[0] + WINDOW - now)
            if len(self.total) >= MAX_FAILURES_TOTAL:
                waits.append(self.total[0] + WINDOW - now)
            return max(waits)

    def failed(self, addr: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self.lock:
            self.failures.setdefault(addr, deque()).append(now)
            self.total.append(now)
            if len(self.failures) > 10000:  # bounded memory under a spray of addresses
                self.failures.pop(next(iter(self.failures)))

    def succeeded(self, addr: str) -> None:
        with self.lock:
            self.failures.pop(addr, None)


def store() -> AdminStore:
    return current_app.extensions["faxbridge_admin"]


def limiter() -> LoginLimiter:
    return current_app.extensions["faxbridge_login_limiter"]


def init_app(app: Flask, state_dir: Path, *, https: bool, session_hours: int) -> None:
    """Sessions, the login requirement on every request, and the auth pages."""
    admin = AdminStore(state_dir)
    app.extensions["faxbridge_admin"] = admin
    app.extensions["faxbridge_login_limiter"] = LoginLimiter()
    app.secret_key = admin.session_key()
    app.config.update(SESSION_COOKIE_NAME="faxbridge_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=https,
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=session_hours),
                      SESSION_REFRESH_EACH_REQUEST=True)
    app.before_request(require_login)
    app.register_blueprint(bp)


def logged_in() -> bool:
    return session.get("user") == "admin" and session.get("stamp") == store().stamp()


def _is_api() -> bool:
    return request.path == "/api" or request.path.startswith(("/api/", "/metrics", "/events"))


def require_login() -> Response | None:
    """Before every request: public endpoints pass; without a password, set one; else log in."""
    endpoint = request.endpoint or ""
    if endpoint in PUBLIC_ENDPOINTS:
        return None
    if not store().has_password():
        if endpoint == "auth.setup":
            return None
        if _is_api():
            return _unauthorized("no administrator password is set yet: open the web page to set one")
        return redirect(url_for("auth.setup"))
    if endpoint == "auth.setup":  # set once; changing it needs the current one
        return redirect(url_for("auth.login"))
    if logged_in():
        return None
    if _is_api():
        return _unauthorized("log in first")
    return redirect(url_for("auth.login", next=_safe_next(request.full_path)))


def _unauthorized(message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = 401
    return response


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no '//' trick) may follow a login."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target.rstrip("?") or "/"


def _start_session(stamp: str) -> None:
    session.clear()
    session.permanent = True
    session["user"] = "admin"
    session["stamp"] = stamp
    session["since"] = time.time()


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> Response | str:
    """First start: the administrator password. No default exists, so this is the only way in."""
    error = ""
    if request.method == "POST":
        password = request.form.get("password", "")
        if password != request.form.get("confirm", ""):
            error = "The two passwords differ."
        else:
            try:
                stamp = store().set_password(password)
            except ValueError as e:
                error = str(e)
            else:
                _start_session(stamp)
                nxt = "wizard.start" if "wizard.start" in current_app.view_functions else None
                return redirect(url_for(nxt) if nxt else "/")
    return render_template("setup_password.html", error=error, minimum=MIN_PASSWORD), 400 if error else 200


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if not store().has_password():
        return redirect(url_for("auth.setup"))
    nxt = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if logged_in():
            return redirect(nxt)
        return render_template("login.html", next=nxt, error="")
    addr = request.remote_addr or "?"
    wait = limiter().wait(addr)
    if wait > 0:
        body = render_template("login.html", next=nxt,
                               error=f"Too many failed attempts. Try again in {int(wait) + 1} seconds.")
        return Response(body, 429, headers={"Retry-After": str(int(wait) + 1)})
    if store().verify(request.form.get("password", "")):
        limiter().succeeded(addr)
        _start_session(store().stamp())
        return redirect(nxt)
    limiter().failed(addr)
    return render_template("login.html", next=nxt, error="Wrong password."), 401


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password() -> Response | str | tuple[str, int]:
    """A new password needs the current one; every other session ends."""
    error = ""
    if request.method == "POST":
        addr = request.remote_addr or "?"
        if limiter().wait(addr) > 0:
            error = "Too many failed attempts. Try again later."
        elif not store().verify(request.form.get("current", "")):
            limiter().failed(addr)
            error = "The current password is wrong."
        elif request.form.get("password", "") != request.form.get("confirm", ""):
            error = "The two new passwords differ."
        else:
            try:
                stamp = store().set_password(request.form.get("password", ""))
            except ValueError as e:
                error = str(e)
            else:
                _start_session(stamp)
                flash("Password changed. Other sessions have been logged out.")
                return redirect("/")
    return render_template("change_password.html", error=error, minimum=MIN_PASSWORD), 400 if error else 200


@bp.route("/account/certificate", methods=["GET", "POST"])
def certificate() -> Response | str | tuple[str, int]:
    """The HTTPS certificate: see the one in use, upload the owner's own (PEM certificate + key)."""
    from appliance.web import tls

    config = current_app.config["FAXBRIDGE"]
    state = config.path(config.web.state_dir)
    error = ""
    if request.method == "POST":
        cert_pem = request.files.get("cert")
        key_pem = request.files.get("key")
        data = [f.read(256 * 1024) if f else b"" for f in (cert_pem, key_pem)]
        problem = tls.check_pair(*data) if all(data) else "choose both the certificate and its key"
        if problem:
            error = f"Not installed: {problem}."
        else:
            cert_path, key_path = tls.uploaded_paths(state)
            write_private(key_path, data[1])
            write_private(cert_path, data[0])
            reload = current_app.extensions.get("faxbridge_tls_reload")
            if reload is not None:
                reload(str(cert_path), str(key_path))
            flash("Certificate installed. Browsers see it on their next connection.")
            return redirect(url_for("auth.certificate"))
    if config.web.cert_file:
        in_use = config.path(config.web.cert_file)
        source = "web.cert_file in the configuration"
    else:
        owner, _ = tls.uploaded_paths(state)
        generated, _ = tls.generated_paths(state)
        in_use, source = (owner, "uploaded") if owner.exists() else (generated, "generated on first start")
    info = tls.describe(in_use) if in_use.exists() else None
    return render_template("certificate.html", info=info, source=source, https=config.web.https,
                           error=error), 400 if error else 200
