"""The daemon speaks systemd's notify protocol to a real datagram socket standing in for systemd:
READY=1 once it listens, WATCHDOG=1 from its event loop at half of WATCHDOG_USEC (and none while
the loop is blocked), STATUS= with the calls in progress, RELOADING=1/READY=1 around a restart,
STOPPING=1 on SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from appliance.sdnotify import Notifier, keep_alive, watchdog_interval
from tests.budgets import LOADED
from tests.control.harness import DaemonProcess


class FakeManager:
    """systemd's end of $NOTIFY_SOCKET: a bound AF_UNIX datagram socket (abstract or a path)."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"faxbridge-test-{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + name.encode())
            self.env = f"@{name}"
        else:
            self.sock.bind(str(path))
            self.env = str(path)

    def message(self, timeout: float = LOADED) -> dict[str, str]:
        """The next datagram as its KEY=VALUE fields (fails after ``timeout``)."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def pending(self) -> list[dict[str, str]]:
        """Every datagram already queued, without waiting."""
        out = []
        while True:
            try:
                data = self.sock.recv(4096, socket.MSG_DONTWAIT).decode()
            except BlockingIOError:
                return out
            out.append(dict(line.split("=", 1) for line in data.split("\n") if line))

    def next_with(self, key: str) -> dict[str, str]:
        deadline = time.monotonic() + LOADED
        while time.monotonic() < deadline:
            msg = self.message(deadline - time.monotonic())
            if key in msg:
                return msg
        raise AssertionError(f"no {key} within {LOADED} s")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager() -> Iterator[FakeManager]:
    m = FakeManager()
    yield m
    m.close()


def test_a_datagram_per_message_to_an_abstract_name(manager: FakeManager) -> None:
    n = Notifier({"NOTIFY_SOCKET": manager.env})
    assert n.enabled and n.notify(READY=1, STATUS="2 call(s)\nin progress")
    assert manager.message() == {"READY": "1", "STATUS": "2 call(s) in progress"}  # one line per field
    n.close()


def test_a_datagram_to_a_socket_path(tmp_path: Path) -> None:
    m = FakeManager(Path(f"/tmp/fbnotify-{uuid.uuid4().hex[:8]}"))
    try:
        n = Notifier({"NOTIFY_SOCKET": m.env})
        assert n.notify(WATCHDOG=1)
        assert m.message() == {"WATCHDOG": "1"}
    finally:
        m.close()
        os.unlink(m.env)


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled and n.notify(READY=1) is False


def test_a_manager_that_is_gone_never_stops_the_sender(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": "@faxbridge-nobody-listens-" + uuid.uuid4().hex})
    assert n.notify(READY=1) is False and n.notify(WATCHDOG=1) is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"}, pid=42) == 1.5
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"}, pid=43) is None  # not ours
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_no_ping_while_the_loop_is_blocked(manager: FakeManager) -> None:
    """The pings come from the loop: blocked for 20 intervals, it sends none; released, it pings again."""
    notifier = Notifier({"NOTIFY_SOCKET": manager.env})
    interval = 0.05

    async def scenario() -> tuple[int, int, int]:
        pinger = asyncio.ensure_future(keep_alive(notifier, interval, lambda: "0 call(s) in progress"))
        deadline = time.monotonic() + LOADED
        before: list[dict[str, str]] = []
        while len(before) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(interval)
            before += manager.pending()
        manager.pending()  # everything sent before the block is queued by now (a local datagram)
        time.sleep(20 * interval)  # the loop is stuck: a blocking call
        during = manager.pending()
        after: list[dict[str, str]] = []
        while not after and time.monotonic() < deadline:
            await asyncio.sleep(interval)
            after += manager.pending()
        pinger.cancel()
        assert all(m == {"WATCHDOG": "1", "STATUS": "0 call(s) in progress"} for m in before + after)
        return len(before), len(during), len(after)

    before, during, after = asyncio.run(scenario())
    assert before >= 3 and during == 0 and after >= 1
    notifier.close()


def test_the_daemon_notifies_ready_watchdog_reload_and_stopping(tmp_path: Path, manager: FakeManager) -> None:
    daemon = DaemonProcess(tmp_path)
    daemon.start(env={"NOTIFY_SOCKET": manager.env, "WATCHDOG_USEC": "1000000"}, wait=False)
    try:
        first = manager.message()
        assert first.get("READY") == "1", first
        assert first["STATUS"] == "0 call(s) in progress; 0 fax(es) received since start"
        # ready means listening: the control socket answers at once and SIP's port is taken
        assert daemon.client().request({"cmd": "status"})["ok"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            with pytest.raises(OSError) as taken:
                probe.bind(("127.0.0.1", daemon.sip_port))
            assert taken.value.errno == errno.EADDRINUSE
        pings = [manager.next_with("WATCHDOG") for _ in range(3)]
        assert all(p["STATUS"].startswith("0 call(s) in progress") for p in pings)

        # the web page's restart: the same process re-executes itself, a reload to systemd
        pid = daemon.proc.pid  # type: ignore[union-attr]
        assert daemon.client().request({"cmd": "restart"})["ok"]
        assert manager.next_with("RELOADING")["STATUS"] == "restarting"
        assert manager.next_with("READY")["READY"] == "1"
        assert daemon.proc is not None and daemon.proc.pid == pid and daemon.proc.poll() is None

        daemon.proc.send_signal(signal.SIGTERM)
        assert manager.next_with("STOPPING") == {"STOPPING": "1", "STATUS": "stopping"}
        assert daemon.proc.wait(LOADED) == 0
    finally:
        daemon.stop()
