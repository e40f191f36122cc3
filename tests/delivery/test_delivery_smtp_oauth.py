"""SMTP submission with OAuth2 (XOAUTH2) and with a client certificate, against real servers.

The SMTP server checks the bearer token with the token endpoint that issued it, as Exchange
Online does, so a token for the wrong scope, an expired one, or none at all is refused."""

from __future__ import annotations

import base64
import email
import email.policy
import ssl
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult
from oauth_harness import SMTP_SCOPE, oauth_cfg
from aiosmtpd.controller import Controller
from smtp_harness import SERVER_NAME, Capture, free_port, server_context

from appliance.config import DeliveryConfig
from appliance.delivery.advice import advise_text
from appliance.delivery.message import render_message
from appliance.delivery.smtp import PermanentDeliveryError, TemporaryDeliveryError, send_smtp
from appliance.delivery.trial import trial_fax
from tests.budgets import LOADED

MAILBOX = "fax@contoso.com"


class OAuthCapture(Capture):
    """Accepts AUTH XOAUTH2 only with a live token for the SMTP scope and the right mailbox."""

    def __init__(self, token_server: Any):
        super().__init__()
        self.token_server = token_server
        self.auth_log: list[tuple[str, str | None]] = []

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        # args: ["XOAUTH2", initial response]; without one, ask for it with an empty challenge
        if len(args) > 1:
            raw = base64.b64decode(args[1]).decode()
        else:
            answer = await server.challenge_auth("")
            raw = answer.decode() if isinstance(answer, bytes) else ""
        fields = dict(part.split("=", 1) for part in raw.split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        why = self.token_server.check(token, SMTP_SCOPE)
        if why is None and fields.get("user") != MAILBOX:
            why = "wrong mailbox"
        self.auth_log.append((fields.get("user", ""), why))
        if why:
            return AuthResult(success=False, handled=False,
                              message="535 5.7.3 Authentication unsuccessful [XX0P123CA0001.eurprd01.prod]")
        return AuthResult(success=True)


@pytest.fixture
def msg():
    fax, image = trial_fax()
    return render_message(fax, "boss@contoso.com", from_addr=MAILBOX, image=image,
                          message_id="<oauth-test@faxbridge>")


def start(smtp_server, handler: Capture, **kw: Any):
    return smtp_server(starttls=True, handler=handler, **kw)


def test_xoauth2_over_starttls_is_verified_by_the_server(smtp_server, token_server, msg):
    handler = OAuthCapture(token_server)
    server = start(smtp_server, handler)
    cfg = oauth_cfg(token_server, url=f"smtp://127.0.0.1:{server.port}", starttls="required")
    reply = send_smtp(cfg, msg, "boss@contoso.com")
    assert reply.startswith("250")
    got = handler.messages[0]
    assert got["tls"] and got["auth"] and handler.auth_log == [(MAILBOX, None)]
    parsed = email.message_from_bytes(got["data"], policy=email.policy.default)
    assert parsed["Message-ID"] == "<oauth-test@faxbridge>"
    (tif,) = [p for p in parsed.iter_attachments() if p.get_content_type() == "image/tiff"]
    assert tif.get_content() == msg.get_payload()[1].get_content()
    # a second message reuses the cached token: one request to the token endpoint
    send_smtp(cfg, msg, "boss@contoso.com")
    assert token_server.requests == [("secret", SMTP_SCOPE)]


def test_expired_token_is_replaced_and_the_message_goes(smtp_server, token_server, msg):
    handler = OAuthCapture(token_server)
    server = start(smtp_server, handler)
    cfg = oauth_cfg(token_server, url=f"smtp://127.0.0.1:{server.port}", starttls="required")
    send_smtp(cfg, msg, "boss@contoso.com")
    token_server.expire_all()  # revoked or expired early: MSAL's cache still holds it
    send_smtp(cfg, msg, "boss@contoso.com")
    assert len(handler.messages) == 2
    assert [why for _, why in handler.auth_log] == [None, "Lifetime validation failed, the token is expired.", None]


def test_wrong_mailbox_is_permanent_with_advice(smtp_server, token_server, msg):
    server = start(smtp_server, OAuthCapture(token_server))
    cfg = oauth_cfg(token_server, url=f"smtp://127.0.0.1:{server.port}", starttls="required",
                    username="someone@contoso.com")
    with pytest.raises(PermanentDeliveryError, match="535 5.7.3") as e:
        send_smtp(cfg, msg, "boss@contoso.com")
    assert "token" in advise_text(str(e.value)).text


def test_token_refused_by_the_tenant_is_permanent_and_names_the_fix(smtp_server, token_server, msg):
    server = start(smtp_server, OAuthCapture(token_server))
    token_server.authority_state.secret_expired = True
    cfg = oauth_cfg(token_server, url=f"smtp://127.0.0.1:{server.port}", starttls="required")
    with pytest.raises(PermanentDeliveryError, match="AADSTS7000222") as e:
        send_smtp(cfg, msg, "boss@contoso.com")
    assert "expired" in advise_text(str(e.value)).text
    assert cfg.client_secret not in str(e.value)


def test_server_without_xoauth2_says_what_to_set(smtp_server, token_server, msg):
    server = smtp_server(starttls=True, auth=True)  # PLAIN/LOGIN only
    cfg = oauth_cfg(token_server, url=f"smtp://127.0.0.1:{server.port}", starttls="required")
    with pytest.raises(PermanentDeliveryError, match="does not offer AUTH XOAUTH2"):
        send_smtp(cfg, msg, "boss@contoso.com")


def test_token_endpoint_down_is_temporary(smtp_server, token_server, msg):
    server = start(smtp_server, OAuthCapture(token_server))
    cfg = oauth_cfg(token_server, url=f"smtp://127.0.0.1:{server.port}", starttls="required",
                    authority="https://127.0.0.1:9")
    with pytest.raises(TemporaryDeliveryError, match="cannot connect"):
        send_smtp(cfg, msg, "boss@contoso.com")


# -- certificate-matched relay connector ------------------------------------------------------

class PeerCertCapture(Capture):
    async def handle_DATA(self, server, session, envelope):
        peer = server.transport.get_extra_info("peercert")
        self.peer_names = getattr(self, "peer_names", []) + [peer and peer.get("subjectAltName")]
        return await super().handle_DATA(server, session, envelope)


def test_client_certificate_is_presented_to_a_relay_connector(smtp_server, ca, ca_file, tmp_path, msg, monkeypatch):
    client_ca = trustme.CA()
    client = client_ca.issue_cert("fax.contoso.com")
    pem = tmp_path / "client.pem"
    pem.write_bytes(client.private_key_pem.bytes() + client.cert_chain_pems[0].bytes())
    ctx = server_context(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    client_ca.configure_trust(ctx)
    handler = PeerCertCapture()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                            server_hostname=SERVER_NAME, ready_timeout=LOADED)
    controller.start()
    try:
        base = dict(backend="smtp", url=f"smtp://127.0.0.1:{port}", from_=MAILBOX, starttls="required",
                    ca_file=ca_file, timeout=LOADED)
        reply = send_smtp(DeliveryConfig(**base, tls_client_cert=str(pem)), msg, "boss@contoso.com")
        assert reply.startswith("250")
        assert handler.peer_names == [(("DNS", "fax.contoso.com"),)]
        # without the certificate the connector's TLS handshake fails: never sent in clear
        with pytest.raises(TemporaryDeliveryError):
            send_smtp(DeliveryConfig(**base), msg, "boss@contoso.com")
        assert len(handler.messages) == 1
    finally:
        controller.stop()


def test_unreadable_client_certificate_names_the_key(ca_file, tmp_path, msg):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    cfg = DeliveryConfig(backend="smtp", url="smtp://127.0.0.1:9", from_=MAILBOX, starttls="required",
                         ca_file=ca_file, timeout=LOADED, tls_client_cert=str(bad))
    with pytest.raises(Exception, match="delivery.tls_client_cert"):
        send_smtp(cfg, msg, "boss@contoso.com")



# -- faxbridge test-delivery with OAuth2 -------------------------------------------------------

def _oauth_config(tmp_path, token_server, port: int, secret: str):
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text(f'[spool]\ndir = "spool"\n[delivery]\nbackend = "smtp"\nurl = "smtp://127.0.0.1:{port}"\n'
                   f'from = "{MAILBOX}"\nstarttls = "required"\nauth = "oauth2"\nusername = "{MAILBOX}"\n'
                   f'tenant = "{token_server.tenant}"\nclient_id = "{token_server.client_id}"\n'
                   f'authority = "{token_server.authority}"\nca_file = "{token_server.ca_file}"\n')
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[delivery]\nclient_secret = "{secret}"\n')
    secrets.chmod(0o600)
    return cfg


def test_test_delivery_checks_the_token_then_sends(tmp_path, smtp_server, token_server):
    from test_queue_cli import faxbridge

    handler = OAuthCapture(token_server)
    server = start(smtp_server, handler)
    cfg = _oauth_config(tmp_path, token_server, server.port, token_server.client_secret)
    out = faxbridge("test-delivery", "--config", str(cfg), "--to", "boss@contoso.com")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "token: ok" in out.stdout and "accepted: 250" in out.stdout
    assert handler.auth_log == [(MAILBOX, None)] and len(handler.messages) == 1
    assert token_server.client_secret not in out.stdout + out.stderr


def test_test_delivery_with_a_wrong_secret_stops_at_the_token_with_the_fix(tmp_path, smtp_server, token_server):
    from test_queue_cli import faxbridge

    handler = OAuthCapture(token_server)
    server = start(smtp_server, handler)
    wrong = "not-the-secret-" + token_server.client_secret
    cfg = _oauth_config(tmp_path, token_server, server.port, wrong)
    out = faxbridge("test-delivery", "--config", str(cfg), "--to", "boss@contoso.com")
    assert out.returncode == 1
    assert "AADSTS7000215" in out.stdout and "Value (not its ID)" in out.stdout
    assert wrong not in out.stdout + out.stderr
    assert handler.auth_log == [] and not handler.messages  # never got as far as the server
