"""One administrator: the password (argon2id), the session, the login page and its rate limit.

There is no default password anywhere: until one is set, every page leads to ``/setup``, which
also asks for the one-time setup code (web/setupcode.py: on the card's boot partition, the
console, the ``make run`` terminal), so that nobody else on the LAN can choose it first. The
hash lives in ``web.state_dir/admin.json`` (0600). Sessions are Flask's signed cookies with a key
generated on first start (``session.key``, 0600), and each names a session id that admin.json
lists while it lasts: logging out takes it off the list, a password change empties the list, so
a copied cookie dies with the session it was copied from.

Failed logins back off per client address, doubling the wait after a few, and only a few
argon2 checks run at once, so guessing is slow and a flood cannot keep the box's CPU and memory
busy. There is no limit for all addresses together: anyone could use it to lock the owner out.
Before login a request body may be small (the forms are a few hundred bytes).
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from appliance.fsutil import write_private
from appliance.tlskeys import pair_problem
from appliance.web import setupcode

bp = Blueprint("auth", __name__)

#: endpoints anyone may reach (the login itself, static files, liveness)
PUBLIC_ENDPOINTS = {"auth.login", "static", "healthz"}
MIN_PASSWORD = 10
#: per client address: this many failed logins cost nothing (typos); each further one doubles
#: the wait before the next attempt, from FIRST_DELAY up to MAX_DELAY seconds
FREE_FAILURES = 5
FIRST_DELAY = 1.0
MAX_DELAY = 15 * 60.0
#: an address is forgotten this long after its last failed login
FORGET_AFTER = 24 * 3600.0
#: addresses remembered at most; beyond, the one that failed least recently goes
MAX_ADDRESSES = 4096
#: argon2 checks at once (each takes 64 MiB and a core for ~0.1 s); one more waits BUSY_WAIT
#: seconds for a turn, then is answered 503
MAX_CHECKS = 2
BUSY_WAIT = 3.0
#: a session's last use is written to admin.json at most this often
SESSION_TOUCH = 600.0
#: sessions listed at most; beyond, the one used least recently ends
MAX_SESSIONS = 64
#: request bodies before login (the login and first-password forms are a few hundred bytes) and
#: after it (the largest upload: a configuration backup of 1 MiB, in a multipart form)
ANONYMOUS_MAX_BYTES = 16 * 1024
LOGGED_IN_MAX_BYTES = 2 * 1024 * 1024

_hasher = PasswordHasher()  # argon2id with the library's current defaults


class Busy(Exception):
    """Every argon2 slot stayed taken for BUSY_WAIT seconds: the request may try again shortly."""

    def __str__(self) -> str:
        return "The box is busy checking other passwords. Try again in a few seconds."


class AdminStore:
    """The administrator's password hash, the live sessions and the session key, in the web
    state directory."""

    def __init__(self, state_dir: Path, *, session_lifetime: float = 12 * 3600.0):
        self.dir = Path(state_dir)
        self.file = self.dir / "admin.json"
        self.session_lifetime = session_lifetime
        self.busy_wait = BUSY_WAIT
        self._checks = threading.BoundedSemaphore(MAX_CHECKS)
        self._lock = threading.RLock()  # read-modify-write of admin.json

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise RuntimeError(
                f"{self.file}: unreadable ({e}); restore it or delete it to set a new password"
            ) from None
        return data if isinstance(data, dict) else {}

    def _write(self, record: dict[str, Any]) -> None:
        write_private(self.file, json.dumps(record).encode())

    @contextmanager
    def check_slot(self) -> Iterator[None]:
        """One of the MAX_CHECKS argon2 turns; Busy when none frees up within ``busy_wait``."""
        if not self._checks.acquire(timeout=self.busy_wait):
            raise Busy()
        try:
            yield
        finally:
            self._checks.release()

    def has_password(self) -> bool:
        return bool(self._read().get("hash"))

    def stamp(self) -> str:
        return str(self._read().get("stamp", ""))

    def set_password(self, password: str) -> str:
        """Hash and store a new password; returns the new stamp. Every session ends with it."""
        problem = password_problem(password)
        if problem:
            raise ValueError(problem)
        with self.check_slot():
            hashed = _hasher.hash(password)
        stamp = secrets.token_hex(8)
        with self._lock:
            self._write({"hash": hashed, "stamp": stamp, "changed": time.time(), "sessions": {}})
        return stamp

    def verify(self, password: str) -> bool:
        """True for the administrator's password; Busy when the box is checking too many already."""
        stored = self._read().get("hash")
        if not stored:
            return False
        with self.check_slot():
            try:
                _hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return False
            rehashed = _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None
        if rehashed:  # argon2 parameters raised by a library update
            with self._lock:
                record = self._read()
                if record.get("hash") == stored:
                    record["hash"] = rehashed
                    self._write(record)
        return True

    # -- sessions -------------------------------------------------------------------------------
    def open_session(self, now: float | None = None) -> str:
        """A new session id, listed as live (the dead and the least recently used beyond
        MAX_SESSIONS leave the list)."""
        now = time.time() if now is None else now
        sid = secrets.token_urlsafe(24)
        with self._lock:
            record = self._read()
            live = _sessions(record)
            live = {k: t for k, t in live.items() if t > now - self.session_lifetime - SESSION_TOUCH}
            live[sid] = now
            record["sessions"] = dict(sorted(live.items(), key=lambda kv: kv[1])[-MAX_SESSIONS:])
            self._write(record)
        return sid

    def session_alive(self, sid: object, stamp: object, now: float | None = None) -> bool:
        """Whether a cookie's session id is still listed (under the current password), noting its
        use every SESSION_TOUCH seconds so that a session in use is never pruned."""
        if not isinstance(sid, str) or not sid:
            return False
        record = self._read()
        seen = _sessions(record).get(sid)
        if seen is None or stamp != str(record.get("stamp", "")):
            return False
        now = time.time() if now is None else now
        if now - seen > SESSION_TOUCH:
            with self._lock:
                record = self._read()
                if sid in _sessions(record):
                    record["sessions"][sid] = now
                    self._write(record)
        return True

    def close_session(self, sid: object) -> None:
        """The session ends here: its cookie, wherever a copy of it is, is refused from now on."""
        if not isinstance(sid, str):
            return
        with self._lock:
            record = self._read()
            if sid in _sessions(record):
                del record["sessions"][sid]
                self._write(record)

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


