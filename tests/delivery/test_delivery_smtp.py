"""send_smtp against real aiosmtpd servers on loopback: TLS modes, AUTH, and error classes."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading

import pytest
import trustme

from appliance.delivery import smtp as smtp_mod
from appliance.delivery.message import render_message
from appliance.delivery.smtp import PermanentDeliveryError, TemporaryDeliveryError, send_smtp
from appliance.spool.store import FaxRecord
from smtp_harness import PASSWORD, USER, Capture, free_port, smtp_cfg

RCPT = "sales@example.com"


@pytest.fixture
def msg(tiff_bytes):
    fax = FaxRecord(id=1, uid="00112233aabbccdd", state="routed", created=1_700_000_000.0, complete=True,
                    caller_number="5550100", pages=2)
    return render_message(fax, RCPT, from_addr="fax@example.com", image=tiff_bytes,
                          message_id="<00112233aabbccdd.1@faxbridge>")


def received(server) -> email.message.EmailMessage:
    (m,) = server.handler.messages
    return email.message_from_bytes(m["data"], policy=email.policy.default)


def test_plain_delivery_envelope_and_reply(smtp_server, msg, tiff_bytes):
    server = smtp_server()
    reply = send_smtp(smtp_cfg(server.port), msg, RCPT)
    assert reply == "250 2.0.0 Ok: queued as Q1"
    (m,) = server.handler.messages
    assert m["from"] == "fax@example.com" and m["to"] == [RCPT] and not m["tls"]
    got = received(server)
    assert got["Message-ID"] == "<00112233aabbccdd.1@faxbridge>"
    (att,) = got.iter_attachments()
    assert att.get_content() == tiff_bytes


def test_opportunistic_starttls_is_used_and_verified(smtp_server, msg, ca_file):
    server = smtp_server(starttls=True)
    send_smtp(smtp_cfg(server.port, starttls="opportunistic", ca_file=ca_file), msg, RCPT)
    assert server.handler.messages[0]["tls"] is True


def test_opportunistic_without_offer_sends_in_clear(smtp_server, msg, ca_file):
    server = smtp_server(starttls=False)
    send_smtp(smtp_cfg(server.port, starttls="opportunistic", ca_file=ca_file), msg, RCPT)
    assert server.handler.messages[0]["tls"] is False


def test_required_starttls_not_offered_is_temporary(smtp_server, msg, ca_file):
    server = smtp_server(starttls=False)
    with pytest.raises(TemporaryDeliveryError, match="STARTTLS required"):
        send_smtp(smtp_cfg(server.port, starttls="required", ca_file=ca_file), msg, RCPT)
    assert server.handler.messages == []


def test_required_starttls_offered(smtp_server, msg, ca_file):
    server = smtp_server(starttls=True)
    send_smtp(smtp_cfg(server.port, starttls="required", ca_file=ca_file), msg, RCPT)
    assert server.handler.messages[0]["tls"] is True


def test_starttls_untrusted_certificate_is_permanent(smtp_server, msg, ca_file):
    server = smtp_server(starttls=True, signer=trustme.CA())
    with pytest.raises(PermanentDeliveryError, match="certificate"):
        send_smtp(smtp_cfg(server.port, starttls="opportunistic", ca_file=ca_file), msg, RCPT)
    assert server.handler.messages == []


def test_system_store_does_not_trust_a_private_ca(smtp_server, msg):
    server = smtp_server(starttls=True)
    with pytest.raises(PermanentDeliveryError):
        send_smtp(smtp_cfg(server.port, starttls="required"), msg, RCPT)


def test_verify_tls_off_accepts_any_certificate(smtp_server, msg):
    server = smtp_server(starttls=True, signer=trustme.CA())
    send_smtp(smtp_cfg(server.port, starttls="required", verify_tls=False), msg, RCPT)
    assert server.handler.messages[0]["tls"] is True


def test_smtps_implicit_tls(smtp_server, msg, ca_file):
    server = smtp_server(implicit_tls=True)
    reply = send_smtp(smtp_cfg(server.port, scheme="smtps", ca_file=ca_file), msg, RCPT)
    assert reply.startswith("250 ")
    assert server.handler.messages[0]["tls"] is True


def test_smtps_untrusted_certificate_is_permanent(smtp_server, msg, ca_file):
    server = smtp_server(implicit_tls=True, signer=trustme.CA())
    with pytest.raises(PermanentDeliveryError, match="certificate"):
        send_smtp(smtp_cfg(server.port, scheme="smtps", ca_file=ca_file), msg, RCPT)


def test_smtps_to_a_cleartext_server_is_a_temporary_tls_failure(smtp_server, msg, ca_file):
    server = smtp_server()
    with pytest.raises(TemporaryDeliveryError, match="TLS"):
        send_smtp(smtp_cfg(server.port, scheme="smtps", ca_file=ca_file), msg, RCPT)


def test_auth_over_starttls(smtp_server, msg, ca_file):
    server = smtp_server(starttls=True, auth=True)
    send_smtp(smtp_cfg(server.port, starttls="required", ca_file=ca_file, username=USER, password=PASSWORD),
              msg, RCPT)
    m = server.handler.messages[0]
    assert m["tls"] and m["auth"]


def test_bad_password_is_permanent_and_never_echoed(smtp_server, msg, ca_file, caplog):
    server = smtp_server(starttls=True, auth=True)
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-Secret-123"
    with pytest.raises(PermanentDeliveryError) as exc:
        send_smtp(smtp_cfg(server.port, starttls="required", ca_file=ca_file, username=USER, password=wrong),
                  msg, RCPT)
    assert "535" in str(exc.value)
    assert wrong not in str(exc.value) and wrong not in repr(exc.value.__context__) and wrong not in caplog.text
    assert exc.value.__cause__ is None
    assert server.handler.messages == []


def test_auth_in_clear_to_loopback_is_allowed(smtp_server, msg):
    server = smtp_server(auth=True, auth_require_tls=False)
    send_smtp(smtp_cfg(server.port, username=USER, password=PASSWORD), msg, RCPT)
    assert server.handler.messages[0]["auth"] is True


def test_no_credentials_in_clear_to_a_remote_host(smtp_server, msg, monkeypatch):
    server = smtp_server(auth=True, auth_require_tls=False)
    monkeypatch.setattr(smtp_mod, "is_loopback", lambda host: False)
    with pytest.raises(TemporaryDeliveryError, match="without TLS") as exc:
        send_smtp(smtp_cfg(server.port, username=USER, password=PASSWORD), msg, RCPT)
    assert PASSWORD not in str(exc.value)
    assert server.handler.messages == []


def test_is_loopback():
    assert smtp_mod.is_loopback("127.0.0.1") and smtp_mod.is_loopback("::1")
    assert smtp_mod.is_loopback("localhost") and smtp_mod.is_loopback("127.8.9.10")
    assert not smtp_mod.is_loopback("10.0.0.1") and not smtp_mod.is_loopback("mail.example.com")


def test_451_on_data_is_temporary_with_reply(smtp_server, msg):
    server = smtp_server(handler=Capture(data_replies=["451 4.3.0 Try again later"]))
    with pytest.raises(TemporaryDeliveryError, match=r"^451 4\.3\.0 Try again later"):
        send_smtp(smtp_cfg(server.port), msg, RCPT)


def test_550_on_rcpt_is_permanent_with_reply(smtp_server, msg):
    server = smtp_server(handler=Capture(rcpt_replies={RCPT: "550 5.1.1 No such user"}))
    with pytest.raises(PermanentDeliveryError, match=r"^550 5\.1\.1 No such user"):
        send_smtp(smtp_cfg(server.port), msg, RCPT)


def test_452_on_rcpt_is_temporary(smtp_server, msg):
    server = smtp_server(handler=Capture(rcpt_replies={RCPT: "452 4.2.2 Mailbox full"}))
    with pytest.raises(TemporaryDeliveryError, match="452"):
        send_smtp(smtp_cfg(server.port), msg, RCPT)


def test_554_on_data_is_permanent(smtp_server, msg):
    server = smtp_server(handler=Capture(data_replies=["554 5.6.0 Message rejected"]))
    with pytest.raises(PermanentDeliveryError, match="554 5.6.0 Message rejected"):
        send_smtp(smtp_cfg(server.port), msg, RCPT)


def test_connection_refused_is_temporary(msg):
    with pytest.raises(TemporaryDeliveryError, match="cannot connect"):
        send_smtp(smtp_cfg(free_port()), msg, RCPT)


def test_silent_server_times_out_temporarily(msg):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    conns: list[socket.socket] = []
    t = threading.Thread(target=lambda: conns.append(listener.accept()[0]), daemon=True)
    t.start()
    try:
        with pytest.raises(TemporaryDeliveryError, match="timed out"):
            send_smtp(smtp_cfg(listener.getsockname()[1], timeout=1), msg, RCPT)
    finally:
        t.join(2)
        for c in conns:
            c.close()
        listener.close()


def test_bad_url_is_permanent(msg):
    with pytest.raises(PermanentDeliveryError):
        send_smtp(smtp_cfg(25, scheme="http"), msg, RCPT)
