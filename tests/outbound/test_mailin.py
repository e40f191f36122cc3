"""The mail-to-fax SMTP listener, driven by Python's smtplib over loopback: STARTTLS with the
box's generated certificate, AUTH against the web UI's real password store (argon2), trusted
relays by source address (127.0.0.2 stands in for Exchange's connector), size and relay rules."""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from appliance.config import Config, OutboundConfig, WebConfig
from appliance.outbound.mailin import COMMAND_LIMITS, MAX_PER_ADDRESS, MailInListener, box_tls_context
from appliance.outbound.mailparse import MailFax, raw_limit
from appliance.web.auth import AdminStore
from appliance.web.tls import generated_paths
from tests.budgets import LOADED
from tests.conftest import free_port
from tests.outbound.mailshapes import PNG_LOGO, outlook_pdf, pdf_bytes, simple

PASSWORD = "correct horse battery"
DOMAIN = "fax.example.com"
RELAY = "127.0.0.2"


@dataclass
class Box:
    """The listener on its own event loop thread (as in the daemon), and what it queued."""

    listener: MailInListener
    loop: asyncio.AbstractEventLoop
    port: int
    cafile: str
    queued: list[tuple[MailFax, str]] = field(default_factory=list)
    #: number -> exception submit raises for it
    refuse: dict[str, Exception] = field(default_factory=dict)

    def client(self, source: str = "127.0.0.1", *, tls: bool = True, login: bool = True) -> smtplib.SMTP:
        c = smtplib.SMTP("127.0.0.1", self.port, timeout=LOADED, source_address=(source, 0))
        c.ehlo("client.example.com")
        if tls:
            c.starttls(context=ssl.create_default_context(cafile=self.cafile))
            c.ehlo("client.example.com")
        if login:
            c.login("admin", PASSWORD)
        return c


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    yield from _box(tmp_path)


def _box(tmp_path: Path, **outbound: Any) -> Iterator[Box]:
    web_state = tmp_path / "web"
    AdminStore(web_state).set_password(PASSWORD)
    settings: dict[str, Any] = dict(enabled=True, smtp_listen=[f"127.0.0.1:{free_port('tcp')}"], domain=DOMAIN,
                                    trusted_relays=[RELAY], max_bytes=2_000_000)
    settings.update(outbound)
    cfg = Config(outbound=OutboundConfig(**settings), web=WebConfig(state_dir=str(web_state)))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    holder: dict[str, Box] = {}

    async def submit(fax: MailFax, sender: str) -> str:
        b = holder["box"]
        if fax.number in b.refuse:
            raise b.refuse[fax.number]
        b.queued.append((fax, sender))
        return f"job{len(b.queued)}"

    async def start() -> tuple[MailInListener, int]:
        listener = MailInListener(cfg, submit)
        bound = await listener.start()
        return listener, bound[0][1]

    listener, port = asyncio.run_coroutine_threadsafe(start(), loop).result(LOADED)
    holder["box"] = b = Box(listener, loop, port, str(generated_paths(web_state)[0]))
    try:
        yield b
    finally:
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(LOADED)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(LOADED)
        loop.close()


def test_starttls_auth_plain_and_an_outlook_pdf_is_queued(box: Box) -> None:
    pdf = pdf_bytes()
    with box.client() as c:
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        c.esmtp_features  # noqa: B018
        refused = c.sendmail("alice@example.com", [f"5551234@{DOMAIN}"], outlook_pdf(pdf))
        assert refused == {}
        code, text = c.noop()
    ((fax, sender),) = box.queued
    assert sender == "alice@example.com" == fax.sender
    assert fax.numbers == ("5551234",)
    assert [(a.name, a.data) for a in fax.attachments] == [("contract.pdf", pdf)]
    assert fax.cover_note == "Please find the contract attached."
    assert fax.meta["source"] == "mail" and fax.meta["auth"] == "user admin"
    assert fax.meta["message_id"].startswith("<DB9PR01MB0001@")


def test_the_reply_names_the_queued_job(box: Box) -> None:
    with box.client() as c:
        c.mail("alice@example.com")
        c.rcpt(f"+15551234@{DOMAIN}")
        code, text = c.data(simple(body="hello"))
    assert (code, text) == (250, b"2.0.0 Queued as fax job job1")
    assert box.queued[0][0].body_text == "hello"


def test_auth_login_works_too_and_the_certificate_is_the_boxs(box: Box, tmp_path: Path) -> None:
    c = box.client(login=False)
    der = c.sock.getpeercert(binary_form=True)
    assert der == ssl.PEM_cert_to_DER_cert(Path(box.cafile).read_text())
    c.user, c.password = "admin", PASSWORD
    code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
    assert code == 235
    c.sendmail("alice@example.com", [f"5551234@{DOMAIN}"], simple(body="x"))
    c.quit()
    assert len(box.queued) == 1


