"""The control socket: a real Unix socket, real JSON lines, malformed input, and the real daemon."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.control import MAX_REQUEST, ControlClient, ControlError, ControlServer, DaemonUnavailable
from tests.control.harness import DaemonProcess, ServerThread, short_dir
from tests.budgets import LOADED


@pytest.fixture
def sockdir() -> Iterator[Path]:
    d = short_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def _status(req: dict[str, Any]) -> dict[str, Any]:
    return {"echo": req.get("x"), "lines": []}


async def _broken(req: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("handler bug")


async def _refuses(req: dict[str, Any]) -> dict[str, Any]:
    return {"ok": False, "error": "not now"}


HANDLERS = {"status": _status, "broken": _broken, "refuses": _refuses}


def raw(path: Path, payload: bytes, *, replies: int = 1) -> list[dict[str, Any]]:
    """Send bytes as they are and read ``replies`` reply lines."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(LOADED)
        s.connect(str(path))
        s.sendall(payload)
        buf = b""
        while buf.count(b"\n") < replies:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


def test_request_and_reply(sockdir: Path) -> None:
    path = sockdir / "fb.sock"
    with ServerThread(path, HANDLERS):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reply = ControlClient(path, LOADED).request({"cmd": "status", "x": "<b>hi</b>"})
        assert reply == {"ok": True, "echo": "<b>hi</b>", "lines": []}
        assert ControlClient(path, LOADED).request({"cmd": "refuses"}) == {"ok": False, "error": "not now"}
    assert not path.exists()  # removed at close


@pytest.mark.parametrize("payload,error", [
    (b"not json\n", "not a JSON object"),
    (b"[1, 2]\n", "a request is a JSON object"),
    (b"{}\n", "no \"cmd\""),
    (b'{"cmd": 5}\n', "no \"cmd\""),
    (b'{"cmd": "format-disk"}\n', "unknown command 'format-disk'"),
    (b"\xff\xfe{\n", "not a JSON object"),
    (b'{"cmd": "broken"}\n', "broken failed: RuntimeError: handler bug"),
])
def test_malformed_requests_get_errors_and_the_server_goes_on(sockdir: Path, payload: bytes, error: str) -> None:
    path = sockdir / "fb.sock"
    with ServerThread(path, HANDLERS):
        (reply,) = raw(path, payload)
        assert reply["ok"] is False and error in reply["error"], reply
        assert ControlClient(path, LOADED).request({"cmd": "status"})["ok"] is True


def test_several_requests_on_one_connection_and_blank_lines(sockdir: Path) -> None:
    path = sockdir / "fb.sock"
    with ServerThread(path, HANDLERS):
        replies = raw(path, b'{"cmd": "status", "x": 1}\n\n{"cmd": "nope"}\n{"cmd": "status", "x": 3}\n', replies=3)
        assert [r["ok"] for r in replies] == [True, False, True]
        assert replies[0]["echo"] == 1 and replies[2]["echo"] == 3


def test_oversized_request_is_refused_and_the_connection_closed(sockdir: Path) -> None:
    path = sockdir / "fb.sock"
    with ServerThread(path, HANDLERS):
        huge = b'{"cmd": "status", "x": "' + b"a" * (MAX_REQUEST * 2) + b'"}\n'
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(LOADED)
            s.connect(str(path))
            try:
                s.sendall(huge)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may close before we finish writing
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data.splitlines()[0])
        assert reply["ok"] is False and "longer than" in reply["error"]
        assert ControlClient(path, LOADED).request({"cmd": "status"})["ok"] is True
        # the client refuses to send one in the first place
        with pytest.raises(ControlError, match="longer than"):
            ControlClient(path, LOADED).request({"cmd": "status", "x": "a" * MAX_REQUEST})


def test_a_client_that_hangs_up_mid_request_does_not_hurt(sockdir: Path) -> None:
    path = sockdir / "fb.sock"
    with ServerThread(path, HANDLERS):
        for _ in range(5):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(path))
                s.sendall(b'{"cmd": "sta')
        assert ControlClient(path, LOADED).request({"cmd": "status"})["ok"] is True


def test_stale_socket_file_is_replaced(sockdir: Path) -> None:
    path = sockdir / "fb.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a crash leaves
    with pytest.raises(DaemonUnavailable, match="not running"):
        ControlClient(path, LOADED).request({"cmd": "status"})
    with ServerThread(path, HANDLERS):
        assert ControlClient(path, LOADED).request({"cmd": "status"})["ok"] is True


