"""Real SMTP servers on 127.0.0.1 (aiosmtpd in a thread) with trustme certificates."""

from __future__ import annotations

import email
import email.policy
import io
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from PIL import Image, ImageDraw

from appliance.config import DeliveryConfig
from appliance.spool.store import Spool
from tests.budgets import LOADED

USER, PASSWORD = "faxbox", "s3cret-Pa55word"
#: when the test faxes arrived (a fixed epoch: the workers run on a fake clock)
T0 = 1_700_000_000.0
#: the name the test servers greet with: without one, aiosmtpd looks up this machine's name
#: (socket.getfqdn) in its event loop for every connection, and a DNS packet lost on the way
#: holds the greeting 5 s (the test_452_on_rcpt_is_temporary flake)
SERVER_NAME = "mx.faxbridge.test"


class Clock:
    """A clock the test moves by hand (``clock.t += 3600``)."""

    def __init__(self, t: float = T0 + 60):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "spool")
    yield s
    s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Capture:
    """aiosmtpd handler: keeps every accepted message; answers with queued failures on demand."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    #: replies for the next DATA commands, e.g. ["451 4.3.0 try later"]
    data_replies: list[str] = field(default_factory=list)
    #: recipient -> reply for RCPT TO
    rcpt_replies: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    #: Message-ID of every DATA received, accepted or not
    attempted: list[str] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.attempted.append(str(parsed["Message-ID"]))
        if self.data_replies:
            return self.data_replies.pop(0)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "data": envelope.original_content, "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
                              "auth": bool(session.authenticated)})
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, names: tuple[str, ...] = ("127.0.0.1",)) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


@dataclass
class Server:
    handler: Capture
    port: int
    controller: Controller

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_server(ca: trustme.CA) -> Iterator[Callable[..., Server]]:
    """Factory: ``smtp_server(starttls=True, implicit_tls=False, auth=False, port=None, ca=None)``;
    ``names``: the names in the server's certificate (an MX host name for the direct backend)."""
    started: list[Controller] = []

    def start(*, starttls: bool = False, implicit_tls: bool = False, auth: bool = False,
              auth_require_tls: bool = True, port: int | None = None, handler: Capture | None = None,
              signer: trustme.CA | None = None, names: tuple[str, ...] = ("127.0.0.1",)) -> Server:
        handler = handler or Capture()
        port = port or free_port()
        kwargs: dict[str, Any] = {}
        ctx = server_context(signer or ca, names)
        if starttls:
            kwargs["tls_context"] = ctx
        if implicit_tls:
            kwargs["ssl_context"] = ctx
        if auth:
            kwargs.update(authenticator=authenticator, auth_require_tls=auth_require_tls)
        controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname=SERVER_NAME,
                                ready_timeout=LOADED, **kwargs)
        controller.start()
        started.append(controller)
        return Server(handler, port, controller)

    yield start
    for c in started:
        try:
            c.stop()
        except AssertionError:
            pass  # already stopped by the test


def smtp_cfg(port: int, *, scheme: str = "smtp", **kw: Any) -> DeliveryConfig:
    base: dict[str, Any] = dict(backend="smtp", url=f"{scheme}://127.0.0.1:{port}", from_="fax@example.com",
                                starttls="none", timeout=LOADED, retry_initial=30.0, retry_max=1800.0)
    base.update(kw)
    return DeliveryConfig(**base)


def make_tiff(pages: int = 2) -> bytes:
    """A real fax image: 1728 px wide, bilevel, G4, distinct pages."""
    frames = []
    for i in range(pages):
        im = Image.new("1", (1728, 1100), 1)
        ImageDraw.Draw(im).rectangle((100 + 50 * i, 100, 900, 500), fill=0)
        frames.append(im)
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:], compression="group4",
                   dpi=(204, 196))
    return buf.getvalue()


@pytest.fixture
def tiff_bytes() -> bytes:
    return make_tiff(2)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