def _auth_plain(c: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """One AUTH PLAIN command (smtplib's login() would try every mechanism in turn)."""
    c.user, c.password = user, password
    try:
        return c.auth("PLAIN", c.auth_plain)
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code, e.smtp_error


def test_wrong_password_is_refused_and_backs_off(box: Box) -> None:
    for _ in range(3):
        c = box.client(login=False)
        assert _auth_plain(c, "admin", "wrong password!")[0] == 535
        code, _ = c.mail("alice@example.com")
        assert code == 530
        c.quit()
    c = box.client(login=False)
    code, text = _auth_plain(c, "admin", PASSWORD)  # right, but too soon after three failures
    assert code == 454 and b"Too many failed logins" in text
    assert box.listener.stats.auth_failed == 3
    # another address is not held back
    c = box.client("127.0.0.6", login=False)
    assert _auth_plain(c, "admin", PASSWORD)[0] == 235
    assert box.queued == []


def test_auth_attempts_per_connection_are_bounded(box: Box) -> None:
    c = box.client(login=False)
    codes = [_auth_plain(c, "x", "y")[0] for _ in range(COMMAND_LIMITS["AUTH"] + 1)]
    assert codes == [535] * COMMAND_LIMITS["AUTH"] + [421]


def test_other_user_names_are_refused(box: Box) -> None:
    c = box.client(login=False)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        c.login("alice", PASSWORD)


def test_no_auth_before_starttls(box: Box) -> None:
    c = box.client(tls=False, login=False)
    assert "auth" not in c.esmtp_features and "starttls" in c.esmtp_features
    code, text = c.docmd("AUTH", "PLAIN AGFkbWluAGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==")
    assert code == 538
    code, text = c.mail("alice@example.com")
    assert code == 530 and b"STARTTLS" in text
    c.quit()


def test_unauthenticated_with_tls_is_refused(box: Box) -> None:
    c = box.client(login=False)
    code, text = c.mail("alice@example.com")
    assert (code, text) == (530, b"5.7.0 Authentication required")
    c.quit()
    assert box.queued == []


def test_relaying_is_refused_even_when_authenticated(box: Box) -> None:
    with box.client() as c:
        c.mail("alice@example.com")
        code, text = c.rcpt("bob@example.org")
        assert code == 550 and text.startswith(b"5.7.1 Relaying denied")
        code, text = c.rcpt(f"sales@{DOMAIN}")
        assert code == 550 and text.startswith(b"5.1.1 'sales' is not a fax number")
        code, _ = c.rcpt(f"5551234@{DOMAIN.upper()}")
        assert code == 250


def test_a_trusted_relay_needs_neither_tls_nor_auth(box: Box) -> None:
    with box.client(RELAY, tls=False, login=False) as c:
        assert c.sendmail("bob@example.com", [f"5551234@{DOMAIN}"], simple(body="from exchange")) == {}
    ((fax, sender),) = box.queued
    assert sender == "bob@example.com" and fax.meta["auth"] == f"relay {RELAY}"
    # and another loopback address, not in trusted_relays, is a stranger
    c = box.client("127.0.0.3", tls=False, login=False)
    code, _ = c.mail("bob@example.com")
    assert code == 530
    c.quit()


def test_size_is_advertised_and_enforced(box: Box) -> None:
    limit = raw_limit(2_000_000)
    c = box.client()
    assert int(c.esmtp_features["size"]) == limit
    code, text = c.mail("alice@example.com", [f"SIZE={limit + 1}"])
    assert code == 552, text
    c.rset()
    assert c.mail("alice@example.com")[0] == 250  # no SIZE given: the limit holds during DATA
    assert c.rcpt(f"5551234@{DOMAIN}")[0] == 250
    code, text = c.data(simple(body="x" * 100, files=[("big.pdf", "application/pdf", b"%PDF-1.4\n" + os.urandom(limit))]))
    assert code == 552, text
    assert box.queued == []


def test_content_the_box_cannot_fax_is_answered_550_with_the_reason(box: Box) -> None:
    with box.client() as c, pytest.raises(smtplib.SMTPDataError) as e:
        c.sendmail("alice@example.com", [f"5551234@{DOMAIN}"],
                   simple(files=[("report.docx", "application/msword", b"PK\x03\x04" + b"\0" * 64)]))
    assert e.value.smtp_code == 550
    assert e.value.smtp_error == (b"5.6.0 Not faxed: report.docx: a Word document cannot be faxed; "
                                  b"only PDF, TIFF, PNG and JPEG files (and plain text) can")
    assert box.listener.stats.refused == 1


def test_submit_refusal_is_550_and_trouble_is_451(box: Box) -> None:
    box.refuse["0015551234"] = ValueError("international numbers are not allowed on route pbx")
    box.refuse["5550000"] = OSError(28, "No space left on device")
    with box.client() as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("alice@example.com", [f"0015551234@{DOMAIN}"], simple(body="x"))
        assert (e.value.smtp_code, e.value.smtp_error) == (
            550, b"5.7.0 Not faxed: international numbers are not allowed on route pbx")
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("alice@example.com", [f"5550000@{DOMAIN}"], simple(body="x"))
        assert e.value.smtp_code == 451
    assert box.queued == []


def test_one_number_per_transaction_452_for_the_next(box: Box) -> None:
    with box.client() as c:
        refused = c.sendmail("alice@example.com", [f"5551234@{DOMAIN}", f"5551234@{DOMAIN}", f"5559999@{DOMAIN}"],
                             simple(body="x"))
    assert refused == {f"5559999@{DOMAIN}": (452, b"4.5.3 One fax number per message: the others go in the next message")}
    assert [f.numbers for f, _ in box.queued] == [("5551234",)]


def test_null_sender_is_refused(box: Box) -> None:
    with box.client() as c:
        code, text = c.mail("<>")
    assert code == 550


@pytest.fixture
def strict_box(tmp_path: Path) -> Iterator[Box]:
    yield from _box(tmp_path, allowed_senders=["*@example.com"])


def test_allowed_senders_apply_to_envelope_and_from_header(strict_box: Box) -> None:
    box = strict_box
    with box.client() as c:
        code, text = c.mail("mallory@evil.example")
        assert code == 550 and text.startswith(b"5.7.1 Sender mallory@evil.example may not send faxes")
        c.rset()
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("alice@example.com", [f"5551234@{DOMAIN}"], simple(body="x", sender="ceo@evil.example"))
        assert e.value.smtp_code == 550 and b"the From address ceo@evil.example may not send faxes" in e.value.smtp_error
        assert c.sendmail("Alice@Example.com", [f"5551234@{DOMAIN}"], simple(body="x", sender="alice@example.com")) == {}
    assert len(box.queued) == 1


def test_connections_per_address_are_bounded(box: Box) -> None:
    clients = [smtplib.SMTP("127.0.0.1", box.port, timeout=LOADED, source_address=("127.0.0.4", 0))
               for _ in range(MAX_PER_ADDRESS)]
    try:
        with pytest.raises(smtplib.SMTPConnectError) as e:
            smtplib.SMTP("127.0.0.1", box.port, timeout=LOADED, source_address=("127.0.0.4", 0))
        assert e.value.smtp_code == 421
        # another address is still served
        with box.client("127.0.0.5", tls=False, login=False) as other:
            assert other.noop()[0] == 250
    finally:
        for c in clients:
            c.close()


def test_commands_per_connection_are_bounded(box: Box) -> None:
    c = box.client(tls=False, login=False)
    codes = [c.docmd("RSET")[0] for _ in range(COMMAND_LIMITS["*"] + 1)]
    assert codes[:COMMAND_LIMITS["*"]] == [250] * COMMAND_LIMITS["*"] and codes[-1] == 421


def test_box_tls_context_prefers_web_cert_file(tmp_path: Path) -> None:
    web = tmp_path / "web"
    cfg = Config(web=WebConfig(state_dir=str(web)))
    box_tls_context(cfg)
    assert generated_paths(web)[0].exists()


def test_hostile_mail_is_refused_by_the_listener_without_harm(box: Box) -> None:
    nested = b"From: alice@example.com\r\nMIME-Version: 1.0\r\n" + b"".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode() for i in range(1000)
    ) + b"Content-Type: text/plain\r\n\r\nhi\r\n"
    with box.client() as c:
        with pytest.raises(smtplib.SMTPDataError) as e:
            c.sendmail("alice@example.com", [f"5551234@{DOMAIN}"], nested)
        assert e.value.smtp_code == 550 and b"too many parts" in e.value.smtp_error
        # the session goes on: the next mail is taken
        assert c.sendmail("alice@example.com", [f"5551234@{DOMAIN}"], simple(body="ok")) == {}
    assert len(box.queued) == 1


