"""The web UI served for real: `python -m appliance web --config <tmp>/faxbridge.toml` (the entry
point systemd runs) under cheroot on a loopback port, and a small HTTP client with a cookie jar
that plays the browser (no redirects followed, every status returned)."""

from __future__ import annotations

import http.client
import re
import ssl
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from appliance.web.auth import AdminStore
from tests.conftest import free_port
from tests.budgets import LOADED

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class ServedUI:
    workdir: Path
    https: bool = False
    #: more configuration lines for the [web] section
    web_extra: str = ""
    port: int = field(default_factory=lambda: free_port("tcp"))
    cookies: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.workdir / "faxbridge.toml"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "web"

    def start(self, *, password: str | None = PASSWORD, stdin: int | None = subprocess.DEVNULL,
              timeout: float = LOADED) -> "ServedUI":
        """Start the process (with the administrator password already set unless None) and wait
        until it answers."""
        self.config.write_text(f'[spool]\ndir = "spool"\n[web]\nlisten = "127.0.0.1:{self.port}"\n'
                               f'https = {str(self.https).lower()}\n{self.web_extra}\n')
        if password:
            AdminStore(self.state_dir).set_password(password)
        self.log = (self.workdir / "web.out").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "web", "--config", str(self.config),
                                      "--state-dir", str(self.workdir)],
                                     cwd=REPO, stdin=stdin, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"web process exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise AssertionError(f"the web UI did not answer within {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        path = self.workdir / "web.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(LOADED)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self) -> "ServedUI":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the browser ----------------------------------------------------------------------------
    def tls_context(self) -> ssl.SSLContext:
        """Trusts the certificate the box generated on its first start."""
        return ssl.create_default_context(cafile=str(self.state_dir / "tls" / "cert.pem"))

    def connection(self, timeout: float = LOADED) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls_context())
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                *, timeout: float = LOADED, cookies: bool = True) -> Reply:
        sent = dict(headers or {})
        if cookies and self.cookies:
            sent["Cookie"] = self.cookie_header()
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            r = conn.getresponse()
            reply = Reply(r.status, r.headers, r.read())
        finally:
            conn.close()
        if cookies:
            for value in reply.headers.get_all("Set-Cookie") or []:
                jar = SimpleCookie(value)
                for name, morsel in jar.items():
                    self.cookies[name] = morsel.value
        return reply

    def csrf(self, path: str = "/login") -> str:
        page = self.request("GET", path).text
        m = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert m, page[:500]
        return m.group(1)

    def post_form(self, path: str, fields: dict[str, Any], **kw: Any) -> Reply:
        body = urllib.parse.urlencode(fields).encode()
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"}, **kw)

    def post_files(self, path: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]],
                   **kw: Any) -> Reply:
        """A multipart/form-data post, as a browser's file upload sends it."""
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                  f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n"
                  for k, (name, data) in files.items()]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}, **kw)

    def login(self, password: str = PASSWORD) -> Reply:
        r = self.post_form("/login", {"password": password, "csrf_token": self.csrf("/login")})
        assert r.status == 302, (r.status, r.text[:500])
        return r
