"""End-to-end harness: the real daemon as a process, a real SMTP server, real fax calls.

The appliance runs as `python -m appliance run` (so a test can SIGKILL it); faxes are sent with
`faxbridge send-test-fax` (spandsp as the calling party) over SIP/RTP on loopback; mail lands in
an aiosmtpd server in this process.
"""

from __future__ import annotations

import email
import email.policy
import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller
from PIL import Image, ImageChops

from appliance.fax.pages import read_pages
from appliance.spool.store import OPEN_JOB_STATES
from tests.budgets import LOADED, wait_until
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


class CaptureHandler:
    """Stores every accepted message; ``fail_with`` makes it answer DATA with an error instead."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.fail_with: str | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.fail_with:
            return self.fail_with
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Ok: queued"

    def parsed(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in self.messages]


@dataclass
class SmtpServer:
    port: int
    handler: CaptureHandler = field(default_factory=CaptureHandler)
    controller: Controller | None = None

    def start(self) -> None:
        # a fixed greeting name: without one aiosmtpd resolves this machine's name for every
        # connection, in its loop, and a lost DNS packet holds a session 5 s
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="mx.faxbridge.test", ready_timeout=LOADED)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait_for(self, count: int, timeout: float) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.handler.parsed()
            if len(msgs) >= count:
                return msgs
            time.sleep(0.2)
        raise AssertionError(f"expected {count} mail(s), got {len(self.handler.parsed())} in {timeout} s")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port("tcp"))
    server.start()
    yield server
    server.stop()


class ApplianceProcess:
    """The daemon in its own process, with its stderr collected for assertions and failures."""

    def __init__(self, workdir: Path, smtp_port: int, *, extra: str = "", retry_initial: float = 1.0,
                 tls: tuple[Path, Path] | None = None, no_signal_timeout: int = 8, sip_extra: str = "",
                 playout_delay_ms: int = 250, rtp_half: int | None = None) -> None:
        self.workdir = workdir
        self.sip_port = free_port()
        self.tls_port = free_port("tcp") if tls else 0
        tls_conf = (f'listen = ["udp:127.0.0.1:{self.sip_port}", "tcp:127.0.0.1:{self.sip_port}", '
                    f'"tls:127.0.0.1:{self.tls_port}"]\ntls_cert = "{tls[0]}"\ntls_key = "{tls[1]}"'
                    if tls else f'listen = ["udp:127.0.0.1:{self.sip_port}", "tcp:127.0.0.1:{self.sip_port}"]')
        self.rtp_first = 20000 + (os.getpid() % 200) * 100
        # two appliances in one test (a sender and a receiver) share this process's block of 100
        self.rtp_last = self.rtp_first + 99
        if rtp_half is not None:
            self.rtp_first += 50 * rtp_half
            self.rtp_last = self.rtp_first + 49
        self.config = workdir / "faxbridge.toml"
        self.config.write_text(f"""
[sip]
{tls_conf}
rtp_ports = [{self.rtp_first}, {self.rtp_last}]
# CI runs four workers of real-time calls on two cores: a process can wait 100+ ms for a CPU.
# The default (60 ms) suits a box that does nothing else; here the buffer absorbs the stalls.
playout_delay_ms = 250
{sip_extra}

[fax]
ident = "+1 555 1000"
no_signal_timeout = {no_signal_timeout}
post_phase_e_timeout = 5

[spool]
dir = "spool"

[delivery]
backend = "smtp"
url = "smtp://127.0.0.1:{smtp_port}"
from = "fax@example.test"
starttls = "none"
retry_initial = {retry_initial}
retry_max = 5.0

[routing]
default = "faxes@example.test"
[routing.called]
"5551000" = "sales@example.test"
"5551001" = "support@example.test"
"5551002" = "billing@example.test"
"5551003" = "legal@example.test"
"5551004" = "hr@example.test"

[web]
enabled = false
{extra}
""")
        self.log = workdir / "appliance.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(self.config),
                                      "--state-dir", str(self.workdir)], cwd=self.workdir, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + LOADED
        while time.monotonic() < deadline:
            if "Faxbridge is running" in self.log_text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"appliance exited with {self.proc.returncode}:\n{self.log_text()}")
            time.sleep(0.1)
        raise AssertionError(f"appliance did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_text():
                return
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log_text()[-4000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(LOADED)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(LOADED)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_settled(self) -> None:
        """Until every fax is routed and no delivery job is open: only then may a test say that
        something was not mailed (waiting a while and looking passes when load delays the mail)."""
        db = self.workdir / "spool" / "spool.db"
        unrouted = "SELECT count(*) FROM faxes WHERE state IN ('receiving', 'received')"
        open_jobs = f"SELECT count(*) FROM jobs WHERE state IN ({','.join('?' for _ in OPEN_JOB_STATES)})"

        def settled() -> bool:
            try:
                with closing(sqlite3.connect(db)) as c:
                    (busy,) = c.execute(unrouted).fetchone()
                    (jobs,) = c.execute(open_jobs, OPEN_JOB_STATES).fetchone()
                    return busy == 0 and jobs == 0
            except sqlite3.OperationalError:  # busy: the daemon is writing
                return False

        try:
            wait_until(settled, "every fax routed, no delivery job open")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log_text()[-3000:]}") from None

    def uri(self, user: str, transport: str = "udp") -> str:
        if transport == "tls":
            return f"sip:{user}@127.0.0.1:{self.tls_port};transport=tls"
        tail = ";transport=tcp" if transport == "tcp" else ""
        return f"sip:{user}@127.0.0.1:{self.sip_port}{tail}"


@pytest.fixture
def appliance_factory(tmp_path: Path) -> Iterator:
    started: list[ApplianceProcess] = []

    def make(smtp_port: int, **kw: object) -> ApplianceProcess:
        app = ApplianceProcess(tmp_path, smtp_port, **kw)  # type: ignore[arg-type]
        started.append(app)
        return app

    yield make
    for app in started:
        app.stop()
        if os.environ.get("FAXBRIDGE_TEST_SHOW_LOG"):
            print(app.log_text())


def send_fax(uri: str, tiff: Path, *args: str) -> subprocess.Popen[str]:
    """Start `faxbridge send-test-fax` (it runs in real time: 30-90 s a call)."""
    return subprocess.Popen([sys.executable, "-m", "appliance", "send-test-fax", "--to", uri, str(tiff), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def tiff_attachment(msg: email.message.EmailMessage) -> bytes:
    parts = [p for p in msg.iter_attachments() if p.get_content_type() == "image/tiff"]
    assert len(parts) == 1, f"expected exactly one TIFF attachment, got {[p.get_content_type() for p in msg.iter_attachments()]}"
    return parts[0].get_content()


def assert_pages_equal(tiff: bytes, sent: list[Image.Image]) -> None:
    """Every received page equals the sent page pixel for pixel."""
    got = read_pages(io.BytesIO(tiff))
    assert len(got) == len(sent), f"{len(got)} pages received, {len(sent)} sent"
    for n, (g, s) in enumerate(zip(got, sent), 1):
        assert g.size == s.size, f"page {n}: size {g.size} != sent {s.size}"
        diff = ImageChops.difference(g, s.convert("L")).getbbox()
        assert diff is None, f"page {n} differs from the sent page in {diff}"
