"""serve() for real: waitress on a loopback port in a child process, fetched over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from webfax import STANDARD, T0, add_fax

from appliance.config import Config, parse_hostport
from appliance.spool.store import Spool
from appliance.web.server import is_loopback

REPO = Path(__file__).resolve().parents[2]


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_serve_answers_over_http(tmp_path: Path) -> None:
    port = free_loopback_port()
    (tmp_path / "faxbridge.toml").write_text(f'[web]\nlisten = "127.0.0.1:{port}"\n'
                                             '[spool]\ndir = "spool"\n')
    with Spool(tmp_path / "spool") as spool:
        fax = add_fax(spool, T0, dpis=[STANDARD, STANDARD], caller_number="+4930555")
    code = ("import sys; from appliance.config import Config; from appliance.web.server import serve;"
            "serve(Config.load(sys.argv[1]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "faxbridge.toml")],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/healthz", proc)
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            assert (r.status, r.read()) == (200, b"ok")
        with urllib.request.urlopen(base + "/", timeout=5) as r:
            body = r.read().decode()
            assert r.status == 200 and r.headers["X-Frame-Options"] == "DENY"
            assert "+4930555" in body and f"/faxes/{fax.id}/pages/1.png?size=thumb" in body
        with urllib.request.urlopen(f"{base}/faxes/{fax.id}/pages/2.png?size=thumb", timeout=10) as r:
            assert r.headers["Content-Type"] == "image/png" and r.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


def test_default_listen_address_is_loopback() -> None:
    host, _ = parse_hostport(Config().web.listen, 8080)
    assert is_loopback(host)


def test_is_loopback() -> None:
    assert all(map(is_loopback, ("127.0.0.1", "127.1.2.3", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.168.1.10", "fax.example.com", "")))