def test_parent_directory_is_created_and_a_live_socket_or_a_file_is_not_replaced(sockdir: Path) -> None:
    path = sockdir / "run" / "fb.sock"
    with ServerThread(path, HANDLERS) as first:
        second = ServerThread(path, HANDLERS)
        with pytest.raises(OSError, match="already listening"):
            second.__enter__()
        second.server = None
        second.__exit__(None, None, None)
        assert ControlClient(path, LOADED).request({"cmd": "status"})["ok"] is True
        assert first.server is not None
    regular = sockdir / "file"
    regular.write_text("keep me")
    third = ServerThread(regular, HANDLERS)
    with pytest.raises(OSError, match="not a socket"):
        third.__enter__()
    third.server = None
    third.__exit__(None, None, None)
    assert regular.read_text() == "keep me"


def test_client_without_a_daemon_raises_daemon_unavailable(sockdir: Path) -> None:
    with pytest.raises(DaemonUnavailable, match="not running"):
        ControlClient(sockdir / "absent.sock").request({"cmd": "status"})


def test_client_times_out_on_a_silent_server(sockdir: Path) -> None:
    path = sockdir / "silent.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    try:
        t0 = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="did not answer within 0.3 s"):
            ControlClient(path, timeout=0.3).request({"cmd": "status"})
        assert time.monotonic() - t0 < 2
    finally:
        srv.close()


def test_too_long_a_path_is_a_clear_error(sockdir: Path) -> None:
    server = ControlServer(sockdir / ("x" * 120), HANDLERS)
    import asyncio

    with pytest.raises(OSError, match="longer than 107 bytes"):
        asyncio.run(server.start())


# -- the real daemon ------------------------------------------------------------------------------

@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path)
    d.start()
    yield d
    d.stop()


