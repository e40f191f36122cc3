"""`make run`'s terminal stays readable: what browsers do every day is not logged as an error.

The web process served for real over HTTPS, its output captured: browsers that do not trust the
self-signed certificate yet abandon the handshake, dashboard tabs close while their live stream
(server-sent events) is open.  Neither may print a traceback or a handshake warning; a real
error in the server still does.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import time
from pathlib import Path

import pytest
from served import ServedUI

from appliance.config import Config
from appliance.web.server import build_server


def _untrusting_browser(port: int) -> None:
    """A client that checks the certificate against the system store, as a browser does before
    the owner accepts it: the handshake ends with its alert."""
    ctx = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _hello_then_gone(port: int) -> None:
    """A client that starts a handshake and resets the connection half-way."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(outgoing.read())
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN


def _stream_then_close(ui: ServedUI, *, reset: bool) -> None:
    """A dashboard tab: the live stream opens, an event arrives, the tab closes."""
    conn = ui.connection()
    conn.request("GET", "/events", headers={"Cookie": ui.cookie_header(), "Accept": "text/event-stream"})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream")
    assert b"event: status" in r.read1(4096) + r.read1(4096)
    if reset:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.sock.close()


@pytest.mark.slow
def test_abandoned_handshakes_and_closed_streams_leave_no_traceback_or_warning(tmp_path: Path) -> None:
    with ServedUI(tmp_path, https=True) as ui:
        ui.start()
        for _ in range(3):
            _untrusting_browser(ui.port)
            _hello_then_gone(ui.port)
        ui.login()
        _stream_then_close(ui, reset=False)
        _stream_then_close(ui, reset=True)
        time.sleep(3.5)  # the stream writes every second: the next writes meet the closed sockets
        assert ui.request("GET", "/healthz").status == 200  # and the server serves on
        out = ui.log_text()
    assert "web UI on https://" in out
    for noise in ("Traceback", "ALERT", "during handshake", "socket.error", "SSLEOFError", "lost"):
        assert noise not in out, out


def test_a_real_server_error_is_still_logged_with_its_traceback(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    server, _ = build_server(Config.from_dict({"web": {"https": False}}, base_dir=tmp_path))
    caplog.set_level(logging.DEBUG, logger="faxbridge.web")
    try:
        raise ValueError("a bug in a request handler")
    except ValueError:
        server.error_log("ValueError('a bug in a request handler')", level=logging.ERROR, traceback=True)
    try:
        raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    except ssl.SSLEOFError:
        server.error_log("socket.error 8", level=logging.WARNING, traceback=True)
    server.error_log("Client ('127.0.0.1', 5) lost — peer dropped the TLS connection suddenly, during "
                     "handshake: (1, '[SSL: SSLV3_ALERT_CERTIFICATE_UNKNOWN] sslv3 alert certificate unknown')")
    bug = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(bug) == 1 and bug[0].exc_info is not None and bug[0].exc_info[0] is ValueError
    quiet = [r for r in caplog.records if r.levelno < logging.INFO]
    assert len(quiet) == 2 and all(r.exc_info is None for r in quiet)
