"""serve() for real: cheroot on a loopback port in a child process, over HTTPS with the generated
certificate, through the first-start password page."""

from __future__ import annotations

import http.cookiejar
import re
import socket
import ssl
import urllib.parse
import subprocess
import sys
import threading
import time
import warnings
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from webfax import STANDARD, T0, add_fax

from appliance.config import Config, parse_hostport
from appliance.spool.store import Spool
from appliance.web.server import build_server, is_loopback
from tests.budgets import LOADED

REPO = Path(__file__).resolve().parents[2]


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen[bytes], ctx: ssl.SSLContext | None = None,
             timeout: float = LOADED) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(url, timeout=LOADED, context=ctx):
                return
        except (urllib.error.URLError, ConnectionError, ssl.SSLError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_serve_answers_over_https_with_its_generated_certificate_and_login(tmp_path: Path) -> None:
    port = free_loopback_port()
    (tmp_path / "faxbridge.toml").write_text(f'[web]\nlisten = "127.0.0.1:{port}"\n'
                                             '[spool]\ndir = "spool"\n')
    with Spool(tmp_path / "spool") as spool:
        fax = add_fax(spool, T0, dpis=[STANDARD, STANDARD], caller_number="+4930555")
    code = ("import sys; from appliance.config import Config; from appliance.web.server import serve;"
            "serve(Config.load(sys.argv[1]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "faxbridge.toml")],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"https://127.0.0.1:{port}"
    cert = tmp_path / "web" / "tls" / "cert.pem"  # web.state_dir in the state directory ($FAXBRIDGE_STATE_DIR)
    try:
        deadline = time.monotonic() + LOADED
        while not cert.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        # the generated certificate itself is the trust anchor: it names 127.0.0.1
        ctx = ssl.create_default_context(cafile=str(cert))
        wait_for(base + "/healthz", proc, ctx)
        assert oct(cert.with_name("key.pem").stat().st_mode & 0o777) == "0o600"
        jar = http.cookiejar.CookieJar()
        https = urllib.request.HTTPSHandler(context=ctx)
        browser = urllib.request.build_opener(https, urllib.request.HTTPCookieProcessor(jar))
        plain = urllib.request.build_opener(https, _NoRedirect)
        with urllib.request.urlopen(base + "/healthz", timeout=LOADED, context=ctx) as r:
            assert (r.status, r.read()) == (200, b"ok")
        # a new box: every page leads to setting the password
        try:
            plain.open(base + "/faxes", timeout=LOADED)
        except urllib.error.HTTPError as e:
            assert e.code == 302 and e.headers["Location"].endswith("/setup")
        else:
            raise AssertionError("an empty box must redirect to /setup")
        with browser.open(base + "/setup", timeout=LOADED) as r:
            token = re.search(r'name="csrf-token" content="([^"]+)"', r.read().decode()).group(1)
        from appliance.web import setupcode

        code = setupcode.read(tmp_path / "web")  # the owner reads it on the card or the console
        form = urllib.parse.urlencode({"password": "s3cure-enough-pw", "confirm": "s3cure-enough-pw",
                                       "setup_code": code, "csrf_token": token}).encode()
        with browser.open(base + "/setup", data=form, timeout=LOADED) as r:
            assert r.status == 200
        (cookie,) = [c for c in jar if c.name == "faxbridge_session"]
        assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
        with browser.open(base + "/faxes", timeout=LOADED) as r:
            body = r.read().decode()
            assert r.status == 200 and r.headers["X-Frame-Options"] == "DENY"
            assert "+4930555" in body and f"/faxes/{fax.id}/pages/1.png?size=thumb" in body
        with browser.open(f"{base}/faxes/{fax.id}/pages/2.png?size=thumb", timeout=LOADED) as r:
            assert r.headers["Content-Type"] == "image/png" and r.read(8) == b"\x89PNG\r\n\x1a\n"
        # TLS 1.1 is refused by the server itself, not only by Debian's client defaults
        assert_refuses_tls_1_1(port, cert)
    finally:
        proc.terminate()
        proc.wait(timeout=LOADED)
        proc.stderr.close()


def tls_1_1_client(cafile: Path) -> ssl.SSLContext:
    """A client that speaks TLS 1.1 only, at OpenSSL security level 0: Debian's defaults
    (MinProtocol and CipherString @SECLEVEL=2 in /etc/ssl/openssl.cnf) would refuse it on the
    client side and hide what the server allows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 is, on purpose
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def tls_1_1_server(cert: Path, key: Path) -> tuple[socket.socket, threading.Thread]:
    """A throwaway server that allows TLS 1.1 (one connection), to prove the client can speak it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(LOADED)
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def assert_refuses_tls_1_1(port: int, cert: Path) -> None:
    client = tls_1_1_client(cert)
    listener, thread = tls_1_1_server(cert, cert.with_name("key.pem"))
    try:
        with socket.create_connection(listener.getsockname(), timeout=LOADED) as raw:
            with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.1"  # this client can, where a server allows it
    finally:
        thread.join(LOADED)
        listener.close()
    with socket.create_connection(("127.0.0.1", port), timeout=LOADED) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            client.wrap_socket(raw, server_hostname="127.0.0.1")
    # the server said no to the version (an alert), not some other failure
    assert refused.value.reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"), refused.value


def test_the_server_context_allows_tls_1_2_and_newer_only(tmp_path: Path) -> None:
    cfg = Config.from_dict({"web": {"listen": f"127.0.0.1:{free_loopback_port()}"}, "spool": {"dir": "spool"}},
                           base_dir=tmp_path)
    server, url = build_server(cfg)
    assert url.startswith("https://")
    assert server.ssl_adapter.context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_default_listen_address_is_loopback() -> None:
    host, _ = parse_hostport(Config().web.listen, 8080)
    assert is_loopback(host)


def test_is_loopback() -> None:
    assert all(map(is_loopback, ("127.0.0.1", "127.1.2.3", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.168.1.10", "fax.example.com", "")))
