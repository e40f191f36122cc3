"""Real control sockets for tests: a ControlServer on its own event loop thread, or the whole daemon
(`python -m appliance run --no-web`) as a process, answering on a socket under a short temp path."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from appliance.control import ControlClient, ControlServer, DaemonUnavailable
from tests.conftest import free_port
from tests.budgets import LOADED

REPO = Path(__file__).resolve().parents[2]


def short_dir() -> Path:
    """A directory for sockets: sun_path allows 107 bytes, pytest's tmp_path can be longer."""
    return Path(tempfile.mkdtemp(prefix="fbctl-", dir="/tmp"))


class ServerThread:
    """A real ControlServer on an event loop in a background thread."""

    def __init__(self, path: Path, handlers: Mapping[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]
                 | Callable[[], Mapping[str, Any]]) -> None:
        self.path = path
        self._handlers = handlers
        self.loop = asyncio.new_event_loop()
        self.server: ControlServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        handlers = self._handlers() if callable(self._handlers) else self._handlers
        self.server = ControlServer(self.path, handlers)  # type: ignore[arg-type]
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(LOADED)
        return self

    def call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(LOADED)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(LOADED)
        self.loop.close()


class DaemonProcess:
    """The appliance daemon as `faxbridge run --no-web`, SIP on loopback, control socket in a short dir."""

    def __init__(self, workdir: Path, *, extra: str = "") -> None:
        self.workdir = workdir
        self.sockdir = short_dir()
        self.socket = self.sockdir / "fb.sock"
        self.sip_port = free_port()
        rtp = 30000 + (os.getpid() % 300) * 100
        self.config = workdir / "faxbridge.toml"
        self.config.write_text(f"""
[sip]
listen = ["udp:127.0.0.1:{self.sip_port}"]
rtp_ports = [{rtp}, {rtp + 99}]
playout_delay_ms = 250

[fax]
no_signal_timeout = 10
post_phase_e_timeout = 3

[spool]
dir = "spool"

[delivery]
backend = "maildir"
url = "Maildir"

[routing]
default = "faxes@example.test"

[web]
enabled = false

[system]
control_socket = "{self.socket}"
{extra}
""")
        self.log = workdir / "daemon.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def client(self, timeout: float = LOADED) -> ControlClient:
        return ControlClient(self.socket, timeout)

    def start(self, env: Mapping[str, str] | None = None, wait: bool = True) -> "DaemonProcess":
        """Start it (with ``env`` added to the environment) and, with ``wait``, until it answers."""
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--no-web", "--config",
                                          str(self.config), "--state-dir", str(self.workdir)], cwd=self.workdir,
                                         stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = LOADED, not_started: float | None = None) -> dict[str, Any]:
        """Until `status` answers (and, with ``not_started``, comes from a later start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                st = self.client().request({"cmd": "status"})
                if not_started is None or st.get("started", 0) > not_started:
                    return st
            except DaemonUnavailable:
                pass
            time.sleep(0.1)
        raise AssertionError(f"daemon did not answer on {self.socket}:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(LOADED)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.sockdir, ignore_errors=True)


class SpoolAppliance:
    """What ApplianceControl asks of an Appliance (control.ControlledAppliance), made of real
    objects: a real Spool, real SIP listener addresses and registration states, a real (unstarted)
    ModemManager, and real InboundSipCalls with real spandsp T.38 terminals in a real
    ReceiveSession.  For web tests that need a daemon's status without a daemon's sockets and
    event-loop settings.  It moves no media (``media_totals`` None) unless a test gives it some."""

    def __init__(self, cfg: Any, *, registrations: list[Any] | None = None) -> None:
        from appliance.modem.manager import ModemManager
        from appliance.sip.events import Local
        from appliance.spool.store import Spool

        self.cfg = cfg
        self.spool = Spool(cfg.path(cfg.spool.dir))
        self.calls: dict[str, Any] = {}
        self.stats = {"calls": 0, "faxes": 0, "rejected": 0, "no_fax": 0, "incomplete": 0}
        self.modems = (ModemManager.from_config(cfg, self._never, self._never) if cfg.modem.devices else None)
        regs = list(registrations or [])
        locals_ = [Local(l.transport, l.host, l.port) for l in cfg.sip.listeners()]

        refused: dict[str, int] = {}

        class _Sip:
            locals = locals_
            #: what the gate and transport would have refused (tests fill it in)
            refused_counts = refused

            @staticmethod
            def status() -> dict[str, Any]:
                return {"listeners": [{"transport": l.transport, "host": l.host, "port": l.port} for l in locals_],
                        "registrations": regs, "refused": dict(refused), "connections": 0}

        self.sip = _Sip()
        self.woken = 0
        self.restart_requested = asyncio.Event()
        self.media_totals: Any = None
        self.media_clock: Any = None

        class _Delivery:
            @staticmethod
            def wake() -> None:
                self.woken += 1

        self.delivery = _Delivery()

    async def _never(self, *a: Any) -> Any:
        raise RuntimeError("no modem calls in this test")

    def restart_needed(self) -> list[str]:
        return []

    async def reload_config(self) -> dict[str, Any]:
        return {"ok": False, "error": "reload not available"}

    def self_test_pass(self) -> None:
        return None

    def add_call(self, call_id: str, *, mode: str = "t38", pages: int = 0, **facts: Any) -> Any:
        """A call in progress: its spool record (receiving) and a live session on a real terminal."""
        from appliance.fax.session import ReceiveSession
        from appliance.calls.sip_call import InboundSipCall
        from appliance.calls.t38switch import Mode
        from appliance.spandsp.t38 import T38FaxTerminal

        fax = self.spool.begin_fax(time.time(), call_id=call_id, **facts)
        terminal = T38FaxTerminal(calling=False, ident="1", ecm=True, rx_file=self.spool.incoming_path(fax))
        session = ReceiveSession(terminal, time.monotonic(), self.cfg.fax)
        session.signal_at = time.monotonic()
        session.pages = [terminal.stats() for _ in range(pages)]

        # no SIP endpoint or clock, a channel that only has a port: the status reads none of them
        channel = types.SimpleNamespace(port=0)
        call = InboundSipCall(call_id, self.cfg, None, channel, None, self.spool.incoming_path(fax),  # type: ignore[arg-type]
                              "127.0.0.1", session=session)
        if mode == "t38":
            call.switcher.mode = Mode.T38
        else:
            call.switcher.codec = "PCMA"
        self.calls[call_id] = call
        return fax

    def close(self) -> None:
        for call in self.calls.values():
            call.session.terminal.close()
        self.spool.close()


def serve_appliance(path: Path, app: Any) -> ServerThread:
    """A real ControlServer with the real appliance commands bound to ``app``."""
    from appliance.control import ApplianceControl

    return ServerThread(path, lambda: ApplianceControl(app).handlers())