def test_daemon_status_wake_reload_probe(daemon: DaemonProcess) -> None:
    c = daemon.client()
    st = c.request({"cmd": "status"})
    assert st["ok"] is True and st["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    assert st["sip"]["listeners"] == [{"transport": "udp", "host": "127.0.0.1", "port": daemon.sip_port}]
    assert st["sip"]["registrations"] == [] and st["modems"] is None and st["calls"] == []
    assert st["queue"] == {"queued": 0, "delivering": 0, "delivered": 0, "failed_retrying": 0, "dead": 0}
    assert st["stats"]["calls"] == 0 and 0 <= st["uptime"] < 30 and st["version"]
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert c.request({"cmd": "wake"})["ok"] is True
    reload = c.request({"cmd": "reload"})
    assert reload["ok"] is True and reload["restart"] == [], reload
    gone = c.request({"cmd": "probe-modem", "device": "/dev/ttyNOSUCH9"})
    assert gone["ok"] is True and gone["found"] is False and "plugged in" in gone["message"]
    assert "not a serial device" in c.request({"cmd": "probe-modem", "device": "/etc/passwd"})["error"]
    assert c.request({"cmd": "probe-modem"})["ok"] is False
    assert c.request({"cmd": "test-fax-status", "id": "t99"})["ok"] is False
    assert "\"called\"" in c.request({"cmd": "test-fax", "called": "a b<"})["error"]


def test_daemon_probes_a_virtual_modem(daemon: DaemonProcess, tmp_path: Path) -> None:
    from appliance.modem.virtual import VirtualLine

    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB")):
        r = daemon.client().request({"cmd": "probe-modem", "device": str(tmp_path / "ttyB")})
    assert r["ok"] is True and r["found"] is True and r["usable"] is True, r
    assert "spandsp" in r["message"] and r["class"] == "1.0"


@pytest.mark.slow
def test_test_fax_shows_as_a_call_then_goes_through_and_restart(daemon: DaemonProcess) -> None:
    """A real one-page fax from the daemon to itself: a live call in status, a received fax, then
    a restart over the socket brings the same process (execv) back with a fresh start time."""
    c = daemon.client()
    started = c.request({"cmd": "test-fax"})
    assert started["ok"] is True and started["target"] == f"sip:test@127.0.0.1:{daemon.sip_port}"
    assert "already" in c.request({"cmd": "test-fax"})["error"]
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = c.request({"cmd": "test-fax-status", "id": started["id"]})
        if progress["state"] != "running":
            break
        seen += c.request({"cmd": "status"})["calls"]
        time.sleep(0.5)
    assert progress["state"] == "ok", progress
    assert "went through" in progress["message"]
    paged = [call for call in seen if call["page"] == 1]
    assert paged, seen
    call = paged[-1]
    assert (call["caller_number"], call["caller_name"], call["called_number"]) == ("test", "Faxbridge self-test", "test")
    assert call["mode"] == "g711" and call["bit_rate"] == 14400 and call["ecm"] is True and call["fax_id"] == 1
    # the sender is done when its call ends; the daemon finishes its side (commit, count) a moment later
    deadline = time.monotonic() + LOADED
    st = c.request({"cmd": "status"})
    while (st["stats"]["faxes"] != 1 or st["calls"]) and time.monotonic() < deadline:
        time.sleep(0.2)
        st = c.request({"cmd": "status"})
    assert st["stats"]["faxes"] == 1 and st["calls"] == [], st
    pid = st["pid"]
    assert c.request({"cmd": "restart"})["ok"] is True
    again = daemon.wait_ready(not_started=st["started"])
    assert again["pid"] == pid and again["stats"]["faxes"] == 0 and again["uptime"] < 10
    assert "restarting:" in daemon.log_text()
    assert (daemon.workdir / "log" / "faxbridge.log").read_text().count("control socket on") == 2


@pytest.mark.slow
def test_test_fax_goes_through_when_peers_leave_this_machine_out_and_strangers_stay_out(tmp_path: Path) -> None:
    """The wizard's advice (add the gateway as a peer) must not break its own test fax: a box whose
    [[sip.peers]] leave out loopback still receives the test fax it sends itself, while any other
    call from loopback is refused as before (403): the pass admits that one call, not the address."""
    import subprocess
    import sys

    d = DaemonProcess(tmp_path, extra='[[sip.peers]]\nname = "gw"\nmatch = "192.0.2.10"\n')
    d.start()
    try:
        c = d.client()
        fax_id = c.request({"cmd": "test-fax"})["id"]
        stranger = subprocess.run([sys.executable, "-m", "appliance", "send-test-fax", "--to",
                                   f"sip:fax@127.0.0.1:{d.sip_port}", "--demo", "--timeout", "20"],
                                  capture_output=True, text=True, timeout=60)
        assert stranger.returncode == 1 and "403" in stranger.stdout, stranger.stdout + stranger.stderr
        assert "; ;" not in stranger.stdout and "''" not in stranger.stdout  # empty facts are left out
        deadline = time.monotonic() + 120
        while (st := c.request({"cmd": "test-fax-status", "id": fax_id}))["state"] == "running":
            assert time.monotonic() < deadline, st
            time.sleep(0.5)
        assert st["state"] == "ok" and "went through" in st["message"], (st, d.log_text()[-3000:])
        deadline = time.monotonic() + LOADED
        while c.request({"cmd": "status"})["stats"]["faxes"] != 1:
            assert time.monotonic() < deadline, d.log_text()[-3000:]
            time.sleep(0.2)
        assert c.request({"cmd": "status"})["sip"]["refused"].get("unknown_refused") == 1
    finally:
        d.stop()


@pytest.mark.parametrize("returncode, last, words, fix", [
    (1, "FAILED: call failed: 403 Forbidden; 0 page(s) sent; 0.1 s", "refused the call from itself", "sip"),
    (1, "FAILED: call failed: 403 Forbidden; ; 0 page(s) sent; far end ''; 0.1 s", "refused the call", "sip"),
    (1, "FAILED: call failed: 503 Service Unavailable; 0 page(s) sent; 0.0 s", "busy", ""),
    (1, "FAILED: call failed: 408 Request Timeout; 0 page(s) sent; 32.0 s", "Nothing answered", "sip"),
    (1, "FAILED: timed out; g711; 0 page(s) sent; 180.0 s", "Nothing answered", "sip"),
    (1, "FAILED: Disconnected after permitted retries; g711; 0 page(s) sent; 40.2 s",
     "did not go through (Disconnected after permitted retries)", "system"),
    (0, "OK: answered; g711; 1 page(s) sent at 14400 bit/s, ECM; far end '+1 555'; 20.0 s", "went through", ""),
])
def test_test_fax_outcome_is_said_in_plain_words_with_where_to_fix_it(returncode: int, last: str, words: str,
                                                                       fix: str) -> None:
    from appliance.control import _test_fax_verdict

    state, message, where = _test_fax_verdict(returncode, ["some output", last])
    assert words in message and where == fix
    assert state == ("ok" if returncode == 0 else "failed")
    for internal in ("; ;", "''", "[[", "sip.peers", "FAILED", "page(s)"):
        assert internal not in message, message