def test_stage_attachments_names_files_by_position_only(tmp_path: Path) -> None:
    from appliance.outbound.mailin import stage_attachments
    from appliance.outbound.mailparse import parse_message

    pdf = pdf_bytes()
    parsed = parse_message(simple(files=[("../../x.pdf", "application/pdf", pdf),
                                         ("b.png", "image/png", PNG_LOGO)]), max_bytes=10_000_000)
    staged = stage_attachments(parsed.fax(("5551234",), "a@example.com"), tmp_path / "stage")
    assert [(n, p.name) for n, p in staged] == [("x.pdf", "001.pdf"), ("b.png", "002.png")]
    assert staged[0][1].read_bytes() == pdf
    assert (tmp_path / "stage").stat().st_mode & 0o777 == 0o700


def test_idle_and_whole_session_time_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from appliance.outbound import mailin

    monkeypatch.setattr(mailin, "IDLE_SECONDS", 0.5)
    monkeypatch.setattr(mailin, "SESSION_SECONDS", 2.0)
    for box in _box(tmp_path):
        idle = box.client(tls=False, login=False)
        time.sleep(1.5)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            idle.noop()
        busy = box.client(tls=False, login=False)
        start = time.monotonic()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            while time.monotonic() - start < LOADED:
                busy.noop()  # never idle, yet the session ends
                time.sleep(0.2)
        assert 1.5 < time.monotonic() - start < 10