def _sessions(record: dict[str, Any]) -> dict[str, float]:
    live = record.get("sessions")
    if not isinstance(live, dict):
        live = record["sessions"] = {}
    return live


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
class _Failures:
    count: int
    last: float


class LoginLimiter:
    """Failed logins per client address with an exponential back-off, in bounded memory (a
    restart forgets). ``now`` is time.monotonic() unless given."""

    def __init__(self, max_addresses: int = MAX_ADDRESSES) -> None:
        self.max_addresses = max_addresses
        #: least recently failed first
        self._table: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def delay(failures: int) -> float:
        """The wait after ``failures`` failed logins in a row."""
        if failures < FREE_FAILURES:
            return 0.0
        return min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(failures - FREE_FAILURES, 64))

    def wait(self, addr: str, now: float | None = None) -> float:
        """Seconds this address must wait before the next attempt (0 = go ahead)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            rec = self._table.get(addr)
            if rec is None:
                return 0.0
            return max(0.0, rec.last + self.delay(rec.count) - now)

    def failed(self, addr: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._table:  # forget addresses quiet for a day (the oldest are at the front)
                first = next(iter(self._table.values()))
                if first.last > now - FORGET_AFTER:
                    break
                self._table.popitem(last=False)
            rec = self._table.pop(addr, None) or _Failures(0, now)
            rec.count, rec.last = rec.count + 1, now
            self._table[addr] = rec
            while len(self._table) > self.max_addresses:
                self._table.popitem(last=False)

    def succeeded(self, addr: str) -> None:
        with self._lock:
            self._table.pop(addr, None)

    def __len__(self) -> int:
        return len(self._table)


def store() -> AdminStore:
    return current_app.extensions["faxbridge_admin"]


def limiter() -> LoginLimiter:
    return current_app.extensions["faxbridge_login_limiter"]


def init_app(app: Flask, state_dir: Path, *, https: bool, session_hours: int) -> None:
    """Sessions, the login requirement on every request, and the auth pages."""
    admin = AdminStore(state_dir, session_lifetime=session_hours * 3600.0)
    app.extensions["faxbridge_admin"] = admin
    app.extensions["faxbridge_login_limiter"] = LoginLimiter()
    if not admin.has_password():
        setupcode.ensure(admin.dir)  # never a first-start page without a code
    app.secret_key = admin.session_key()
    app.request_class = BoundedRequest
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.config.update(
        SESSION_COOKIE_NAME="faxbridge_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=https,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=session_hours),
        SESSION_REFRESH_EACH_REQUEST=True,
    )
    app.before_request(require_login)
    app.context_processor(lambda: {"boot_problems": boot_problems(admin.dir)})
    app.register_blueprint(bp)


#: what the last boot's ``faxbridge firstboot`` found wrong in faxbridge.txt (firstboot/run.py)
BOOT_PROBLEMS = "faxbridge-txt-problems.json"


def boot_problems(state_dir: Path) -> list[str]:
    """faxbridge.txt's problems at the last boot, shown on every page until the file is fixed."""
    try:
        data = json.loads((Path(state_dir) / BOOT_PROBLEMS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(p)[:300] for p in data[:20]] if isinstance(data, list) else []


def logged_in() -> bool:
    return session.get("user") == "admin" and store().session_alive(session.get("sid"), session.get("stamp"))


class BoundedRequest(Request):
    """A request whose body may be ANONYMOUS_MAX_BYTES before login and LOGGED_IN_MAX_BYTES
    after, decided when the body is first read (the CSRF check reads the form before any view),
    so that nobody without the password can make the box buffer a large upload."""

    _limit: int | None = None

    @property
    def max_content_length(self) -> int:
        if self._limit is None:
            self._limit = body_limit(self.endpoint) if logged_in() else ANONYMOUS_MAX_BYTES
        return self._limit

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        """A view may set its own limit, as Flask 3.1 allows; None gives back the limit above
        (never no limit, as it would in Flask)."""
        self._limit = value

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        """A file part of a large upload goes to a temporary file in its own directory on the
        data partition, not to /tmp (RAM on the appliance)."""
        large = LARGE_BODIES.get(self.endpoint or "")
        if large is not None:
            where = large[1]()
            where.mkdir(parents=True, exist_ok=True, mode=0o700)
            return tempfile.TemporaryFile("wb+", dir=where)
        return super()._get_file_stream(total_content_length, content_type, filename, content_length)


#: endpoints that take a larger body after login (an update bundle): endpoint -> (most bytes, the
#: directory a multipart file part is spooled to); registered by the blueprint that owns them
LARGE_BODIES: dict[str, tuple[int, Callable[[], Path]]] = {}


def body_limit(endpoint: str | None) -> int:
    """The most a logged-in request to ``endpoint`` may send."""
    large = LARGE_BODIES.get(endpoint or "")
    return large[0] if large is not None else LOGGED_IN_MAX_BYTES


def largest_body() -> int:
    """What the HTTP server itself lets through; the app then holds each endpoint to its own."""
    return max([LOGGED_IN_MAX_BYTES] + [limit for limit, _ in LARGE_BODIES.values()])


def too_large(e: RequestEntityTooLarge) -> tuple[Response | str, int]:
    """413 saying what the limit is, JSON for the API, a page for people."""
    limit = body_limit(request.endpoint) if logged_in() else ANONYMOUS_MAX_BYTES
    size = f"{limit // (1024 * 1024)} MB" if limit >= 16 * 1024 * 1024 else f"{limit // 1024} KiB"
    message = f"The request is larger than {size}, the most this box accepts" + (
        "." if limit != ANONYMOUS_MAX_BYTES else " before login."
    )
    if _is_api():
        return jsonify(error=message), 413
    return render_template("error.html", code=413, title="Request too large", message=message), 413


def _is_api() -> bool:
    return request.path == "/api" or request.path.startswith(("/api/", "/metrics", "/events"))


def require_login() -> ResponseReturnValue | None:
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
    """A fresh session (a new id: nothing of a cookie from before the login carries over)."""
    session.clear()
    session.permanent = True
    session["user"] = "admin"
    session["sid"] = store().open_session()
    session["stamp"] = stamp
    session["since"] = time.time()


def _busy(template: str, **ctx: Any) -> Response:
    """Every argon2 turn is taken: 503, saying so and when to come back."""
    return Response(render_template(template, error=str(Busy()), **ctx), 503, headers={"Retry-After": "5"})


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> ResponseReturnValue:
    """First start: the administrator password, with the setup code that proves the box is in
    the owner's hands. No default exists, so this is the only way in."""
    error = ""
    code = setupcode.ensure(store().dir)
    if request.method == "POST":
        addr = request.remote_addr or "?"
        wait = limiter().wait(addr)
        password = request.form.get("password", "")
        if wait > 0:
            body = render_template(
                "setup_password.html",
                minimum=MIN_PASSWORD,
                error=f"Too many wrong setup codes. Try again in {int(wait) + 1} seconds.",
            )
            return Response(body, 429, headers={"Retry-After": str(int(wait) + 1)})
        if not setupcode.matches(request.form.get("setup_code", ""), code):
            limiter().failed(addr)
            return render_template(
                "setup_password.html",
                minimum=MIN_PASSWORD,
                error="The setup code is wrong. It is in setup-code.txt on the card's boot "
                "partition, on the box's screen, or in the terminal of make run.",
            ), 403
        limiter().succeeded(addr)
        if password != request.form.get("confirm", ""):
            error = "The two passwords differ."
        else:
            try:
                stamp = store().set_password(password)
            except Busy:
                return _busy("setup_password.html", minimum=MIN_PASSWORD)
            except ValueError as e:
                error = str(e)
            else:
                setupcode.void(store().dir)
                _start_session(stamp)
                nxt = "wizard.start" if "wizard.start" in current_app.view_functions else None
                return redirect(url_for(nxt) if nxt else "/")
    return render_template("setup_password.html", error=error, minimum=MIN_PASSWORD), 400 if error else 200


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
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
        body = render_template(
            "login.html", next=nxt, error=f"Too many failed attempts. Try again in {int(wait) + 1} seconds."
        )
        return Response(body, 429, headers={"Retry-After": str(int(wait) + 1)})
    try:
        right = store().verify(request.form.get("password", ""))
    except Busy:
        return _busy("login.html", next=nxt)
    if right:
        limiter().succeeded(addr)
        _start_session(store().stamp())
        return redirect(nxt)
    limiter().failed(addr)
    return render_template("login.html", next=nxt, error="Wrong password."), 401


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    store().close_session(session.get("sid"))
    session.clear()
    flash("You are logged out.")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password() -> ResponseReturnValue:
    """A new password needs the current one; every other session ends."""
    error = ""
    if request.method == "POST":
        try:
            error = _change_password(request.remote_addr or "?")
        except Busy:
            return _busy("change_password.html", minimum=MIN_PASSWORD)
        if not error:
            flash("Password changed. Other sessions have been logged out.")
            return redirect("/")
    return render_template("change_password.html", error=error, minimum=MIN_PASSWORD), 400 if error else 200


def _change_password(addr: str) -> str:
    """What is wrong with the submitted form, or "" once the new password is set (this browser
    gets a new session; every other one has ended)."""
    if limiter().wait(addr) > 0:
        return "Too many failed attempts. Try again later."
    if not store().verify(request.form.get("current", "")):
        limiter().failed(addr)
        return "The current password is wrong."
    if request.form.get("password", "") != request.form.get("confirm", ""):
        return "The two new passwords differ."
    try:
        stamp = store().set_password(request.form.get("password", ""))
    except ValueError as e:
        return str(e)
    _start_session(stamp)
    return ""


@bp.route("/account/certificate", methods=["GET", "POST"])
def certificate() -> ResponseReturnValue:
    """The HTTPS certificate: see the one in use, upload the owner's own (PEM certificate + key)."""
    from appliance.web import tls

    config = current_app.config["FAXBRIDGE"]
    state = config.path(config.web.state_dir)
    error = ""
    if request.method == "POST":
        cert_pem = request.files.get("cert")
        key_pem = request.files.get("key")
        data = [f.read(256 * 1024) if f else b"" for f in (cert_pem, key_pem)]
        problem = pair_problem(*data) if all(data) else "choose both the certificate and its key"
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
    return render_template(
        "certificate.html", info=info, source=source, https=config.web.https, error=error
    ), 400 if error else 200
